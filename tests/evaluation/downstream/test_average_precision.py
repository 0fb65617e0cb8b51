"""AP50 on hand-worked boxes (lung_diffusers.evaluation.downstream.average_precision)."""

from __future__ import annotations

import numpy as np
import pytest

from lung_diffusers.evaluation.downstream.average_precision import (
    average_precision,
    box_iou,
    recall_at,
    square_boxes,
)

A = square_boxes([[20, 20]], [10])[0]  # rows/columns 15-25
B = square_boxes([[60, 60]], [8])[0]
FAR = square_boxes([[100, 10]], [10])[0]


def ap(detections, truths):
    """``detections``: per image a list of (box, score)."""
    boxes = [np.array([d[0] for d in image]).reshape(-1, 4) for image in detections]
    scores = [np.array([d[1] for d in image]) for image in detections]
    return average_precision(boxes, scores, [np.array(t).reshape(-1, 4) for t in truths])


def test_boxes_and_iou():
    np.testing.assert_allclose(A, [15, 15, 25, 25])
    assert box_iou(A[None], A[None])[0, 0] == 1.0
    assert box_iou(A[None], FAR[None])[0, 0] == 0.0
    # Concentric squares: IoU is the squared ratio of the sides, so a side off by a factor 1/sqrt(2) is exactly 0.5.
    assert box_iou(square_boxes([[20, 20]], [10 / np.sqrt(2)]), A[None])[0, 0] == pytest.approx(0.5)
    shifted = A + [0, 5, 0, 5]  # half the box: 50 / 150
    assert box_iou(shifted[None], A[None])[0, 0] == pytest.approx(1 / 3)


def test_perfect_detections_score_one():
    assert ap([[(A, 0.9)], [(B, 0.8)]], [[A], [B]]) == 1.0


def test_a_false_positive_ranked_first_halves_the_precision():
    # Ranked: FP (p 0/1), TP (recall 1 at precision 1/2): AP = 1 * 0.5.
    assert ap([[(FAR, 0.9), (A, 0.5)]], [[A]]) == pytest.approx(0.5)
    # Ranked last it costs nothing (all-point interpolation).
    assert ap([[(FAR, 0.1), (A, 0.5)]], [[A]]) == 1.0
    # On another image without any nodule it counts the same way.
    assert ap([[(A, 0.5)], [(FAR, 0.9)]], [[A], []]) == pytest.approx(0.5)


def test_a_missed_nodule_caps_recall():
    assert ap([[(A, 0.9)], []], [[A], [B]]) == pytest.approx(0.5)
    assert recall_at([A[None], np.zeros((0, 4))], [np.array([0.9]), np.zeros(0)], [A[None], B[None]]) == 0.5
    # A detection too small for IoU 0.5 is a miss and a false positive.
    assert ap([[(square_boxes([[20, 20]], [6])[0], 0.9)]], [[A]]) == 0.0


def test_duplicate_detections_are_false_positives():
    # Two on A then one on B: TP (1, 1/2), FP (1/2 precision), TP (recall 1, precision 2/3) -> 0.5 + 0.5 * 2/3.
    assert ap([[(A, 0.9), (A + 0.5, 0.8)], [(B, 0.7)]], [[A], [B]]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # A duplicate after every true positive costs nothing.
    assert ap([[(A, 0.9), (A + 0.5, 0.1)], [(B, 0.7)]], [[A], [B]]) == 1.0


def test_no_truth_is_undefined_and_mismatched_inputs_are_refused():
    assert np.isnan(ap([[(A, 0.9)]], [[]]))
    assert ap([[]], [[A]]) == 0.0
    with pytest.raises(ValueError, match="same images"):
        average_precision([A[None]], [], [A[None]])
