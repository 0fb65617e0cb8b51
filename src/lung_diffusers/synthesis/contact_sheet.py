"""A contact sheet of a synthetic dataset: a random sample of slices above their masks, marked synthetic."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from ..ct import NODULE
from ..data.contact_sheet import contact_sheet
from ..synthetic_marker import save_synthetic_png
from .mask_plan import SAMPLE_STREAM
from .mask_source import decode_mask

SAMPLE_SIZE = 8


def sample_indices(num_images: int, seed: int, count: int = SAMPLE_SIZE) -> list[int]:
    """Which rows the sheet shows: a random sample fixed by the run's seed."""
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    return sorted(int(i) for i in rng.choice(num_images, size=min(count, num_images), replace=False))


def write_contact_sheet(
    files: list[Path], path: str | Path, seed: int, count: int = SAMPLE_SIZE, malignancy: bool = False
) -> Path | None:
    """Sampled slices with nodules (top bands) and without (bottom bands), each above its mask overlay
    (``malignancy``: a 7-class model's maps, benign and malignant nodules in their own colours)."""
    lengths = [pq.ParquetFile(f).metadata.num_rows for f in files]
    starts = np.cumsum([0, *lengths])
    if not starts[-1]:
        return None
    wanted = sample_indices(int(starts[-1]), seed, count)
    with_nodule, without = [], []
    for k, file in enumerate(files):
        local = [i - starts[k] for i in wanted if starts[k] <= i < starts[k + 1]]
        if not local:
            continue
        for row in pq.read_table(file, columns=["image", "mask"]).take(local).to_pylist():
            image = cv2.imdecode(np.frombuffer(row["image"]["bytes"], np.uint8), cv2.IMREAD_GRAYSCALE)
            mask = decode_mask(row["mask"])
            (with_nodule if (mask >= NODULE).any() else without).append((image, mask))
    sheet = contact_sheet(with_nodule, without, malignancy=malignancy)
    return save_synthetic_png(sheet, path, {"Title": "Random sample of a synthetic dataset, with label-map overlays"})
