"""Bootstrap confidence intervals of the mean of per-image scores (e.g. Dice) over test images.

The unit of resampling is the test image (pixels of one image are not independent). SciPy's
:func:`scipy.stats.bootstrap` does the resampling, with the percentile method (BCa breaks down on the small,
tied samples of a demonstration set). With two models scored on the same images the comparison is paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """The mean of per-image scores and its bootstrap confidence interval (NaN bounds for fewer than 2 images)."""

    mean: float
    low: float
    high: float
    images: int
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if not np.isfinite(self.low):
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _check(values: Sequence[float], confidence: float, n_resamples: int) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or not values.size:
        raise ValueError(f"need a non-empty 1-D list of per-image scores, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("per-image scores contain NaN or infinite values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    return values


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> Interval:
    """The mean of per-image scores with a percentile bootstrap interval over images."""
    values = _check(values, confidence, n_resamples)
    if values.size < 2:
        return Interval(float(values.mean()), float("nan"), float("nan"), int(values.size), confidence)
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Interval(float(values.mean()), float(low), float(high), int(values.size), confidence)


def paired_bootstrap_interval(
    first: Sequence[float],
    second: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Interval:
    """The mean per-image difference ``first - second`` (two models on the same images), with its interval:
    resampling images keeps each image's pair together."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired scores must have one length, got {first.shape} and {second.shape}")
    return bootstrap_interval(first - second, confidence, n_resamples, seed)
