"""The two-stage (cascade) rules shared by training and sampling: how the low-resolution image reaches the
super-resolution stage.

Training makes the stage-2 input from real slices and sampling from stage 1's output; both must go through the
same resizing, or the second stage learns one upsampling and is shown another (Ho et al. 2021, Cascaded
Diffusion Models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_low_res(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of ``(B, C, h, w)`` images in [-1, 1] to ``size``, clipped back to [-1, 1].

    Bicubic (as DeepFloyd IF's super-resolution stage) keeps edges sharper than bilinear; the clip removes its
    overshoot, which would otherwise read as out-of-window HU.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (batch, channels, height, width), got {tuple(images.shape)}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images.clone()
    return F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False).clamp(-1.0, 1.0).to(images.dtype)


def low_res_label_map(labels, size: int, nodule_classes=None):
    """The first stage's label map from a full-resolution one: a per-class area vote, nodules kept.

    Each output pixel takes the class covering most of its block (ties to the higher class, as the data recipe
    resizes masks: :func:`lung_diffusers.ct.resize_label_map`). A nodule is smaller than a block's other classes
    at 64 px (a 4-mm nodule is under one pixel), so the vote alone would drop it: every nodule component of the
    full map keeps at least the block it covers most, with its class.

    Args:
        labels: an integer label map ``(H, W)`` (numpy).
        size: the first stage's side (e.g. 64).
        nodule_classes: the nodule values of the scheme (default: every nodule class, 5 and 6).
    """
    import cv2
    import numpy as np
    from scipy import ndimage

    from .ct import ALL_NODULE_CLASSES, resize_label_map

    nodule_classes = ALL_NODULE_CLASSES if nodule_classes is None else nodule_classes
    labels = np.asarray(labels)
    small = resize_label_map(labels.astype(np.uint8), size)
    for value in nodule_classes:
        components, count = ndimage.label(labels == value)
        for index in range(1, count + 1):
            coverage = cv2.resize((components == index).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
            if (small[coverage > 0] == value).any():
                continue  # the vote kept part of this nodule
            row, col = np.unravel_index(int(np.argmax(coverage)), coverage.shape)
            small[row, col] = value
    return small
