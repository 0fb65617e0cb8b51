"""The U-Net and the noise schedule of a ``training/train_sdm.py`` run (its ``--model``): a fresh U-Net of the
configured shape or a warm start, the DDPM schedule it is trained with and shipped with, and the pixel spacing
its config records.
"""

from __future__ import annotations

import argparse
import io

import datasets
import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler, UNet2DModel

from .. import SemanticUNet2DModel
from ..ct import LABEL_NAMES, MALIGNANCY_LABEL_NAMES, NODULE


def build_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    """A fresh U-Net of the configured shape, or the one of ``--pretrained_model_name_or_path`` (warm start)."""
    model_cls = UNet2DModel if args.model == "ddpm" else SemanticUNet2DModel
    if args.pretrained_model_name_or_path:
        model = model_cls.from_pretrained(args.pretrained_model_name_or_path, subfolder="unet")
        if args.model != "ddpm" and (model.config.num_classes, num_classes) == (
            len(LABEL_NAMES),
            len(MALIGNANCY_LABEL_NAMES),
        ):
            return with_malignant_class(model)
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


def with_malignant_class(model: SemanticUNet2DModel) -> SemanticUNet2DModel:
    """A 7-class copy of a 6-class SDM (the ``malignancy`` config's scheme) that draws exactly what it drew.

    Only the first conv of each SPADE block reads the one-hot map. Class 5 keeps its weights and now means benign
    nodule; the new class 6 (malignant) starts as a copy of them, so both begin as the 6-class model's nodule and
    fine-tuning on ``malignancy`` slices teaches them apart (the issue's warm start for task b).
    """
    if model.config.num_classes != len(LABEL_NAMES):
        raise ValueError(f"expected a {len(LABEL_NAMES)}-class SDM to extend, got {model.config.num_classes} classes")
    state = model.state_dict()
    grown = 0
    for name, weight in state.items():
        if name.endswith("mlp_shared.0.weight") and weight.shape[1] == len(LABEL_NAMES):
            state[name] = torch.cat([weight, weight[:, NODULE : NODULE + 1]], dim=1)
            grown += 1
    if not grown:
        raise ValueError("found no SPADE label conv to extend in this model")
    # Without the private keys: from_config drops any key that `_use_default_values` lists, num_classes included.
    config = {key: value for key, value in model.config.items() if not key.startswith("_")}
    extended = SemanticUNet2DModel.from_config({**config, "num_classes": len(MALIGNANCY_LABEL_NAMES)})
    extended.load_state_dict(state)
    return extended if extended.dtype == model.dtype else extended.to(model.dtype)


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


def record_pixel_spacing(unet: torch.nn.Module, pixel_spacing_mm: float | None) -> None:
    """Set ``pixel_spacing_mm`` in the U-Net's config after it was built. diffusers' ``from_config`` (which
    ``EMAModel.save_pretrained`` copies the model with) drops keys listed as left at their default, so the key
    leaves that list."""
    defaults = unet.config.get("_use_default_values")
    update = {"pixel_spacing_mm": pixel_spacing_mm}
    if defaults is not None:
        update["_use_default_values"] = [key for key in defaults if key != "pixel_spacing_mm"]
    unet.register_to_config(**update)


def training_pixel_spacing_mm(dataset: datasets.Dataset, sample_size: int) -> float | None:
    """The median in-plane pixel spacing of the training rows at ``sample_size`` pixels, in mm (`None` when no row
    has a ``spacing`` column): what ``SemanticUNet2DModel``'s ``pixel_spacing_mm`` records.

    The recipe's ``spacing.pixel_mm`` is of the stored pixels ([row, column]): a slice stored at W px covers
    W * pixel_mm, so at ``sample_size`` px its pixels are W / sample_size times larger (256-px rows, a 64-px
    model: x4). Only the PNG headers are read, for W.
    """
    if "spacing" not in dataset.column_names:
        return None
    rows = dataset.select_columns(["mask", "spacing"]).cast_column("mask", datasets.Image(decode=False))
    spacings = []
    for row in rows:
        pixel_mm = (row["spacing"] or {}).get("pixel_mm")
        if not pixel_mm or min(pixel_mm) <= 0:
            continue
        mask = row["mask"]
        with PIL.Image.open(io.BytesIO(mask["bytes"]) if mask.get("bytes") is not None else mask["path"]) as png:
            width = png.size[0]
        spacings.append(float(np.mean(pixel_mm)) * width / sample_size)
    # Rounded to 0.1 um: float32 noise would otherwise show in the config.
    return round(float(np.median(spacings)), 4) if spacings else None
