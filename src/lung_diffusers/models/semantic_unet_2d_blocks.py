"""The SPADE-conditioned middle and decoder blocks of :class:`SemanticUNet2DModel`.

They mirror diffusers' ``UNetMidBlock2D`` and ``AttnUpBlock2D`` (same skip handling, attribute names
and attention layer), with :class:`SPADEResnetBlock2D` in place of ``ResnetBlock2D``. The encoder needs
no new block: it is diffusers' ``DownBlock2D`` / ``ResnetDownsampleBlock2D`` / ``AttnDownBlock2D``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .spade import MapGroups, SPADEResnetBlock2D

BlockFeatures = Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def legacy_attention_block(channels: int, heads: int, groups: int, eps: float) -> Attention:
    """Self-attention laid out like guided-diffusion's ``AttentionBlock`` (group norm, residual), as diffusers builds it."""
    return Attention(
        channels,
        heads=heads,
        dim_head=channels // heads,
        eps=eps,
        norm_num_groups=groups,
        residual_connection=True,
        bias=True,
        upcast_softmax=True,
        _from_deprecated_attn_block=True,
    )


def _norm_of(resnet_kwargs: dict) -> dict:
    return {"groups": resnet_kwargs.get("groups", 32), "eps": resnet_kwargs.get("eps", 1e-5)}


class _CheckpointedResnets(nn.Module):
    """Runs SPADE resnets under diffusers' gradient-checkpointing switch."""

    def __init__(self):
        super().__init__()
        self.gradient_checkpointing = False

    def _run_resnet(self, resnet: nn.Module, hidden_states, temb, features, map_groups: MapGroups | None):
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(resnet, hidden_states, temb, features, map_groups)
        return resnet(hidden_states, temb, features, map_groups)


class SPADEMidBlock2D(_CheckpointedResnets):
    """SPADE resnet, self-attention, SPADE resnet: SDM's ``middle_block``.

    ``resnet_kwargs`` (``temb_channels``, ``num_classes``, ``groups``, ``eps``, ...) go to both
    :class:`SPADEResnetBlock2D`; the attention uses the same ``groups`` and ``eps``. ``attention_heads=None``
    drops the attention (diffusers' ``add_attention=False``), for a stage trained on crops that samples whole slices.
    """

    def __init__(self, *, channels: int, attention_heads: int | None, **resnet_kwargs):
        super().__init__()
        self.resnets = nn.ModuleList(
            SPADEResnetBlock2D(in_channels=channels, out_channels=channels, **resnet_kwargs) for _ in range(2)
        )
        attentions = [] if attention_heads is None else [legacy_attention_block(channels, attention_heads, **_norm_of(resnet_kwargs))]
        self.attentions = nn.ModuleList(attentions)

    @property
    def spade_resnets(self) -> list[SPADEResnetBlock2D]:
        return list(self.resnets)

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        segmentation_features: BlockFeatures,
        map_groups: MapGroups | None = None,
    ):
        hidden_states = self._run_resnet(self.resnets[0], hidden_states, temb, segmentation_features[0], map_groups)
        for attention in self.attentions:
            hidden_states = attention(hidden_states)
        return self._run_resnet(self.resnets[1], hidden_states, temb, segmentation_features[1], map_groups)


class SPADEUpBlock2D(_CheckpointedResnets):
    """One decoder level: ``num_layers`` SPADE resnets, each taking a skip connection and optionally followed
    by self-attention, then an optional 2x upsampler (a SPADE resnet, or nearest + 3x3 conv).

    Channel bookkeeping is diffusers' ``AttnUpBlock2D``'s: the last resnet's skip has ``in_channels``
    (the level below), the others ``out_channels``; the first resnet's input has ``prev_output_channel``.
    ``resnet_kwargs`` go to every :class:`SPADEResnetBlock2D`.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        num_layers: int,
        attention_heads: int | None = None,
        upsample_type: str | None = "resnet",
        **resnet_kwargs,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            SPADEResnetBlock2D(
                in_channels=(prev_output_channel if i == 0 else out_channels)
                + (in_channels if i == num_layers - 1 else out_channels),
                out_channels=out_channels,
                **resnet_kwargs,
            )
            for i in range(num_layers)
        )
        self.attentions = (
            nn.ModuleList(
                legacy_attention_block(out_channels, attention_heads, **_norm_of(resnet_kwargs)) for _ in range(num_layers)
            )
            if attention_heads
            else None
        )
        if upsample_type == "resnet":
            self.upsamplers = nn.ModuleList(
                [SPADEResnetBlock2D(in_channels=out_channels, out_channels=out_channels, up=True, **resnet_kwargs)]
            )
        elif upsample_type == "conv":
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        elif upsample_type is None:
            self.upsamplers = None
        else:
            raise ValueError(f"upsample_type must be 'resnet', 'conv' or None, got {upsample_type!r}")

    @property
    def spade_resnets(self) -> list[SPADEResnetBlock2D]:
        extra = [m for m in (self.upsamplers or []) if isinstance(m, SPADEResnetBlock2D)]
        return [*self.resnets, *extra]

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        segmentation_features: BlockFeatures,
        map_groups: MapGroups | None = None,
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            skip = res_hidden_states_tuple[-1 - i]
            hidden_states = torch.cat([hidden_states, skip], dim=1)
            hidden_states = self._run_resnet(resnet, hidden_states, temb, segmentation_features[i], map_groups)
            if self.attentions is not None:
                hidden_states = self.attentions[i](hidden_states)
        if self.upsamplers is not None:
            upsampler = self.upsamplers[0]
            if isinstance(upsampler, SPADEResnetBlock2D):
                hidden_states = self._run_resnet(upsampler, hidden_states, temb, segmentation_features[-1], map_groups)
            else:
                hidden_states = upsampler(hidden_states)
        return hidden_states
