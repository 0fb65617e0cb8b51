"""Average precision of nodule boxes at an IoU threshold (AP50 at 0.5), the thesis' localisation figure.

Boxes are ``(row0, col0, row1, col1)`` in pixels, ``row1 > row0``; the thesis' ground truth is the square centred
on a nodule with side its diameter (:func:`square_boxes`).

How a detection counts, over all test images together:

1. Every detection of every image is sorted by score, highest first (a stable sort: equal scores keep the order
   they were given in).
2. Each in turn is matched to the ground-truth box of its own image with the highest IoU among those not yet
   matched, if that IoU is at least the threshold (COCO's rule; IoU exactly 0.5 counts). Matched: a true
   positive; otherwise a false positive, and so is a second detection of a box already matched (a duplicate).
3. Precision and recall after each detection give the curve; AP is its area with all-point interpolation
   (PASCAL VOC 2010 onwards): precision at each recall is the highest precision at that recall or beyond, summed
   over the recall steps. Not COCO's 101-point sampling.

A false positive ranked after the last true positive costs nothing; one ranked before it lowers the precision of
every later recall step. Images without ground truth contribute only false positives. AP is undefined (NaN)
without any ground-truth box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def square_boxes(centers_px: np.ndarray | Sequence, sides_px: np.ndarray | Sequence) -> np.ndarray:
    """``(N, 4)`` boxes centred on ``centers_px`` (``(N, 2)`` row, column) with side ``sides_px`` (``(N,)``)."""
    centers = np.asarray(centers_px, np.float64).reshape(-1, 2)
    half = np.asarray(sides_px, np.float64).reshape(-1, 1) / 2
    if half.shape[0] != centers.shape[0]:
        raise ValueError(f"need one side per centre, got {half.shape[0]} sides for {centers.shape[0]} centres")
    return np.concatenate([centers - half, centers + half], axis=1)


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of each box of ``first`` ``(N, 4)`` with each of ``second`` ``(M, 4)``: ``(N, M)``."""
    first, second = np.asarray(first, np.float64).reshape(-1, 4), np.asarray(second, np.float64).reshape(-1, 4)
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area = lambda boxes: np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(axis=1)  # noqa: E731
    union = area(first)[:, None] + area(second)[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def match_detections(
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Steps 1-2 of the module docstring: ``(scores, is_true_positive)`` of all detections, highest score first,
    and the number of ground-truth boxes.

    Args:
        boxes: per image, its detections ``(K, 4)``.
        scores: per image, the detections' scores ``(K,)``.
        truths: per image, its ground-truth boxes ``(M, 4)`` (``(0, 4)`` for none).
        iou_threshold: the least IoU of a match.
    """
    if not len(boxes) == len(scores) == len(truths):
        raise ValueError(
            f"need boxes, scores and truths for the same images, got {len(boxes)}, {len(scores)}, {len(truths)}"
        )
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    image_of, order_in_image, all_scores = [], [], []
    for image, (image_boxes, image_scores) in enumerate(zip(boxes, scores)):
        image_scores = np.asarray(image_scores, np.float64).reshape(-1)
        if np.asarray(image_boxes).reshape(-1, 4).shape[0] != image_scores.size:
            raise ValueError(f"image {image}: {len(image_boxes)} boxes but {image_scores.size} scores")
        image_of += [image] * image_scores.size
        order_in_image += list(range(image_scores.size))
        all_scores.append(image_scores)
    all_scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    order = np.argsort(-all_scores, kind="stable")
    ious = [box_iou(np.asarray(b).reshape(-1, 4), np.asarray(t).reshape(-1, 4)) for b, t in zip(boxes, truths)]
    taken = [np.zeros(np.asarray(t).reshape(-1, 4).shape[0], bool) for t in truths]
    hits = np.zeros(order.size, bool)
    for rank, detection in enumerate(order):
        image, k = image_of[detection], order_in_image[detection]
        overlaps = np.where(taken[image], -1.0, ious[image][k])
        if overlaps.size and overlaps.max() >= iou_threshold:
            taken[image][int(overlaps.argmax())] = True
            hits[rank] = True
    return all_scores[order], hits, int(sum(t.size for t in taken))


def average_precision(
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
) -> float:
    """All-point interpolated AP of detections against ground-truth boxes over a set of images (module docstring);
    NaN when there is no ground-truth box."""
    _, hits, positives = match_detections(boxes, scores, truths, iou_threshold)
    if positives == 0:
        return float("nan")
    if not hits.size:
        return 0.0
    true_positives = np.cumsum(hits)
    recall = true_positives / positives
    precision = true_positives / np.arange(1, hits.size + 1)
    # The envelope: the best precision at this recall or any higher one.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def recall_at(
    boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray], truths: Sequence[np.ndarray], iou_threshold: float = 0.5
) -> float:
    """The share of ground-truth boxes matched by some detection (all detections kept); NaN without any box."""
    _, hits, positives = match_detections(boxes, scores, truths, iou_threshold)
    return float(hits.sum() / positives) if positives else float("nan")
