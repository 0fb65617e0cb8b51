"""The image sets an evaluation compares: real slices of a recipe dataset's splits, and synthetic slices.

A :class:`SliceSet` holds slices as window images in [0, 1] (the HU window mapped linearly, the form every
image metric here takes), their label maps, and where each comes from (scan, z position, nodule or not).
Real slices come from a dataset made by ``dataset_scripts/prepare_luna16.py`` (:func:`recipe_slices`), resized
as the models see them (area averaging, label majority vote); synthetic ones from a folder written by
``lung-diffusers synthesize`` (:func:`synthesized_slices`) or from a pipeline (``evaluation_samples``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..ct import HU_WINDOW, LABEL_NAMES, MALIGNANCY_LABEL_NAMES, hu_from_image, label_scheme


def as_window_images(images, name: str = "images") -> np.ndarray:
    """An ``(N, H, W)`` stack of window images in [0, 1]: uint8 grey levels are divided by 255; floats are checked
    and keep their precision (float32 or float64; others become float32), so rounding them to 8 bits later gives
    the grey levels a PNG writer of the same precision would."""
    array = np.asarray(images)
    if array.ndim != 3 or array.shape[0] < 1:
        raise ValueError(f"{name} must be an (N, H, W) stack of slices, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be floats in [0, 1] or uint8 grey levels, got dtype {array.dtype}")
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(
            f"float {name} must be finite and in [0, 1] (the HU window mapped to 0-1), got "
            f"{np.nanmin(array):.3g} to {np.nanmax(array):.3g}"
        )
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)


@dataclasses.dataclass
class SliceSet:
    """Slices and their label maps, with where each comes from.

    Attributes:
        images: (N, H, W) float32 window images in [0, 1].
        masks: (N, H, W) uint8 label maps.
        scan_ids: per slice, the scan it comes from (a series UID; for a synthetic slice, its mask's scan).
        slice_z_mm: per slice, the world z of the slice in mm (NaN where unknown).
        has_nodule: per slice, whether its label map draws a nodule.
        pixel_mm: per slice, the pixel size in mm at this resolution (NaN where unknown).
        mask_ids: per slice, an id of its label map (scan/slice for the recipe; the same id for seeds of one mask).
        seeds: per slice, the seed it was drawn with (-1 for real slices).
        description: what the set is, for reports.
    """

    images: np.ndarray
    masks: np.ndarray
    scan_ids: list[str]
    slice_z_mm: np.ndarray
    has_nodule: np.ndarray
    pixel_mm: np.ndarray
    mask_ids: list[str]
    seeds: np.ndarray
    description: str

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 3 or self.masks.shape != self.images.shape:
            raise ValueError(f"images and masks must both be (N, H, W); got {self.images.shape} and {self.masks.shape}")
        for name in ("scan_ids", "slice_z_mm", "has_nodule", "pixel_mm", "mask_ids", "seeds"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} slices")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def hu(self, hu_window: Sequence[float] = HU_WINDOW) -> np.ndarray:
        """The slices in Hounsfield units."""
        return hu_from_image(self.images, hu_window)

    def subset(self, rows, description: str | None = None) -> SliceSet:
        rows = np.asarray(rows, dtype=int)
        return SliceSet(
            images=self.images[rows],
            masks=self.masks[rows],
            scan_ids=[self.scan_ids[i] for i in rows],
            slice_z_mm=self.slice_z_mm[rows],
            has_nodule=self.has_nodule[rows],
            pixel_mm=self.pixel_mm[rows],
            mask_ids=[self.mask_ids[i] for i in rows],
            seeds=self.seeds[rows],
            description=description or self.description,
        )

    def spread(self, count: int | None) -> SliceSet:
        """``count`` slices spread evenly over the set (the whole set when ``count`` is None or larger)."""
        if count is None or count >= len(self):
            return self
        return self.subset(np.linspace(0, len(self) - 1, count).round().astype(int))


def concatenate(sets: Sequence[SliceSet], description: str) -> SliceSet:
    return SliceSet(
        images=np.concatenate([s.images for s in sets]),
        masks=np.concatenate([s.masks for s in sets]),
        scan_ids=[i for s in sets for i in s.scan_ids],
        slice_z_mm=np.concatenate([s.slice_z_mm for s in sets]),
        has_nodule=np.concatenate([s.has_nodule for s in sets]),
        pixel_mm=np.concatenate([s.pixel_mm for s in sets]),
        mask_ids=[i for s in sets for i in s.mask_ids],
        seeds=np.concatenate([s.seeds for s in sets]),
        description=description,
    )


def recipe_configs(num_classes: int) -> list[str]:
    """The recipe configs a model of ``num_classes`` draws: healthy and nodule slices (6), or malignancy (7)."""
    if num_classes == len(MALIGNANCY_LABEL_NAMES):
        return ["malignancy"]
    if num_classes == len(LABEL_NAMES):
        return ["healthy", "nodule"]
    raise ValueError(f"no recipe configs for a {num_classes}-class model (the recipe has 6- and 7-class masks)")


def recipe_slices(
    dataset: str | os.PathLike,
    split: str,
    resolution: int,
    num_classes: int = len(LABEL_NAMES),
    cache_dir: str | None = None,
) -> SliceSet:
    """Every slice of ``split`` of a recipe dataset (all configs of the model's classes), at ``resolution``."""
    from ..data.slice_dataset import check_slice_dataset, load_slice_dataset, resized_slice
    from ..sources import local_or_hub

    nodule_classes = list(label_scheme(num_classes).nodule_classes)
    parts = []
    with local_or_hub(str(dataset), "--dataset"):
        for config in recipe_configs(num_classes):
            try:
                part = load_slice_dataset(str(dataset), [config], split, cache_dir)
            except ValueError as error:
                if "has no" in str(error):  # e.g. no nodule rows in this split: the other config still counts
                    continue
                raise
            check_slice_dataset(part, num_classes, f"{split} split of {config!r}")
            parts.append((config, part))
    if not parts:
        raise ValueError(f"the dataset {dataset} has no rows in split {split!r}")
    images, masks, scans, z_mm, pixel_mm, ids = [], [], [], [], [], []
    for config, part in parts:
        for row in tqdm(part, desc=f"loading {split} {config} slices", unit="slice", leave=False):
            grey, labels = resized_slice(row, resolution)
            images.append(grey.astype(np.float32) / 255.0)
            masks.append(labels.astype(np.uint8))
            scan = str(row.get("seriesuid") or row.get("patient_id") or f"{split}-{config}")
            scans.append(scan)
            z_mm.append(float(row["slice_z_mm"]) if row.get("slice_z_mm") is not None else np.nan)
            spacing = (row.get("spacing") or {}).get("pixel_mm")
            stored = np.asarray(row["mask"]).shape[0]
            pixel_mm.append(float(np.mean(spacing)) * stored / resolution if spacing else np.nan)
            ids.append(f"{config}/{split}/{scan}/{row.get('slice_index', len(ids))}")
    masks_array = np.stack(masks)
    return SliceSet(
        images=np.stack(images),
        masks=masks_array,
        scan_ids=scans,
        slice_z_mm=np.asarray(z_mm, np.float64),
        has_nodule=np.isin(masks_array, nodule_classes).any(axis=(1, 2)),
        pixel_mm=np.asarray(pixel_mm, np.float64),
        mask_ids=ids,
        seeds=np.full(len(ids), -1, np.int64),
        description=f"real {split} slices of {Path(str(dataset)).name}",
    )


def synthesized_slices(folder: str | os.PathLike, num_classes: int | None = None) -> SliceSet:
    """The images of a ``lung-diffusers synthesize`` output folder, with the label maps they were drawn from."""
    from ..synthesis.dataset_files import load_synthetic_dataset

    folder = Path(folder)
    rows, settings = load_synthetic_dataset(folder)
    images, masks, scans, ids, seeds = [], [], [], [], []
    for row in tqdm(rows, desc="loading synthetic slices", unit="slice", leave=False):
        if not row.get("synthetic", False):
            raise ValueError(f"a row of {folder} is not marked synthetic; is it a synthesize output folder?")
        images.append(np.asarray(row["image"].convert("L"), np.float32) / 255.0)
        masks.append(np.asarray(row["mask"], np.uint8))
        source = row.get("source_mask") or {}
        scans.append(str(source.get("seriesuid") or ""))
        ids.append("/".join(str(source.get(k)) for k in ("config", "split", "seriesuid", "slice_index")))
        seeds.append(int(row.get("seed", -1)))
    masks_array = np.stack(masks)
    classes = num_classes or settings["num_classes"]
    n = len(images)
    return SliceSet(
        images=np.stack(images),
        masks=masks_array,
        scan_ids=scans,
        slice_z_mm=np.full(n, np.nan),
        has_nodule=np.isin(masks_array, list(label_scheme(classes).nodule_classes)).any(axis=(1, 2)),
        pixel_mm=np.full(n, np.nan),
        mask_ids=ids,
        seeds=np.asarray(seeds, np.int64),
        description=f"synthetic slices of {folder.name}",
    )
