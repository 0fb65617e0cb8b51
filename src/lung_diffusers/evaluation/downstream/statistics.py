"""Is padding with synthetic slices better? The thesis' Wilcoxon tests over runs, and intervals over test images.

* :func:`rank_sum_p`: the Wilcoxon rank-sum (Mann-Whitney) test of one metric over the runs of two arms, as the
  thesis reports it (table 4.1): the runs of each arm as independent samples. SciPy's
  :func:`scipy.stats.ranksums`: two-sided, the normal approximation without a tie correction.
* :func:`signed_rank_p`: the arms trained from the same seeds are pairs, so the signed-rank test of the paired
  differences (:func:`scipy.stats.wilcoxon`, two-sided; exact for up to 50 pairs without ties or zero differences,
  else the normal approximation) uses that pairing, which the rank-sum test ignores.
* :func:`image_interval`: the mean of a metric with a bootstrap interval over test images
  (:func:`lung_diffusers.evaluation.bootstrap.bootstrap_interval` for per-image scores such as correctness; a
  set-level metric such as AP is recomputed on each resample of images).

Ties and identical arms: rank-sum p is 1.0 when every run of both arms has the same value (the statistic is 0).
Signed-rank p is 1.0 when every paired difference is 0 (no pair tells the arms apart); SciPy returns the same
with a warning, here it is returned without calling SciPy. Pairs with a zero difference are dropped otherwise
(SciPy's ``zero_method="wilcox"``). Fewer than one run per arm, unequal pair counts or non-finite values are
refused. With 10 runs the smallest two-sided signed-rank p is 2/1024 = 0.002, the smallest rank-sum p about
0.0002: p-values of runs that differ only by seed measure seed-to-seed variation on this test set, not how the
arms would compare on other patients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from ..bootstrap import Interval, bootstrap_interval


def _runs(values: Sequence[float], name: str) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D list of one value per run, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values; leave out the runs whose metric is undefined")
    return values


def rank_sum_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon rank-sum p of the runs of arm ``a`` against those of arm ``b`` (see module docstring)."""
    a, b = _runs(a, "a"), _runs(b, "b")
    return float(stats.ranksums(a, b).pvalue)


def signed_rank_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of the paired runs ``a[i]``, ``b[i]`` (the same seed in both arms)."""
    a, b = _runs(a, "a"), _runs(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired runs need one value per seed in each arm, got {a.size} and {b.size}")
    if not np.any(a - b):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)


def image_interval(
    per_image: Sequence[float] | None = None,
    *,
    images: int | None = None,
    metric: Callable[[np.ndarray], float] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """The mean of a metric over test images with a percentile bootstrap interval over those images.

    Either ``per_image`` scores (their mean, e.g. each image's correctness averaged over runs), or ``images`` and
    ``metric``: ``metric(indices)`` computes a set-level figure (e.g. AP averaged over runs) on the images at
    ``indices``, recomputed on each resample (resamples where it is NaN, e.g. AP without any nodule, are left
    out of the percentiles).
    """
    if per_image is not None:
        if metric is not None or images is not None:
            raise ValueError("give either per_image scores or images and metric, not both")
        return bootstrap_interval(per_image, confidence, n_resamples, seed)
    if metric is None or images is None or images < 1:
        raise ValueError("give per_image scores, or images (at least 1) and metric")
    value = float(metric(np.arange(images)))
    if images < 2:
        return Interval(value, float("nan"), float("nan"), images, confidence)
    # Not scipy.stats.bootstrap: a resample may hold no nodule at all, where AP is undefined (NaN); such resamples
    # are left out of the percentiles instead of making the whole interval NaN.
    rng = np.random.default_rng(seed)
    draws = np.array([metric(rng.integers(0, images, images)) for _ in range(n_resamples)], np.float64)
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return Interval(value, float("nan"), float("nan"), images, confidence)
    tail = 50 * (1 - confidence)
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(value, float(low), float(high), images, confidence)
