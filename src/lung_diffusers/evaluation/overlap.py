"""Overlap of two masks: Dice and IoU (Jaccard), with the convention that two empty masks agree perfectly."""

from __future__ import annotations

import numpy as np


def dice_score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks; 1.0 when both are empty (nothing to find, nothing found)."""
    p, t = np.asarray(prediction) != 0, np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"prediction and truth must have one shape, got {p.shape} and {t.shape}")
    total = int(p.sum() + t.sum())
    return 1.0 if not total else float(2 * np.logical_and(p, t).sum() / total)


def dice_and_iou(prediction: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU (Jaccard) of two masks; both 1.0 when both are empty (nothing to find, nothing found)."""
    dice = dice_score(prediction, truth)
    return dice, dice / (2 - dice)  # IoU = Dice / (2 - Dice) for any pair of masks
