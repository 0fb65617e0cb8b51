"""Label maps at the public boundary: validation, in one place, and resizing as the data recipe resizes.

The pipeline, the model and the training code all take label maps in many forms (numpy, torch, PIL,
lists); :func:`as_label_tensor` turns any of them into an integer tensor ``(B, H, W)`` or says, in terms
a user can act on, what is wrong. :func:`check_label_values` names labels out of range (and maps scaled for
viewing), :func:`check_label_map_size` a map of another size than the model was trained on, and
:func:`resize_label_map` gives it the trained size. torch, PIL and OpenCV are imported when first needed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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
    import torch

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
    if num_classes is not None:
        check_label_values(labels, num_classes)
    return labels


def check_label_values(labels, num_classes: int, where: str | None = None) -> None:
    """Raise a `ValueError` naming the values of ``labels`` outside ``[0, num_classes)``.

    Args:
        labels: integer class ids, a numpy array or tensor of any shape.
        num_classes: the number of classes (6: nodule masks, 7: benign / malignant nodules).
        where: what the range belongs to, for the message (default: ``"for this model (num_classes=N)"``).
    """
    array = labels.cpu().numpy() if _is_tensor(labels) else np.asarray(labels)
    if not array.size or (array.min() >= 0 and array.max() < num_classes):
        return
    values = np.unique(array)
    outside = values[(values < 0) | (values >= num_classes)]
    shown = ", ".join(str(int(v)) for v in outside[:8]) + (", ..." if outside.size > 8 else "")
    raise ValueError(
        f"label values must lie in [0, {num_classes}) {where or f'for this model (num_classes={num_classes})'}; "
        f"got {shown} (values from {int(values.min())} to {int(values.max())}){scaled_labels_hint(values, num_classes)}"
    )


def scaled_labels_hint(values, num_classes: int) -> str:
    """``"; they look like labels x50 ..."`` when the distinct values are class ids times one factor, else ``""``.

    Label maps are often saved multiplied for viewing (x50, or spread over 0-255), which reads as classes that
    do not exist; a plain range error, or "no nodule", would hide that.
    """
    nonzero = np.unique(np.asarray(values, dtype=np.int64))
    nonzero = nonzero[nonzero > 0]
    if nonzero.size < 2:  # a single value (a 0/255 binary mask) is no evidence of scaling
        return ""
    factor = int(np.gcd.reduce(nonzero))
    if factor < 2 or nonzero.max() // factor >= num_classes:
        return ""
    return f"; they look like labels x{factor} (a map scaled for viewing?): divide the map by {factor}"


def check_label_map_size(height: int, width: int, unet_config) -> str | None:
    """Check a label map's size against what the U-Net was trained on.

    The trained size is ``sample_size``: the whole slices the model makes, also for a model trained on random
    crops of such slices (``training_crop_size`` in its config), which samples whole slices too. A map half that
    size or smaller gives noise (its anatomy is far smaller than any the model saw); other sizes run, but away
    from the training distribution.

    Returns:
        `None` when the map has the trained size, else a warning to show once.

    Raises:
        ValueError: the map's height or width is at most half the trained size.
    """
    size = unet_config.sample_size
    trained_h, trained_w = (size, size) if isinstance(size, (int, np.integer)) else size
    if (height, width) == (trained_h, trained_w):
        return None
    crop = getattr(unet_config, "training_crop_size", None)
    spacing = getattr(unet_config, "pixel_spacing_mm", None)
    trained = f"{trained_h}x{trained_w} slices" + (f" (from {crop}-px crops of them)" if crop else "")
    trained += f" at {spacing:g} mm per pixel" if spacing else ""
    resize = f"lung_diffusers.ct.resize_label_map(labels, {max(trained_h, trained_w)})"
    if 2 * height <= trained_h or 2 * width <= trained_w:
        raise ValueError(
            f"the label map is {height}x{width}, but this model was trained on {trained}; a map half that size or "
            f"smaller gives noise. Resize it as the data recipe does: {resize}"
        )
    return (
        f"the label map is {height}x{width}, but this model was trained on {trained}: images of another size are "
        f"outside what it learned (anatomy at another scale or field of view). For the trained size: {resize}"
    )


def resize_label_map(labels: np.ndarray, size: int) -> np.ndarray:
    """Resize a label map to ``size x size``, giving each output pixel its majority class by area.

    Plain nearest-neighbour sampling can drop a nodule only a few pixels wide when halving the
    resolution; area-weighted voting keeps every structure that covers most of an output pixel.
    Ties go to the higher class (the priority of overlapping structures in the label schemes).
    """
    import cv2

    if labels.shape == (size, size):
        return labels.copy()
    classes = np.arange(int(labels.max()) + 1)
    coverage = np.stack(
        [cv2.resize((labels == c).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) for c in classes]
    )
    return (classes[-1] - np.argmax(coverage[::-1], axis=0)).astype(np.uint8)


def _is_tensor(value) -> bool:
    # A tensor exists only where torch was imported, so NumPy callers never pay for importing it.
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(value)


def _as_tensor(segmentation) -> torch.Tensor:
    import PIL.Image
    import torch

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
