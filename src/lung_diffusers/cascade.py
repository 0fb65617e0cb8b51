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
