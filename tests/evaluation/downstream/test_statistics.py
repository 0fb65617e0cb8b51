"""The Wilcoxon tests over runs equal SciPy's, and intervals over test images (lung_diffusers.evaluation.downstream
.statistics)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lung_diffusers.evaluation import bootstrap_interval
from lung_diffusers.evaluation.downstream.statistics import image_interval, rank_sum_p, signed_rank_p

REAL = [0.857, 0.861, 0.842, 0.870, 0.853, 0.849, 0.866, 0.858, 0.845, 0.862]
PADDED = [0.889, 0.893, 0.880, 0.901, 0.886, 0.879, 0.895, 0.890, 0.884, 0.892]


def test_the_p_values_are_scipys():
    assert rank_sum_p(PADDED, REAL) == pytest.approx(stats.ranksums(PADDED, REAL).pvalue, rel=1e-12)
    assert signed_rank_p(PADDED, REAL) == pytest.approx(stats.wilcoxon(PADDED, REAL).pvalue, rel=1e-12)
    # Ten runs, every padded run above every real one: the rank-sum extreme, and 2/2^10 for ten positive pairs.
    assert rank_sum_p(PADDED, REAL) < 2e-4 and signed_rank_p(PADDED, REAL) == pytest.approx(2 / 1024)
    mixed = np.array(REAL) + np.array([0.01, -0.02, 0.005, 0.0, -0.01, 0.02, 0.0, -0.004, 0.003, 0.001])
    assert signed_rank_p(mixed, REAL) == pytest.approx(stats.wilcoxon(mixed, REAL).pvalue, rel=1e-12)  # zeros, ties
    assert rank_sum_p(mixed, REAL) == pytest.approx(stats.ranksums(mixed, REAL).pvalue, rel=1e-12)


def test_identical_arms_give_p_one_and_bad_runs_are_refused():
    assert rank_sum_p(REAL, REAL) == pytest.approx(1.0) and signed_rank_p(REAL, REAL) == 1.0
    assert rank_sum_p([0.5] * 4, [0.5] * 4) == 1.0  # every run tied
    with pytest.raises(ValueError, match="one value per seed"):
        signed_rank_p(REAL, REAL[:-1])
    with pytest.raises(ValueError, match="NaN"):
        rank_sum_p([0.5, float("nan")], REAL)
    with pytest.raises(ValueError, match="non-empty"):
        rank_sum_p([], REAL)


def test_intervals_over_test_images():
    scores = np.random.default_rng(0).uniform(0, 1, 40)
    assert image_interval(scores, n_resamples=500) == bootstrap_interval(scores, n_resamples=500)
    # A set-level metric (here the mean) recomputed on resamples agrees with the per-image bootstrap.
    by_metric = image_interval(images=40, metric=lambda idx: scores[idx].mean(), n_resamples=2000)
    assert by_metric.mean == pytest.approx(scores.mean())
    assert by_metric.low == pytest.approx(bootstrap_interval(scores, n_resamples=2000).low, abs=0.03)
    # Resamples where the metric is undefined are left out, not turned into a NaN interval.
    flagged = np.arange(40) < 3
    sparse = image_interval(
        images=40, metric=lambda idx: scores[idx].mean() if flagged[idx].any() else float("nan"), n_resamples=300
    )
    assert np.isfinite(sparse.low) and sparse.low <= sparse.mean <= sparse.high
    with pytest.raises(ValueError, match="not both"):
        image_interval(scores, images=3, metric=np.mean)
