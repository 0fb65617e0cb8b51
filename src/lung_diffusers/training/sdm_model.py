"""The U-Net and the noise schedule of a ``training/train_sdm.py`` run (its ``--model``): a fresh U-Net of the
configured shape or a warm start, and the DDPM schedule it is trained with and shipped with.
"""

from __future__ import annotations

import argparse

import torch
from diffusers import DDPMScheduler, UNet2DModel

from .. import SemanticUNet2DModel


def build_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    """A fresh U-Net of the configured shape, or the one of ``--pretrained_model_name_or_path`` (warm start)."""
    model_cls = UNet2DModel if args.model == "ddpm" else SemanticUNet2DModel
    if args.pretrained_model_name_or_path:
        model = model_cls.from_pretrained(args.pretrained_model_name_or_path, subfolder="unet")
        if args.model != "ddpm" and model.config.num_classes != num_classes:
            raise ValueError(
                f"the warm-start model has {model.config.num_classes} classes, the dataset configs "
                f"{args.dataset_config} need {num_classes}"
            )
        return model
    out_channels = 1 if args.no_learned_variance else 2
    side = args.crop_size or args.resolution
    if args.model != "ddpm":
        super_resolution = args.model == "upscaler"
        # sample_size is what the model makes: whole slices (the model card and users read it), even when it
        # learns from crops; the prior below makes crop-sized patches.
        return SemanticUNet2DModel(
            sample_size=args.resolution,
            in_channels=1,
            out_channels=out_channels,
            num_classes=num_classes,
            block_out_channels=args.block_out_channels,
            layers_per_block=args.layers_per_block,
            attention_downsample_factors=args.attention_downsample_factors,
            attention_head_dim=args.attention_head_dim,
            spade_hidden_channels=args.spade_hidden_channels,
            downsample_type=args.resample_type,
            upsample_type=args.resample_type,
            dropout=args.dropout,
            add_attention=not args.no_mid_block_attention,
            low_res_channels=1 if super_resolution else 0,
            training_crop_size=args.crop_size,
        )
    levels = len(args.block_out_channels)
    with_attention = [2**level in args.attention_downsample_factors for level in range(levels)]
    return UNet2DModel(
        sample_size=side,
        in_channels=1,
        out_channels=out_channels,
        block_out_channels=args.block_out_channels,
        layers_per_block=args.layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in with_attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(with_attention)),
        attention_head_dim=args.attention_head_dim,
        resnet_time_scale_shift="scale_shift",
        downsample_type=args.resample_type,
        upsample_type=args.resample_type,
        dropout=args.dropout,
        norm_eps=1e-5,
    )


def training_scheduler(args: argparse.Namespace, learned_variance: bool) -> DDPMScheduler:
    # "linspace" spacing matches guided-diffusion's respacing when sampling with fewer steps. The betas are
    # passed explicitly (guided-diffusion's linear range, scaled to the step count) so that from_config hands
    # them on to Heun/LMS, whose own defaults differ.
    scale = 1000 / args.num_train_timesteps
    return DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule=args.beta_schedule,
        beta_start=scale * 1e-4,
        beta_end=scale * 0.02,
        variance_type="learned_range" if learned_variance else "fixed_small",
        clip_sample=True,
        timestep_spacing="linspace",
    )
