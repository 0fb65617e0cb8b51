"""``SemanticUNet2DModel``: the Semantic Diffusion Model (SDM) U-Net as a diffusers model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import AttnDownBlock2D, DownBlock2D, ResnetDownsampleBlock2D
from diffusers.utils import BaseOutput
from torch import nn

from ..ct import as_label_tensor
from .semantic_unet_2d_blocks import SPADEMidBlock2D, SPADEUpBlock2D
from .spade import MapGroups


@dataclass(frozen=True)
class SegmentationFeatures:
    """The SPADE modulations of every decoder norm for a batch of label maps: what
    :meth:`SemanticUNet2DModel.encode_segmentation` returns and ``forward(..., segmentation_features=)`` reuses.

    Args:
        modulations: one ``(scale1, shift1, scale2, shift2)`` entry per SPADE res block, in forward order, each
            tensor with one row per distinct label map.
        repeats: images per map, in batch order (e.g. ``(3, 3, 6)``: two maps with 3 images each, then a null
            map shared by 6 guidance images). `None`: one image per map. A map's rows are stored once, however
            many images use it.
    """

    modulations: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], ...]
    repeats: tuple[int, ...] | None = None

    @property
    def num_maps(self) -> int:
        return self.modulations[0][0].shape[0]

    @property
    def num_images(self) -> int:
        return self.num_maps if self.repeats is None else sum(self.repeats)

    @property
    def map_groups(self) -> MapGroups | None:
        """Runs of ``(maps, images_per_map)``, the form the SPADE norms broadcast with."""
        if self.repeats is None or all(r == 1 for r in self.repeats):
            return None
        runs: list[list[int]] = []
        for r in self.repeats:
            if runs and runs[-1][1] == r:
                runs[-1][0] += 1
            else:
                runs.append([1, r])
        return tuple((maps, r) for maps, r in runs)

    @property
    def nbytes(self) -> int:
        """Memory held by the features."""
        return sum(t.numel() * t.element_size() for entry in self.modulations for t in entry)


@dataclass
class SemanticUNet2DOutput(BaseOutput):
    """
    Output of :class:`SemanticUNet2DModel`.

    Args:
        sample (`torch.Tensor` of shape `(batch_size, out_channels, height, width)`):
            The predicted noise (the first ``in_channels`` channels) and, for learned-variance models,
            the variance interpolation values ``v`` in the last ``in_channels`` channels.
        segmentation_features (`SegmentationFeatures`, *optional*): The mask features computed in this call,
            when ``return_segmentation_features=True``, to pass to the next call.
    """

    sample: torch.Tensor
    segmentation_features: SegmentationFeatures | None = None


class SemanticUNet2DModel(ModelMixin, ConfigMixin):
    r"""
    The U-Net of the Semantic Diffusion Model (Wang et al., 2022): the noisy image goes through a plain
    time-conditioned encoder; the semantic label map enters the middle block and the decoder through SPADE
    group norms. Weight-compatible with official SDM checkpoints via :func:`lung_diffusers.convert_sdm_checkpoint`.

    The defaults are the thesis' configuration: 256x256 slices, 256 base channels with SDM's channel multipliers
    for 256 px, attention at 32, 16 and 8 px (downsampling factors 8, 16, 32) with 64 channels per head,
    2 res blocks per level, resblock up/down sampling, scale-shift time conditioning, learned variance and
    6 classes (0 background, 1 body, 2 left lung, 3 right lung, 4 trachea, 5 nodule).

    Parameters:
        sample_size (`int`, defaults to 256): Training image size (height = width).
        in_channels (`int`, defaults to 1): Image channels (1 for CT, 3 for official RGB checkpoints).
        out_channels (`int`, defaults to 2): ``in_channels`` (epsilon only) or ``2 * in_channels``
            (epsilon plus learned-variance values, as SDM's ``learn_sigma``).
        num_classes (`int`, defaults to 6): Semantic classes, i.e. channels of the one-hot label map
            (7 for the benign/malignant variant).
        block_out_channels (`tuple[int]`): Channels of each resolution level (SDM's ``model_channels * channel_mult``).
        layers_per_block (`int`, defaults to 2): Res blocks per encoder level (the decoder has one more).
        attention_downsample_factors (`tuple[int]`, defaults to `(8, 16, 32)`): Downsampling factors (powers of 2
            of an existing level) whose blocks get self-attention; SDM's model-level ``attention_resolutions``.
        attention_head_dim (`int`, *optional*, defaults to 64): Channels per attention head (SDM's
            ``num_head_channels``). When `None`, ``num_attention_heads`` fixes the head count instead.
        num_attention_heads (`int`, *optional*): Heads per attention layer when ``attention_head_dim`` is `None`.
        num_attention_heads_upsample (`int`, *optional*): Heads in the decoder's attention layers when
            ``attention_head_dim`` is `None`; defaults to ``num_attention_heads``.
        downsample_type (`str`, defaults to `"resnet"`): ``"resnet"`` (a res block with average pooling, SDM's
            ``resblock_updown``) or ``"conv"`` (a strided 3x3 conv).
        upsample_type (`str`, defaults to `"resnet"`): ``"resnet"`` (a SPADE res block with nearest upsampling)
            or ``"conv"`` (nearest upsampling then a 3x3 conv).
        resnet_time_scale_shift (`str`, defaults to `"scale_shift"`): ``"scale_shift"`` (SDM's
            ``use_scale_shift_norm``) or ``"default"`` (additive time embedding).
        dropout (`float`, defaults to 0.0): Dropout in the res blocks.
        norm_num_groups (`int`, defaults to 32): Group-norm groups.
        norm_eps (`float`, defaults to 1e-5): Group-norm epsilon (guided-diffusion's; diffusers' default is 1e-6).
        time_embedding_dim (`int`, *optional*): Time-embedding width, defaults to ``4 * block_out_channels[0]``;
            the sinusoid has a quarter of it (SDM's ``model_channels``).
        flip_sin_to_cos (`bool`, defaults to `True`): Sinusoid order ``[cos, sin]``, as guided-diffusion.
        freq_shift (`int`, defaults to 0): Frequency shift of the sinusoid.
        spade_hidden_channels (`int`, defaults to 128): Hidden width of the SPADE label-map convs.
        act_fn (`str`, defaults to `"silu"`): Activation.
        add_attention (`bool`, defaults to `True`): Self-attention in the middle block (SDM has it; as in
            diffusers' ``UNet2DModel``). With ``attention_downsample_factors=()`` and `False` the U-Net has no
            attention at all, so a model trained on crops treats a whole slice as it treated the crops.
        low_res_channels (`int`, defaults to 0): Channels of a low-resolution image given as extra input (a
            super-resolution stage, as DeepFloyd IF's): ``forward(..., low_res_sample=, noise_level=)`` takes the
            image upsampled to the sample's size, concatenated after the sample before ``conv_in``, and the integer
            level of the noise-conditioning augmentation applied to it, embedded like a timestep and added to the
            time embedding. 0 (the default) is a plain SDM; the output still holds only the sample's noise (and
            variance), so the learned-variance rule splits by the sample's channels.
        training_crop_size (`int`, *optional*): Side of the random square crops the model was trained on, when it
            learned from crops of ``sample_size`` slices; it still samples whole slices (the U-Net is fully
            convolutional). Recorded so that size checks accept whole slices.
        pixel_spacing_mm (`float`, *optional*): In-plane pixel spacing of the training slices at ``sample_size``,
            in mm, where known (written into NIfTI outputs and used by size checks).

    Example:
        ```py
        >>> import torch
        >>> from lung_diffusers import SemanticUNet2DModel

        >>> unet = SemanticUNet2DModel(
        ...     sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
        ...     attention_downsample_factors=(2,), attention_head_dim=16,
        ... )
        >>> noisy = torch.randn(2, 1, 32, 32)
        >>> labels = torch.randint(0, 6, (2, 32, 32))  # integer label map
        >>> unet(noisy, 500, labels).sample.shape
        torch.Size([2, 2, 32, 32])

        >>> # Mask features do not depend on the noisy image or the timestep: compute them once, reuse them.
        >>> features = unet.encode_segmentation(labels)
        >>> torch.equal(unet(noisy, 10, segmentation_features=features).sample, unet(noisy, 10, labels).sample)
        True
        ```
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 256,
        in_channels: int = 1,
        out_channels: int = 2,
        num_classes: int = 6,
        block_out_channels: tuple[int, ...] = (256, 256, 512, 512, 1024, 1024),
        layers_per_block: int = 2,
        attention_downsample_factors: tuple[int, ...] = (8, 16, 32),
        attention_head_dim: int | None = 64,
        num_attention_heads: int | None = None,
        num_attention_heads_upsample: int | None = None,
        downsample_type: str = "resnet",
        upsample_type: str = "resnet",
        resnet_time_scale_shift: str = "scale_shift",
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        time_embedding_dim: int | None = None,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        spade_hidden_channels: int = 128,
        act_fn: str = "silu",
        add_attention: bool = True,
        low_res_channels: int = 0,
        training_crop_size: int | None = None,
        pixel_spacing_mm: float | None = None,
    ):
        super().__init__()
        self._check_config()
        levels = len(block_out_channels)
        time_embed_dim = time_embedding_dim or 4 * block_out_channels[0]

        self.conv_in = nn.Conv2d(in_channels + low_res_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(time_embed_dim // 4, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(time_embed_dim // 4, time_embed_dim, act_fn=act_fn)
        # The augmentation level of the low-resolution input, embedded like a timestep (IF's class_embed_type="timestep").
        self.class_embedding = (
            TimestepEmbedding(time_embed_dim // 4, time_embed_dim, act_fn=act_fn) if low_res_channels else None
        )

        common = dict(
            temb_channels=time_embed_dim,
            dropout=dropout,
        )
        encoder = dict(
            common,
            num_layers=layers_per_block,
            resnet_eps=norm_eps,
            resnet_time_scale_shift=resnet_time_scale_shift,
            resnet_act_fn=act_fn,
            resnet_groups=norm_num_groups,
        )
        self.down_blocks = nn.ModuleList()
        output_channel = block_out_channels[0]
        for level, channels in enumerate(block_out_channels):
            input_channel, output_channel = output_channel, channels
            is_final = level == levels - 1
            io = dict(in_channels=input_channel, out_channels=output_channel)
            if 2**level in attention_downsample_factors:
                block = AttnDownBlock2D(
                    **io,
                    **encoder,
                    attention_head_dim=channels // self._attention_heads(channels, upsample=False),
                    downsample_type=None if is_final else downsample_type,
                )
            elif downsample_type == "resnet":
                block = ResnetDownsampleBlock2D(**io, **encoder, add_downsample=not is_final)
            else:
                block = DownBlock2D(**io, **encoder, add_downsample=not is_final)
            self.down_blocks.append(block)

        decoder = dict(
            common,
            num_classes=num_classes,
            groups=norm_num_groups,
            eps=norm_eps,
            time_embedding_norm=resnet_time_scale_shift,
            spade_hidden_channels=spade_hidden_channels,
        )
        self.mid_block = SPADEMidBlock2D(
            channels=block_out_channels[-1],
            attention_heads=self._attention_heads(block_out_channels[-1], upsample=False) if add_attention else None,
            **decoder,
        )

        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        output_channel = reversed_channels[0]
        for i in range(levels):
            level = levels - 1 - i
            prev_output_channel, output_channel = output_channel, reversed_channels[i]
            self.up_blocks.append(
                SPADEUpBlock2D(
                    in_channels=reversed_channels[min(i + 1, levels - 1)],
                    prev_output_channel=prev_output_channel,
                    out_channels=output_channel,
                    num_layers=layers_per_block + 1,
                    attention_heads=(
                        self._attention_heads(output_channel, upsample=True)
                        if 2**level in attention_downsample_factors
                        else None
                    ),
                    upsample_type=None if level == 0 else upsample_type,
                    **decoder,
                )
            )

        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

    # ------------------------------------------------------------------ configuration

    def _check_config(self) -> None:
        c = self.config
        levels = len(c.block_out_channels)
        if levels < 1:
            raise ValueError("block_out_channels needs at least one level")
        if c.in_channels < 1 or c.out_channels not in (c.in_channels, 2 * c.in_channels):
            raise ValueError(
                f"out_channels must be in_channels (epsilon only) or 2 * in_channels (learned variance); "
                f"got in_channels={c.in_channels}, out_channels={c.out_channels}"
            )
        if c.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background and one structure), got {c.num_classes}")
        bad = [ch for ch in c.block_out_channels if ch % c.norm_num_groups]
        if bad:
            raise ValueError(f"every entry of block_out_channels must be divisible by norm_num_groups={c.norm_num_groups}; got {bad}")
        valid = {2**level for level in range(levels)}
        bad = [f for f in c.attention_downsample_factors if f not in valid]
        if bad:
            raise ValueError(
                f"attention_downsample_factors {bad} are not downsampling factors of this U-Net; "
                f"with {levels} levels they must be among {sorted(valid)}"
            )
        for name in ("downsample_type", "upsample_type"):
            if getattr(c, name) not in ("resnet", "conv"):
                raise ValueError(f"{name} must be 'resnet' or 'conv', got {getattr(c, name)!r}")
        if c.resnet_time_scale_shift not in ("scale_shift", "default"):
            raise ValueError(f"resnet_time_scale_shift must be 'scale_shift' or 'default', got {c.resnet_time_scale_shift!r}")
        if (c.attention_head_dim is None) == (c.num_attention_heads is None):
            raise ValueError("set exactly one of attention_head_dim (channels per head) and num_attention_heads")
        if c.low_res_channels < 0:
            raise ValueError(f"low_res_channels must be 0 (a plain SDM) or positive, got {c.low_res_channels}")
        if c.training_crop_size is not None and not 0 < c.training_crop_size <= c.sample_size:
            raise ValueError(
                f"training_crop_size must be between 1 and sample_size={c.sample_size} (crops of the slices the "
                f"model makes), got {c.training_crop_size}"
            )
        if c.pixel_spacing_mm is not None and not c.pixel_spacing_mm > 0:
            raise ValueError(f"pixel_spacing_mm must be positive, got {c.pixel_spacing_mm}")

    def _attention_heads(self, channels: int, upsample: bool) -> int:
        # SDM's rule: num_head_channels wins; otherwise num_heads (num_heads_upsample in the decoder).
        c = self.config
        if c.attention_head_dim is not None:
            heads, rule = channels // c.attention_head_dim, f"attention_head_dim={c.attention_head_dim}"
        else:
            heads = (c.num_attention_heads_upsample if upsample else None) or c.num_attention_heads
            rule = f"{heads} heads"
        if heads < 1 or channels % heads or (c.attention_head_dim and channels % c.attention_head_dim):
            raise ValueError(f"an attention layer with {channels} channels cannot be split by {rule}")
        return heads

    @property
    def downsample_factor(self) -> int:
        """Total downsampling of the U-Net: image height and width must be multiples of it."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def learned_variance(self) -> bool:
        """Whether the model predicts variance values after the noise (``out_channels == 2 * in_channels``)."""
        return self.config.out_channels == 2 * self.config.in_channels

    @property
    def is_super_resolution(self) -> bool:
        """Whether the model takes a low-resolution image (``low_res_channels > 0``): a cascade's second stage."""
        return self.config.low_res_channels > 0

    @property
    def _spade_resnets(self):
        return [*self.mid_block.spade_resnets, *(r for block in self.up_blocks for r in block.spade_resnets)]

    # ------------------------------------------------------------------ segmentation

    def segmentation_to_one_hot(
        self, segmentation: torch.Tensor | np.ndarray, device: torch.device | None = None
    ) -> torch.Tensor:
        """Validate a label map or one-hot map and return a one-hot ``(B, num_classes, H, W)`` tensor.

        Accepts what :func:`lung_diffusers.label_maps.as_label_tensor` accepts (integer label maps ``(B, H, W)`` or
        ``(B, 1, H, W)``, numpy, PIL, lists), or a one-hot ``(B, num_classes, H, W)`` float map; an all-zero one-hot
        is the null condition of classifier-free guidance. The result is on ``device`` (default: the model's).
        """
        k = self.config.num_classes
        device = self.device if device is None else device
        if torch.is_tensor(segmentation) and segmentation.ndim == 4 and segmentation.shape[1] == k:
            one_hot = segmentation.to(device)
            if not one_hot.is_floating_point():
                one_hot = one_hot.float()
            if not torch.isfinite(one_hot).all():
                raise ValueError("the one-hot segmentation contains NaN or infinite values")
            return one_hot.to(self.dtype)
        if isinstance(segmentation, np.ndarray) and segmentation.ndim == 4 and segmentation.shape[1] == k:
            return self.segmentation_to_one_hot(torch.from_numpy(segmentation), device)
        labels = as_label_tensor(segmentation, k).to(device)
        return F.one_hot(labels, k).permute(0, 3, 1, 2).to(self.dtype, memory_format=torch.contiguous_format)

    def _encode_one_hot(self, one_hot: torch.Tensor) -> tuple:
        height, width = one_hot.shape[-2:]
        levels = len(self.config.block_out_channels)
        # Each decoder block works at one resolution: the mid block at the lowest, up block i at level L-1-i.
        blocks = [(self.mid_block, levels - 1), *((block, levels - 1 - i) for i, block in enumerate(self.up_blocks))]
        return tuple(
            resnet.encode_segmentation(one_hot, (height >> level, width >> level))
            for block, level in blocks
            for resnet in block.spade_resnets
        )

    def encode_segmentation(
        self,
        segmentation: torch.Tensor | np.ndarray,
        repeats: tuple[int, ...] | list[int] | None = None,
        device: torch.device | None = None,
    ) -> SegmentationFeatures:
        """Compute the SPADE modulations of every decoder norm for a batch of label maps.

        They depend on neither the noisy sample nor the timestep: pass them as ``segmentation_features`` to
        :meth:`forward` to skip the label-map convolutions at every sampling step (about half the forward cost).
        Nothing is cached on the model: the features live as long as the caller keeps them.

        Args:
            segmentation: label maps ``(M, H, W)`` / ``(M, 1, H, W)`` or one-hot ``(M, num_classes, H, W)``.
            repeats: images per map (``M`` entries), when images share maps (several images per mask, or
                the null map of classifier-free guidance); the features are then stored once per map.
            device: where to compute (default: the model's device).
        """
        one_hot = self.segmentation_to_one_hot(segmentation, device)
        self._check_spatial_size(one_hot.shape[-2:])
        return SegmentationFeatures(self._encode_one_hot(one_hot), self._check_repeats(repeats, one_hot.shape[0]))

    @staticmethod
    def _check_repeats(repeats, num_maps: int) -> tuple[int, ...] | None:
        if repeats is None:
            return None
        repeats = tuple(int(r) for r in repeats)
        if len(repeats) != num_maps or min(repeats, default=0) < 1:
            raise ValueError(f"repeats must give a positive image count for each of the {num_maps} label maps, got {repeats}")
        return repeats

    def segmentation_feature_bytes(self, height: int, width: int, num_maps: int = 1, dtype: torch.dtype | None = None) -> int:
        """Bytes that :meth:`encode_segmentation` needs for ``num_maps`` maps of ``height x width``, without computing them."""
        element = torch.empty((), dtype=dtype or self.dtype).element_size()
        levels = len(self.config.block_out_channels)
        blocks = [(self.mid_block, levels - 1), *((block, levels - 1 - i) for i, block in enumerate(self.up_blocks))]
        values = 0
        for block, level in blocks:
            pixels = (height >> level) * (width >> level)
            for resnet in block.spade_resnets:
                values += 2 * pixels * resnet.in_channels + 2 * pixels * (4 if resnet.up else 1) * resnet.out_channels
        return values * element * num_maps

    def _check_spatial_size(self, size) -> None:
        height, width = (int(s) for s in size)
        factor = self.downsample_factor
        if height % factor or width % factor or height == 0 or width == 0:
            raise ValueError(
                f"height and width must be positive multiples of {factor} (this U-Net downsamples {factor}x); "
                f"got {height}x{width}. Pad or resize the image and label map."
            )

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        segmentation: torch.Tensor | np.ndarray | None = None,
        segmentation_features: SegmentationFeatures | None = None,
        return_dict: bool = True,
        segmentation_repeats: tuple[int, ...] | list[int] | None = None,
        return_segmentation_features: bool = False,
        low_res_sample: torch.Tensor | None = None,
        noise_level: torch.Tensor | int | None = None,
    ) -> SemanticUNet2DOutput | tuple:
        r"""
        Args:
            sample (`torch.Tensor`): Noisy images ``(batch, in_channels, height, width)``.
            timestep (`torch.Tensor`, `float` or `int`): Diffusion step(s), a scalar or one per image.
            segmentation: Label maps ``(B, H, W)`` / ``(B, 1, H, W)`` or one-hot ``(B, num_classes, H, W)``;
                an all-zero one-hot is the null condition. Omit it when ``segmentation_features`` is given.
            segmentation_features: Output of :meth:`encode_segmentation` (or of an earlier call with
                ``return_segmentation_features=True``) for the same batch, reused across steps.
            return_dict (`bool`, defaults to `True`): Return a :class:`SemanticUNet2DOutput` instead of a tuple.
            segmentation_repeats: Images per map when ``segmentation`` holds fewer maps than ``sample`` has images
                (see :meth:`encode_segmentation`).
            return_segmentation_features (`bool`): Also return the mask features computed from ``segmentation``.
                Samplers use it to encode the mask inside ``forward``, where device-offload hooks see it.
            low_res_sample (`torch.Tensor`, *optional*): For ``low_res_channels > 0`` only: the low-resolution image,
                upsampled to the sample's size and noise-augmented, ``(batch, low_res_channels, height, width)``.
            noise_level (`torch.Tensor` or `int`, *optional*): For ``low_res_channels > 0`` only: the augmentation
                step(s) applied to ``low_res_sample``, a scalar or one per image.
        """
        if sample.ndim != 4 or sample.shape[1] != self.config.in_channels:
            raise ValueError(
                f"sample must have shape (batch, {self.config.in_channels}, height, width), got {tuple(sample.shape)}"
            )
        self._check_spatial_size(sample.shape[-2:])
        batch = sample.shape[0]
        if segmentation_features is None:
            if segmentation is None:
                raise ValueError("pass either `segmentation` or `segmentation_features`")
            seg_shape = tuple(segmentation.shape)
            maps = seg_shape[0] if segmentation_repeats is None else sum(segmentation_repeats)
            if maps != batch or seg_shape[-2:] != tuple(sample.shape[-2:]):
                raise ValueError(
                    f"segmentation of shape {seg_shape} does not match sample of shape {tuple(sample.shape)}: "
                    "batch size (or the sum of segmentation_repeats), height and width must agree"
                )
            if return_segmentation_features:
                segmentation_features = self.encode_segmentation(segmentation, segmentation_repeats, device=sample.device)
        else:
            segmentation_features = self._check_features(segmentation_features, sample)
        if segmentation_features is not None:
            per_block, map_groups = segmentation_features.modulations, segmentation_features.map_groups
        else:
            # Each SPADE block encodes the one-hot map when it runs: one block's features exist at a time.
            one_hot = self.segmentation_to_one_hot(segmentation, device=sample.device)
            repeats = self._check_repeats(segmentation_repeats, one_hot.shape[0])
            per_block, map_groups = (one_hot,) * len(self._spade_resnets), SegmentationFeatures((), repeats).map_groups

        timesteps = timestep
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], device=sample.device)
        timesteps = timesteps.reshape(-1).to(sample.device)
        if timesteps.numel() not in (1, batch):
            raise ValueError(f"timestep must be a scalar or have one entry per image ({batch}), got {timesteps.numel()}")
        timesteps = timesteps.expand(batch)
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=self.dtype))
        if self.class_embedding is not None:
            low_res_sample, noise_levels = self._check_low_res(low_res_sample, noise_level, sample)
            emb = emb + self.class_embedding(self.time_proj(noise_levels).to(dtype=self.dtype))
            sample = torch.cat([sample, low_res_sample.to(sample.dtype)], dim=1)
        elif low_res_sample is not None or noise_level is not None:
            raise ValueError(
                "this model takes no low-resolution image (low_res_channels=0): drop low_res_sample and noise_level"
            )

        hidden_states = self.conv_in(sample)
        skips = (hidden_states,)
        for block in self.down_blocks:
            hidden_states, res_samples = block(hidden_states=hidden_states, temb=emb)
            skips += res_samples

        features = iter(per_block)
        hidden_states = self.mid_block(
            hidden_states, emb, [next(features) for _ in self.mid_block.spade_resnets], map_groups
        )
        for block in self.up_blocks:
            num_skips = len(block.resnets)
            block_skips, skips = skips[-num_skips:], skips[:-num_skips]
            hidden_states = block(hidden_states, block_skips, emb, [next(features) for _ in block.spade_resnets], map_groups)

        hidden_states = self.conv_out(self.conv_act(self.conv_norm_out(hidden_states)))
        returned = segmentation_features if return_segmentation_features else None
        if not return_dict:
            return (hidden_states,) if returned is None else (hidden_states, returned)
        return SemanticUNet2DOutput(sample=hidden_states, segmentation_features=returned)

    def _check_low_res(self, low_res_sample, noise_level, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channels, batch = self.config.low_res_channels, sample.shape[0]
        if low_res_sample is None or noise_level is None:
            raise ValueError(
                "this super-resolution model needs low_res_sample (the low-resolution image upsampled to the sample's "
                "size) and noise_level (its augmentation step)"
            )
        expected = (batch, channels, *sample.shape[-2:])
        if tuple(low_res_sample.shape) != expected:
            raise ValueError(f"low_res_sample must have shape {expected} (upsampled to the sample), got {tuple(low_res_sample.shape)}")
        levels = noise_level if torch.is_tensor(noise_level) else torch.tensor([noise_level])
        levels = levels.reshape(-1).to(sample.device)
        if levels.numel() not in (1, batch):
            raise ValueError(f"noise_level must be a scalar or have one entry per image ({batch}), got {levels.numel()}")
        return low_res_sample, levels.expand(batch)

    def _check_features(self, features: SegmentationFeatures, sample: torch.Tensor) -> SegmentationFeatures:
        if not isinstance(features, SegmentationFeatures):
            raise TypeError(
                "segmentation_features must be the SegmentationFeatures that encode_segmentation returns, "
                f"got {type(features).__name__}"
            )
        expected = len(self._spade_resnets)
        if len(features.modulations) != expected or any(len(entry) != 4 for entry in features.modulations):
            raise ValueError(
                f"segmentation_features must come from this model's encode_segmentation "
                f"({expected} entries of 4 tensors), got {len(features.modulations)} entries"
            )
        levels = len(self.config.block_out_channels)
        mid_size = tuple(s >> (levels - 1) for s in sample.shape[-2:])
        if tuple(features.modulations[0][0].shape[-2:]) != mid_size:
            raise ValueError("segmentation_features were computed for another image size than `sample`")
        batch = sample.shape[0]
        if features.num_images == batch:
            return features
        if features.num_maps == 1 and features.repeats is None:  # one map for the whole batch
            return SegmentationFeatures(features.modulations, (batch,))
        raise ValueError(
            f"segmentation_features are for {features.num_images} images, sample has {batch}: "
            "encode the segmentation of the same batch"
        )
