"""Deprecated: the scores of anomaly maps live in :mod:`lung_diffusers.evaluation.anomaly_scores`, Dice in
:mod:`lung_diffusers.evaluation.overlap`."""

from __future__ import annotations

from .._deprecation import deprecate
from ..evaluation.anomaly_scores import (
    DiceThreshold,
    best_dice_threshold,
    dice_at_threshold,
    dice_curve,
    lesion_prediction,
    pixel_auroc,
    pooled_pixels,
)
from ..evaluation.overlap import dice_score

deprecate(
    "lung_diffusers.inpainting.anomaly_evaluation",
    "1.0.0",
    "Import pixel_auroc, best_dice_threshold, dice_at_threshold, ... from lung_diffusers.evaluation instead.",
)

__all__ = [
    "DiceThreshold", "best_dice_threshold", "dice_at_threshold", "dice_curve", "dice_score", "lesion_prediction",
    "pixel_auroc", "pooled_pixels",
]  # fmt: skip
