"""Anomaly maps against known lesions (lung_diffusers.evaluation.anomaly_scores): pixel AUROC and the Dice threshold
on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lung_diffusers.evaluation import best_dice_threshold, dice_at_threshold, dice_curve, dice_score, pixel_auroc


def test_pixel_auroc_of_known_cases():
    assert pixel_auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75  # 3 of 4 pairs ordered
    assert pixel_auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert pixel_auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert pixel_auroc(np.full(6, 0.3), np.array([0, 1, 0, 1, 0, 0])) == 0.5  # ties count one half
    # The region drops the misordered normal pixel (0.4): the rest is perfectly ordered.
    region = np.array([1, 0, 1, 1])
    assert pixel_auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), region) == 1.0
    assert math.isnan(pixel_auroc(np.ones(3), np.zeros(3)))  # no lesion: undefined
    # Maps of different sizes pool pixel by pixel.
    assert (
        pixel_auroc([np.array([[0.1, 0.9]]), np.array([[0.2], [0.8]])], [np.array([[0, 1]]), np.array([[0], [1]])])
        == 1
    )


def test_pixel_auroc_matches_scikit_learn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = rng.random((3, 20, 20)) < 0.1
    scores = np.round(rng.normal(truth * 0.8, 1.0), 1)  # rounded: many ties
    assert pixel_auroc(scores, truth) == pytest.approx(metrics.roc_auc_score(truth.ravel(), scores.ravel()), abs=1e-12)


def test_dice_curve_and_best_threshold_match_brute_force():
    thresholds, dice = dice_curve(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0]))
    assert thresholds.tolist() == [0.5, 0.1] and dice == pytest.approx([2 / 3, 0.5])  # a tie is taken whole

    rng = np.random.default_rng(1)
    truth = rng.random((2, 16, 16)) < 0.15
    scores = np.round(truth * 0.6 + rng.random(truth.shape), 2)
    region = rng.random(truth.shape) < 0.8
    thresholds, dice = dice_curve(scores, truth, region)
    brute = [dice_at_threshold(scores, truth, t, region) for t in thresholds]
    assert dice == pytest.approx(brute)
    best = best_dice_threshold(scores, truth, region)
    assert best.dice == pytest.approx(max(brute)) and best.threshold == thresholds[int(np.argmax(brute))]
    assert dice_score(np.zeros(4), np.zeros(4)) == 1.0 and dice_score(np.ones(4), np.zeros(4)) == 0.0
    with pytest.raises(ValueError, match="no lesion pixel"):
        best_dice_threshold(scores, np.zeros_like(truth))

