"""Slices with known nodules for the RePaint evaluations: the recipe's slices of one split, healthy ones with
synthetic nodules painted in, real nodule slices with their masks, and the healthy prior that maps them.

Shared by ``training/evaluate_anomaly_maps.py`` (module 2) and ``training/train_prior_segmentation.py`` (module 3),
so that both score the same kind of slices. Every item is a dict: ``image`` (float window image at the asked size),
``labels``, ``pixel_mm``, ``patient_id``, ``slice_index``, ``row`` (its row in the split), and, once a nodule is
known, ``truth`` (bool nodule mask) and ``synthetic_input`` (whether the nodule was painted in).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..ct import NODULE
from .synthetic_nodules import DEFAULT_DIAMETER_MM, DEFAULT_NODULE_HU, nodule_fits, place_synthetic_nodule


def load_prior_pipeline(path: str, scheduler: str | None = None, device: str | None = None):
    """The healthy prior as a :class:`~lung_diffusers.LungRePaintPipeline` (what
    :func:`~lung_diffusers.inpainting.anomaly_map` takes), its progress bar off; ``scheduler``: ``"ddpm"`` or
    ``"ddim"`` swaps it the standard way."""
    import torch

    from ..pipelines import LungRePaintPipeline, load_pipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(path, scheduler, device, LungRePaintPipeline)
    if pipe.is_semantic:
        raise ValueError(f"{path} holds a Semantic Diffusion Model; anomaly maps need the healthy prior")
    return pipe


def spread_rows(count: int, limit: int | None) -> list[int]:
    """``limit`` row numbers spread evenly over ``count`` rows (all of them without a limit)."""
    rows = np.arange(count)
    if limit is not None and limit < count:
        rows = rows[np.linspace(0, count - 1, limit).round().astype(int)]
    return rows.tolist()


def load_rows(
    dataset_name: str,
    config: str,
    split: str,
    limit: int | None,
    image_size: int,
    cache_dir: str | None = None,
    room_mm: float | None = None,
) -> list[dict]:
    """Rows of one config and split (image and labels at ``image_size``, pixel size in mm, where from), ``limit``
    of them spread over the split; with ``room_mm``, only slices whose lungs hold a nodule that wide."""
    from ..data.slice_dataset import load_slice_dataset

    try:
        dataset = load_slice_dataset(dataset_name, [config], split, cache_dir)
    except ValueError as error:  # an unknown split or config: say what the dataset has
        raise ValueError(f"could not load split {split!r} of config {config!r}: {error.__cause__ or error}") from None
    for column in ("image", "mask"):
        if column not in dataset.column_names:
            raise ValueError(f"config {config!r} has no {column!r} column (columns: {dataset.column_names})")
    candidates = list(range(len(dataset)))
    if room_mm is not None:
        # Slices near the lung apex or base have too little lung for the nodule: it would shrink to a speck.
        masks = dataset.select_columns([c for c in ("mask", "spacing") if c in dataset.column_names])
        candidates = [
            row for row in candidates if nodule_fits(np.asarray(masks[row]["mask"]), pixel_mm_of(masks[row]), room_mm)
        ]
        if not candidates:
            raise ValueError(
                f"no slice of split {split!r} of {config!r} has lungs wide enough for a {room_mm:g} mm nodule"
            )
    rows = []
    for row in (candidates[i] for i in spread_rows(len(candidates), limit)):
        item = dataset[row]
        image = np.asarray(item["image"].convert("L"))
        labels = np.asarray(item["mask"])
        pixel_mm = pixel_mm_of(item)
        if image.shape != (image_size, image_size):
            pixel_mm = pixel_mm * np.array(image.shape) / image_size
            image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
            labels = cv2.resize(labels, (image_size, image_size), interpolation=cv2.INTER_NEAREST)
        rows.append(
            {
                "row": row,
                "patient_id": item.get("patient_id") or item.get("seriesuid") or "",
                "slice_index": item.get("slice_index", ""),
                "image": image.astype(np.float32) / 255.0,
                "labels": labels,
                "pixel_mm": tuple(float(p) for p in pixel_mm),
            }
        )
    return rows


def pixel_mm_of(item: dict) -> np.ndarray:
    """The stored pixel size (row, column) in mm; 1 mm when the dataset does not say."""
    return np.asarray((item.get("spacing") or {}).get("pixel_mm") or (1.0, 1.0), np.float64)


def check_patients_apart(train: Sequence[dict], test: Sequence[dict]) -> None:
    """Thresholds and weights must come from other patients than the ones they are tested on."""
    shared = sorted({r["patient_id"] for r in train} & {r["patient_id"] for r in test} - {""})
    if shared:
        raise ValueError(f"patients {', '.join(shared)} are in both the train and the test slices")


def with_synthetic_nodules(
    rows: Sequence[dict],
    seed: int,
    stream: int,
    diameter_mm: Sequence[float] = DEFAULT_DIAMETER_MM,
    hu: Sequence[float] = DEFAULT_NODULE_HU,
    per_slice: int = 1,
) -> list[dict]:
    """``per_slice`` slices with one synthetic nodule each per healthy slice (independent draws); each draw
    depends on the seed, the ``stream`` (one per set), the slice's row and the draw's number only."""
    items = []
    for row in rows:
        for draw in range(per_slice):
            key = [seed, stream, row["row"]] if draw == 0 else [seed, stream, row["row"], draw]
            nodule = place_synthetic_nodule(
                row["image"], row["labels"], row["pixel_mm"], np.random.default_rng(key), diameter_mm, hu
            )
            items.append(
                {
                    **row,
                    "image": nodule.image,
                    "truth": nodule.mask,
                    "synthetic_input": True,
                    "diameter_mm": nodule.diameter_mm,
                    "nodule_hu": nodule.hu,
                }
            )
    return items


def with_real_nodules(rows: Sequence[dict]) -> list[dict]:
    """The recipe's nodule labels (5, and 6 in the malignancy variant) as the truth."""
    return [{**row, "truth": row["labels"] >= NODULE, "synthetic_input": False} for row in rows]
