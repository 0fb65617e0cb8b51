"""Scoring anomaly maps against known lesions: pixel AUROC, and Dice at a threshold picked on other patients.

Pixel scores are pooled over every slice of a set (the usual "pixel AUROC" of anomaly detection), inside a
``region`` (e.g. the body), because the air around the patient is trivially normal and would inflate both numbers.
The Dice threshold is the one that maximises the pooled Dice of the **training** patients
(:func:`best_dice_threshold`); applying it to held-out patients (:func:`dice_at_threshold`) is the honest figure.
The best threshold of the held-out set itself is an upper bound, never a result.

Plain numpy and SciPy (no scikit-learn at run time); the tests check the AUROC against scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from .overlap import dice_score


@dataclass(frozen=True)
class DiceThreshold:
    """A threshold on anomaly scores (``score >= threshold`` is called lesion) and the pooled Dice it gives."""

    threshold: float
    dice: float


def pooled_pixels(
    scores: np.ndarray | Sequence[np.ndarray],
    truth: np.ndarray | Sequence[np.ndarray],
    region: np.ndarray | Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten per-slice maps into one score vector and one boolean truth vector, keeping only ``region`` pixels.

    Args:
        scores: an anomaly map ``(H, W)``, a stack ``(N, H, W)`` or a list of maps of any sizes.
        truth: the lesion masks, same shapes (nonzero = lesion).
        region: where pixels count (nonzero = counted), same shapes; `None` counts every pixel.
    """

    def flat(maps) -> np.ndarray:
        if isinstance(maps, np.ndarray):
            return maps.reshape(-1)
        return np.concatenate([np.asarray(m).reshape(-1) for m in maps]) if len(maps) else np.zeros(0)

    s, t = flat(scores).astype(np.float64), flat(truth) != 0
    if s.shape != t.shape:
        raise ValueError(f"scores and truth must have the same pixels, got {s.size} and {t.size}")
    if not np.isfinite(s).all():
        raise ValueError("anomaly scores contain NaN or infinite values")
    if region is not None:
        keep = flat(region) != 0
        if keep.shape != s.shape:
            raise ValueError(f"region must have the same pixels as the scores, got {keep.size} and {s.size}")
        s, t = s[keep], t[keep]
    return s, t


def pixel_auroc(scores, truth, region=None) -> float:
    """Area under the ROC curve of pixel scores against lesion masks (pooled; ties count one half).

    Computed as the Mann-Whitney U statistic: the chance that a random lesion pixel scores above a random normal
    pixel. NaN when the pooled pixels are all lesion or all normal (the AUROC is undefined).
    """
    s, t = pooled_pixels(scores, truth, region)
    positives, negatives = int(t.sum()), int((~t).sum())
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[t].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def dice_curve(scores, truth, region=None) -> tuple[np.ndarray, np.ndarray]:
    """The pooled Dice of ``score >= threshold`` for every distinct score, highest threshold first.

    Returns:
        ``(thresholds, dice)``, both 1-D. Empty when there are no pixels; all NaN when there is no lesion pixel.
    """
    s, t = pooled_pixels(scores, truth, region)
    if not s.size:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    true_positives = np.cumsum(t)
    # The last pixel of each run of equal scores: a threshold takes all of a tie or none of it.
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    called = ends + 1
    positives = int(t.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2 * true_positives[ends] / (called + positives) if positives else np.full(len(ends), np.nan)
    return s[ends], dice.astype(np.float64)


def best_dice_threshold(scores, truth, region=None) -> DiceThreshold:
    """The threshold with the highest pooled Dice (the highest such threshold on a tie). Pick it on training
    patients only; see the module docstring."""
    thresholds, dice = dice_curve(scores, truth, region)
    if not dice.size or np.isnan(dice).all():
        raise ValueError("no lesion pixel in the region: a Dice threshold cannot be chosen")
    best = int(np.nanargmax(dice))
    return DiceThreshold(float(thresholds[best]), float(dice[best]))


def dice_at_threshold(scores, truth, threshold: float, region=None) -> float:
    """The pooled Dice of ``score >= threshold`` (pixels outside ``region`` are never called lesion)."""
    s, t = pooled_pixels(scores, truth, region)
    return dice_score(s >= threshold, t)


def lesion_prediction(score_map: np.ndarray, threshold: float, region: np.ndarray | None = None) -> np.ndarray:
    """The boolean lesion mask a threshold gives on one map (outside ``region``: never lesion)."""
    called = np.asarray(score_map) >= threshold
    return called if region is None else called & (np.asarray(region) != 0)
