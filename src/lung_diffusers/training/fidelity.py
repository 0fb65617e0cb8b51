"""Deprecated: the fidelity rules live in :mod:`lung_diffusers.evaluation.fidelity`."""

from __future__ import annotations

from .._deprecation import deprecate
from ..evaluation.fidelity import (
    AIR_THRESHOLD_HU,
    BACKGROUND_HU_BELOW,
    DICE_MAX_GAP_TO_REAL,
    DICE_TARGET,
    LUNG_HU_BELOW,
    REGIONS,
    SOFT_TISSUE_HU_WITHIN,
    hu_from_model_range,
    lung_dice,
    lung_mask,
    mean_over_images,
    median_hu,
    mid_chest,
    region_masks,
    slice_fidelity,
    soft_tissue_margin_px,
    soft_tissue_mask,
    targets_met,
)

deprecate(
    "lung_diffusers.training.fidelity",
    "1.0.0",
    "Import the fidelity rules (lung_dice, slice_fidelity, ...) from lung_diffusers.evaluation.fidelity instead.",
)

__all__ = [
    "AIR_THRESHOLD_HU", "BACKGROUND_HU_BELOW", "DICE_MAX_GAP_TO_REAL", "DICE_TARGET", "LUNG_HU_BELOW", "REGIONS",
    "SOFT_TISSUE_HU_WITHIN", "hu_from_model_range", "lung_dice", "lung_mask", "mean_over_images", "median_hu",
    "mid_chest", "region_masks", "slice_fidelity", "soft_tissue_margin_px", "soft_tissue_mask", "targets_met",
]  # fmt: skip
