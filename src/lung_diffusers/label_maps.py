"""Validation of semantic label maps at the public boundary, in one place.

The pipeline, the model and the training code all take label maps in many forms (numpy, torch, PIL,
lists); :func:`as_label_tensor` turns any of them into an integer tensor ``(B, H, W)`` or says, in terms
a user can act on, what is wrong.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch


def as_label_tensor(segmentation, num_classes: int | None = None) -> torch.Tensor:
    """Label map(s) -> ``torch.long`` tensor ``(B, H, W)``.

    Args:
        segmentation: a numpy array or tensor ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` of integer class ids
            (integer dtype, or floats holding whole numbers), a PIL image of mode ``L``, ``P`` or ``I``, or a list
            of ``(H, W)`` maps of one size.
        num_classes: when given, every value must lie in ``[0, num_classes)``.

    Raises:
        TypeError: not an array-like of integer class ids.
        ValueError: wrong shape, NaN or fractional values, or labels out of range.
    """
    if isinstance(segmentation, (list, tuple)):
        if not segmentation:
            raise ValueError("segmentation is an empty list")
        maps = [as_label_tensor(item) for item in segmentation]
        if any(m.shape[0] != 1 for m in maps):
            raise ValueError("a list of label maps must hold one (H, W) map per image")
        if len({tuple(m.shape) for m in maps}) != 1:
            raise ValueError(f"label maps in a list must share one size, got {sorted({tuple(m.shape[1:]) for m in maps})}")
        labels = torch.cat(maps)
    else:
        labels = _as_tensor(segmentation)
    if labels.is_floating_point():
        if not torch.isfinite(labels).all():
            raise ValueError("the label map contains NaN or infinite values")
        if (labels != labels.round()).any():
            raise ValueError("the label map has fractional values; labels must be whole class ids")
    labels = labels.long()
    if num_classes is not None and labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"label values must lie in [0, {num_classes}) for this model (num_classes={num_classes}); "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )
    return labels


def _as_tensor(segmentation) -> torch.Tensor:
    if isinstance(segmentation, PIL.Image.Image):
        if segmentation.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"a PIL label map must be single-channel (mode L, P or I), got mode {segmentation.mode}. "
                "RGB masks are rejected because colours are not labels: save masks with "
                "PIL.Image.fromarray(labels.astype(np.uint8))."
            )
        segmentation = np.array(segmentation)
    if isinstance(segmentation, np.ndarray):
        if segmentation.dtype.kind not in "iuf":
            raise TypeError(f"label maps must hold integer class ids, got numpy dtype {segmentation.dtype}")
        _reject_colour_array(segmentation.shape)
        # torch lacks uint16/uint32 arithmetic on some builds; the values are small labels anyway.
        segmentation = torch.from_numpy(segmentation.astype(np.float64 if segmentation.dtype.kind == "f" else np.int64))
    if not torch.is_tensor(segmentation):
        raise TypeError(
            "segmentation must be a numpy array, a torch tensor, a PIL image (mode L, P or I) or a list of them, "
            f"got {type(segmentation).__name__}"
        )
    if segmentation.dtype == torch.bool or segmentation.is_complex():
        raise TypeError(f"label maps must hold integer class ids, got dtype {segmentation.dtype}")
    _reject_colour_array(tuple(segmentation.shape))
    if segmentation.ndim == 2:
        segmentation = segmentation[None]
    elif segmentation.ndim == 4 and segmentation.shape[1] == 1:
        segmentation = segmentation[:, 0]
    if segmentation.ndim != 3:
        raise ValueError(
            f"a label map must have shape (H, W), (B, H, W) or (B, 1, H, W), got {tuple(segmentation.shape)}"
        )
    return segmentation


def _reject_colour_array(shape: tuple[int, ...]) -> None:
    # (H, W, 3) would otherwise read as H maps of width 3: name the real mistake instead.
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > shape[-1] and shape[1] > shape[-1]:
        raise ValueError(
            f"got an array of shape {shape}, which looks like a colour image (H, W, {shape[-1]}), not a label map: "
            "colours are not labels. Pass the (H, W) array of class ids (0 background, 1 body, ...)"
        )
