"""Dice / IoU of two masks and bootstrap intervals of per-image scores (lung_diffusers.evaluation.overlap and
.bootstrap), on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lung_diffusers.evaluation import bootstrap_interval, dice_and_iou, paired_bootstrap_interval


def test_dice_and_iou_of_known_masks():
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True  # 4 pixels
    prediction = np.zeros((4, 4), bool)
    prediction[:2, :3] = True  # 6 pixels, 4 of them right
    dice, iou = dice_and_iou(prediction, truth)
    assert dice == pytest.approx(2 * 4 / 10) and iou == pytest.approx(4 / 6)
    assert dice == pytest.approx(2 * iou / (1 + iou))  # the identity between the two
    assert dice_and_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)  # nothing to find, nothing found
    assert dice_and_iou(np.zeros((3, 3)), np.eye(3)) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        dice_and_iou(np.zeros((3, 3)), np.zeros((3, 4)))


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    few, many = rng.uniform(0.3, 0.9, 10), rng.uniform(0.3, 0.9, 400)
    small, large = bootstrap_interval(few, n_resamples=2000), bootstrap_interval(many, n_resamples=2000)
    assert small.low < small.mean < small.high and large.low < large.mean < large.high
    assert small.mean == pytest.approx(few.mean()) and small.images == 10 and small.confidence == 0.95
    assert large.high - large.low < (small.high - small.low) / 3  # about 1/sqrt(40) as wide
    # The usual normal-theory interval of a mean: the bootstrap agrees on a large sample.
    half = 1.96 * many.std(ddof=1) / np.sqrt(many.size)
    assert large.low == pytest.approx(many.mean() - half, abs=0.01)
    assert bootstrap_interval(few, n_resamples=2000, seed=3) == bootstrap_interval(few, n_resamples=2000, seed=3)
    one = bootstrap_interval([0.7])
    assert one.mean == 0.7 and np.isnan(one.low) and str(one) == "0.700"  # no interval from one image
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval([0.5, float("nan")])


def test_a_paired_interval_sees_a_consistent_gain_that_unpaired_intervals_hide():
    rng = np.random.default_rng(1)
    hardness = rng.uniform(0.1, 0.9, 30)  # images differ far more than the two models do
    without = hardness
    with_prior = np.clip(hardness + rng.uniform(0.02, 0.06, 30), 0, 1)
    a, b = bootstrap_interval(with_prior, n_resamples=2000), bootstrap_interval(without, n_resamples=2000)
    assert a.low < b.high  # the two intervals overlap
    gain = paired_bootstrap_interval(with_prior, without, n_resamples=2000)
    assert 0 < gain.low < gain.mean < gain.high  # yet every image gained: the paired interval excludes 0
    assert paired_bootstrap_interval([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]).low == pytest.approx(0.1)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap_interval([0.5, 0.6], [0.5])

