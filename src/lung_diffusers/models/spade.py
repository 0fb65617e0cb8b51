"""SPADE normalisation and the SPADE residual block of the Semantic Diffusion Model (SDM).

SDM (Wang et al. 2022) feeds the semantic label map to the U-Net decoder only, through
spatially-adaptive group norms. Everything else in the model is a stock diffusers block.

The label-map branch of each norm (resize, shared conv, gamma/beta convs) depends on neither the
noisy sample nor the timestep, so it is split out as :meth:`SPADEGroupNorm.modulation`: a sampler can
compute it once per mask and reuse it at every denoising step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.activations import get_activation
from diffusers.models.upsampling import Upsample2D
from torch import nn

# (scale, shift) of one SPADE norm: ``norm(x) * scale + shift`` with ``scale = 1 + gamma``.
Modulation = tuple[torch.Tensor, torch.Tensor]
# How a batch of images shares the modulations of fewer label maps: runs of ``(maps, images_per_map)``, in batch
# order; e.g. ``((2, 3), (1, 6))`` = 2 maps with 3 images each, then one map (the guidance null map) for 6 images.
MapGroups = tuple[tuple[int, int], ...]


def modulate(normalized: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, map_groups: MapGroups | None) -> torch.Tensor:
    """``normalized * scale + shift``, where scale and shift have one entry per label map (see :data:`MapGroups`).

    Images of one map share its modulation through broadcasting, so a map's features are stored once however
    many images use it.
    """
    if map_groups is None:
        return torch.addcmul(shift, normalized, scale)
    parts, image, map_index = [], 0, 0
    for maps, per_map in map_groups:
        chunk = normalized[image : image + maps * per_map].unflatten(0, (maps, per_map))
        s, b = scale[map_index : map_index + maps, None], shift[map_index : map_index + maps, None]
        parts.append(torch.addcmul(b, chunk, s).flatten(0, 1))
        image, map_index = image + maps * per_map, map_index + maps
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class SPADEGroupNorm(nn.Module):
    r"""Group norm without affine parameters, modulated per pixel by a semantic label map.

    ``out = GroupNorm(x) * (1 + gamma(m)) + beta(m)``, where ``m`` is the one-hot label map resized to the
    size of ``x`` with legacy ``"nearest"`` interpolation (as the official SDM does), and ``gamma``/``beta``
    are 3x3 convs on a shared ReLU(conv3x3(m)) feature of ``hidden_channels`` channels.

    Parameters:
        num_channels (`int`): Channels of the normalised features.
        num_classes (`int`): Channels of the one-hot label map.
        hidden_channels (`int`, defaults to 128): Width of the shared label-map feature (fixed to 128 in SDM).
        num_groups (`int`, defaults to 32): Groups of the parameter-free group norm.
        eps (`float`, defaults to 1e-5): Group norm epsilon (guided-diffusion's value).
    """

    def __init__(
        self,
        num_channels: int,
        num_classes: int,
        hidden_channels: int = 128,
        num_groups: int = 32,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, num_channels, eps=eps, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(num_classes, hidden_channels, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden_channels, num_channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden_channels, num_channels, 3, padding=1)

    def modulation(self, segmentation: torch.Tensor, size: tuple[int, int]) -> Modulation:
        """Per-pixel ``(scale, shift)`` from a one-hot ``(B, num_classes, H, W)`` map, at spatial ``size``."""
        if tuple(segmentation.shape[-2:]) != tuple(size):
            # Legacy "nearest" (top-left pixel of each block): "nearest-exact" gives other numbers than SDM.
            segmentation = F.interpolate(segmentation, size=size, mode="nearest")
        hidden = self.mlp_shared(segmentation)
        return 1 + self.mlp_gamma(hidden), self.mlp_beta(hidden)

    def forward(self, hidden_states: torch.Tensor, modulation: Modulation, map_groups: MapGroups | None = None) -> torch.Tensor:
        scale, shift = modulation
        return modulate(self.norm(hidden_states), scale, shift, map_groups)


class SPADEResnetBlock2D(nn.Module):
    r"""A diffusers-style residual block whose two group norms are :class:`SPADEGroupNorm`.

    Attribute names follow :class:`diffusers.models.resnet.ResnetBlock2D`; the computation follows SDM's
    ``SDMResBlock``: ``h = conv1(act(norm1(x, m)))`` (with an optional nearest-2x upsampling
    between the activation and the conv, on both paths), the time embedding enters by scale-shift
    (or addition before ``norm2``), then ``conv2(dropout(act(norm2(h, m))))`` plus the skip path.

    Parameters:
        in_channels (`int`): Input channels.
        out_channels (`int`, *optional*): Output channels, defaults to ``in_channels``.
        temb_channels (`int`): Time-embedding channels.
        num_classes (`int`): Channels of the one-hot label map.
        dropout (`float`, defaults to 0.0): Dropout before ``conv2``.
        groups (`int`, defaults to 32): Group-norm groups.
        eps (`float`, defaults to 1e-5): Group-norm epsilon.
        time_embedding_norm (`str`, defaults to `"scale_shift"`): ``"scale_shift"`` or ``"default"`` (additive).
        non_linearity (`str`, defaults to `"silu"`): Activation.
        spade_hidden_channels (`int`, defaults to 128): Hidden width of the SPADE label-map convs.
        up (`bool`): Upsample by 2 (nearest) inside the block, as SDM's decoder does with ``resblock_updown``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int,
        num_classes: int,
        dropout: float = 0.0,
        groups: int = 32,
        eps: float = 1e-5,
        time_embedding_norm: str = "scale_shift",
        non_linearity: str = "silu",
        spade_hidden_channels: int = 128,
        up: bool = False,
    ):
        super().__init__()
        if time_embedding_norm not in ("default", "scale_shift"):
            raise ValueError(f"time_embedding_norm must be 'default' or 'scale_shift', got {time_embedding_norm!r}")
        out_channels = out_channels or in_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.time_embedding_norm = time_embedding_norm
        self.up = up

        spade = dict(num_classes=num_classes, hidden_channels=spade_hidden_channels, num_groups=groups, eps=eps)
        self.norm1 = SPADEGroupNorm(in_channels, **spade)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        time_out = 2 * out_channels if time_embedding_norm == "scale_shift" else out_channels
        self.time_emb_proj = nn.Linear(temb_channels, time_out)
        self.norm2 = SPADEGroupNorm(out_channels, **spade)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nonlinearity = get_activation(non_linearity)

        self.upsample = Upsample2D(in_channels, use_conv=False) if up else None
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def encode_segmentation(
        self, segmentation: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's SPADE modulations ``(scale1, shift1, scale2, shift2)`` for input spatial ``size``."""
        height, width = size
        out_size = (2 * height, 2 * width) if self.up else (height, width)
        return (*self.norm1.modulation(segmentation, (height, width)), *self.norm2.modulation(segmentation, out_size))

    def forward(
        self,
        input_tensor: torch.Tensor,
        temb: torch.Tensor,
        segmentation_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | torch.Tensor,
        map_groups: MapGroups | None = None,
    ) -> torch.Tensor:
        """``segmentation_features``: this block's precomputed modulations, or the one-hot map itself, whose
        modulations are then computed here and freed after use (the memory-lean path: only one block's
        features exist at a time)."""
        if torch.is_tensor(segmentation_features):
            segmentation_features = self.encode_segmentation(segmentation_features, tuple(input_tensor.shape[-2:]))
        scale1, shift1, scale2, shift2 = segmentation_features
        hidden_states = self.nonlinearity(self.norm1(input_tensor, (scale1, shift1), map_groups))
        if self.upsample is not None:
            input_tensor = self.upsample(input_tensor)
            hidden_states = self.upsample(hidden_states)
        hidden_states = self.conv1(hidden_states)

        temb = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        if self.time_embedding_norm == "scale_shift":
            time_scale, time_shift = temb.chunk(2, dim=1)
            hidden_states = self.norm2(hidden_states, (scale2, shift2), map_groups)
            hidden_states = torch.addcmul(time_shift, hidden_states, 1 + time_scale)
        else:
            hidden_states = self.norm2(hidden_states + temb, (scale2, shift2), map_groups)

        hidden_states = self.conv2(self.dropout(self.nonlinearity(hidden_states)))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return input_tensor + hidden_states
