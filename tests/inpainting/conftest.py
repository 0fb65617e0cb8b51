"""Fixtures of the inpainting tests: a real LIDC-IDRI nodule slice.

The real slice comes from the data recipe run on one scan in a temporary folder (about 5-10 s, once per session):
LIDC-IDRI-0003, slice 75, which cuts a 21 mm nodule.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
from lung_support import LIDC_0003_SERIES, NODULE_SLICE


@dataclass(frozen=True)
class RealSlice:
    image: np.ndarray  # uint8 (256, 256), lung window, as the recipe stores it
    labels: np.ndarray  # uint8 (256, 256), classes 0-5
    malignancy_labels: np.ndarray | None


@pytest.fixture(scope="session")
def real_nodule_slice(shared_dir, tmp_path_factory) -> RealSlice:
    """The recipe's 256-px slice 75 of LIDC-IDRI-0003 and its label map (nodule = 5)."""
    import PIL.Image
    import pyarrow.parquet as pq

    from lung_diffusers.data import prepare_luna16_dataset

    lidc_mini = shared_dir / "data" / "lidc-mini"
    if not (lidc_mini / "subset0").is_dir():
        pytest.fail(f"LUNA16 sample not found at {lidc_mini}; see shared/data/README.md")
    output = tmp_path_factory.mktemp("repaint-recipe") / "slices"
    prepare_luna16_dataset(
        lidc_mini,
        output,
        image_size=256,
        healthy_stride=100_000,  # nodule slices only
        series_uids=[LIDC_0003_SERIES],
        lidc_xml_dir=lidc_mini / "lidc-xml",
        malignancy=True,
        log=lambda message: None,
    )

    def row(config: str):
        (shard,) = (output / "data" / config).glob("*.parquet")
        table = pq.read_table(shard).to_pylist()
        return next(r for r in table if r["slice_index"] == NODULE_SLICE)

    def png(cell) -> np.ndarray:
        return np.array(PIL.Image.open(io.BytesIO(cell["bytes"])))

    nodule_row = row("nodule")
    malignancy_dir = output / "data" / "malignancy"
    malignancy = (
        png(row("malignancy")["mask"]) if malignancy_dir.is_dir() and any(malignancy_dir.glob("*.parquet")) else None
    )
    return RealSlice(png(nodule_row["image"]), png(nodule_row["mask"]), malignancy)
