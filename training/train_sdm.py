#!/usr/bin/env python
"""Train a lung-CT Semantic Diffusion Model (or, with ``--model ddpm``, the unconditional healthy prior).

    accelerate launch training/train_sdm.py --dataset_name ../luna16-slices --output_dir sdm-lung-64

Shaped like diffusers' ``examples/unconditional_image_generation/train_unconditional.py``: accelerate for
CPU / one GPU / several, mixed precision, gradient accumulation and checkpointing, EMA weights saved in
diffusers format through accelerate's hooks, atomic checkpoints with rotation and resume, tensorboard
logging, validation grids sampled with the EMA weights, and a final pipeline folder (``LungSDMPipeline`` for
``--model sdm``, diffusers' ``DDPMPipeline`` for ``--model ddpm``) with a model card, optionally pushed to
the Hub. The method is the thesis' / SDM's: improved-DDPM hybrid loss with learned variance, a linear
schedule of 1000 steps, AdamW at 1e-4 and classifier-free-guidance training by dropping the mask.

Randomness (batches, crops, flips, noise, timesteps, mask dropout) is a pure function of ``--seed`` and the
step, so a run resumed from a checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from huggingface_hub import create_repo, upload_folder
from tqdm.auto import tqdm

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel, save_synthetic_png
from lung_diffusers.data.contact_sheet import mask_to_rgb
from lung_diffusers.labels import HU_WINDOW, LEFT_LUNG, RIGHT_LUNG
from lung_diffusers.training.checkpoints import checkpoint_state, resolve_checkpoint, save_checkpoint
from lung_diffusers.training.diffusion_loss import HybridDiffusionLoss
from lung_diffusers.training.model_card import write_training_card
from lung_diffusers.training.script_cli import run_script
from lung_diffusers.training.slice_data import (
    SliceTrainingData,
    StepBatchSampler,
    check_slice_dataset,
    load_slice_dataset,
    num_classes_for_configs,
)

logger = get_logger(__name__, log_level="INFO")
MODELS = ("sdm", "ddpm", "upscaler")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv: list[str] | None = None, model: str = "sdm") -> argparse.Namespace:
    """Command-line options; ``model`` sets the defaults (``train_ddpm.py`` passes ``"ddpm"``)."""
    sdm = model == "sdm"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", required=True, help="recipe output folder or Hub dataset repo id")
    data.add_argument(
        "--dataset_config",
        nargs="+",
        default=["healthy", "nodule"] if sdm else ["healthy"],
        help="config(s) to train on, concatenated; 'malignancy' (7 classes) cannot be mixed with the others",
    )
    data.add_argument("--train_split", default="train", help="split to train on")
    data.add_argument(
        "--validation_split", default="test", help="split whose masks the validation grid uses (held-out patients)"
    )
    data.add_argument("--cache_dir", help="datasets cache folder")
    data.add_argument("--resolution", type=int, default=64, help="side the slices are resized to, in pixels")
    data.add_argument(
        "--crop_size",
        type=int,
        help="train on random square crops of this side (default: whole slices); e.g. 64-px crops of 256-px slices",
    )
    data.add_argument(
        "--random_flip",
        action="store_true",
        help="mirror half the slices left-right, swapping the lung labels so that 2 stays the lung on the image's "
        "right; off by default because mirrored chests (heart on the right) are not real anatomy",
    )
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="data loading processes (0: in the loop)")

    arch = parser.add_argument_group("model")
    arch.add_argument(
        "--model",
        choices=MODELS,
        default=model,
        help="sdm: mask-conditioned; ddpm: unconditional prior; upscaler: a cascade's second stage (an SDM that also "
        "takes the slice at --low_res_resolution, noise-augmented; train it on --crop_size crops)",
    )
    arch.add_argument("--pretrained_model_name_or_path", help="warm start from this pipeline folder or Hub repo")
    arch.add_argument("--block_out_channels", type=_int_tuple, default=(32, 64, 128), help="channels per level")
    arch.add_argument("--layers_per_block", type=int, default=1, help="res blocks per encoder level")
    arch.add_argument("--attention_downsample_factors", type=_int_tuple, default=(4,), help="levels with attention")
    arch.add_argument("--attention_head_dim", type=int, default=32, help="channels per attention head")
    arch.add_argument(
        "--no_mid_block_attention",
        action="store_true",
        help="sdm/upscaler: no self-attention in the middle block either (with --attention_downsample_factors '' the "
        "U-Net has none, so a model trained on crops sees a whole slice as it saw the crops)",
    )
    arch.add_argument("--spade_hidden_channels", type=int, default=32, help="hidden width of the SPADE convs (sdm)")
    arch.add_argument(
        "--resample_type",
        choices=("conv", "resnet"),
        default="conv",
        help="down/up sampling: strided/nearest convs (cheaper) or res blocks (SDM's resblock_updown)",
    )
    arch.add_argument("--dropout", type=float, default=0.0, help="dropout in the res blocks")
    arch.add_argument(
        "--low_res_resolution",
        type=int,
        default=64,
        help="upscaler: side of the first stage's slices; the stage learns to draw --resolution slices from them",
    )
    arch.add_argument(
        "--max_noise_level",
        type=int,
        default=250,
        help="upscaler: noise-conditioning augmentation of the low-resolution input, drawn uniformly from steps "
        "[0, N) of the training schedule (Cascaded Diffusion Models; bridges real and stage-1 inputs)",
    )
    arch.add_argument(
        "--no_learned_variance", action="store_true", help="predict epsilon only (MSE loss) instead of SDM's learned variance"
    )

    train = parser.add_argument_group("training")
    train.add_argument("--output_dir", required=True, help="checkpoints, logs, validation grids and the final pipeline")
    train.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    train.add_argument("--train_batch_size", type=int, default=8, help="batch size per process")
    train.add_argument("--max_train_steps", type=int, default=3000, help="optimizer steps")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    train.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")
    train.add_argument("--learning_rate", type=float, default=1e-4, help="AdamW learning rate")
    train.add_argument("--lr_scheduler", default="constant", help="diffusers scheduler name (constant, cosine, ...)")
    train.add_argument("--lr_warmup_steps", type=int, default=0, help="warm-up steps of the LR scheduler")
    train.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1")
    train.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW beta2")
    train.add_argument("--adam_weight_decay", type=float, default=0.0, help="AdamW weight decay (guided-diffusion: 0)")
    train.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon")
    train.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm (0: off)")
    train.add_argument(
        "--condition_dropout",
        type=float,
        default=0.0,
        help="probability of replacing the mask by the null map, for classifier-free guidance (SDM: 0.2 when fine-tuning)",
    )
    train.add_argument(
        "--noise_offset",
        type=float,
        default=0.0,
        help="add this times N(0, 1) per image to the noise (diffusers' offset noise; e.g. 0.1): without it a small "
        "pixel model reads the image's brightness from the mean of the noise and samples wash out for some seeds",
    )
    train.add_argument("--num_train_timesteps", type=int, default=1000, help="diffusion steps")
    train.add_argument("--beta_schedule", default="linear", help="noise schedule (the thesis: linear)")
    train.add_argument(
        "--mixed_precision",
        choices=("no", "fp16", "bf16"),
        default=None,
        help="autocast precision (default: accelerate's config); bf16 is fast on CPUs with AMX, slow without",
    )
    train.add_argument("--no_ema", action="store_true", help="do not keep EMA weights (the final pipeline then uses raw weights)")
    train.add_argument("--ema_max_decay", type=float, default=0.9999, help="EMA decay ceiling")
    train.add_argument("--ema_inv_gamma", type=float, default=1.0, help="EMA warm-up inverse gamma")
    train.add_argument("--ema_power", type=float, default=0.75, help="EMA warm-up power")
    train.add_argument("--offload_ema", action="store_true", help="keep EMA weights on the CPU (saves GPU memory)")
    train.add_argument("--foreach_ema", action="store_true", help="faster foreach EMA updates (more peak memory)")

    save = parser.add_argument_group("checkpoints, logging, validation, Hub")
    save.add_argument("--checkpointing_steps", type=int, default=500, help="save a resumable checkpoint every N steps")
    save.add_argument("--checkpoints_total_limit", type=int, help="keep at most this many checkpoints")
    save.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
    save.add_argument("--logger", choices=("tensorboard", "wandb", "none"), default="tensorboard", help="tracker")
    save.add_argument("--logging_dir", default="logs", help="tracker folder, inside output_dir")
    save.add_argument("--validation_steps", type=int, default=500, help="write a validation grid every N steps (0: never)")
    save.add_argument("--num_validation_images", type=int, default=4, help="masks (sdm) or samples (ddpm) per grid")
    save.add_argument(
        "--validation_inference_steps",
        type=int,
        default=50,
        help="sampling steps of the validation grids (DDIM for sdm, DDPM for the ddpm prior)",
    )
    save.add_argument("--push_to_hub", action="store_true", help="upload the final pipeline")
    save.add_argument("--hub_model_id", help="Hub repo id (default: the output folder's name)")
    save.add_argument("--hub_token", help="Hub token (default: the logged-in one)")
    save.add_argument("--hub_private_repo", action="store_true", help="make the Hub repo private")

    args = parser.parse_args(argv)
    command = sys.argv if argv is None else ["training/train_sdm.py", *argv]
    args.command = " ".join(shlex.quote(a) for a in _without_token(command))
    check_args(args)
    return args


def _without_token(command: list[str]) -> list[str]:
    """The command line with the value of ``--hub_token`` masked: the command goes into the (public) model card."""
    masked, hide_next = [], False
    for word in command:
        if hide_next:
            masked.append("***")
        elif word.startswith("--hub_token="):
            masked.append("--hub_token=***")
        else:
            masked.append(word)
        hide_next = word == "--hub_token"
    return masked


def check_args(args: argparse.Namespace) -> None:
    """Refuse inconsistent options before anything is loaded."""
    positive = ("resolution", "train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps")
    for name in positive:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    levels = len(args.block_out_channels)
    side = args.crop_size or args.resolution
    if args.crop_size is not None and not 0 < args.crop_size <= args.resolution:
        raise ValueError(f"--crop_size must be between 1 and --resolution ({args.resolution}), got {args.crop_size}")
    if side % 2 ** (levels - 1):
        raise ValueError(
            f"the training size {side} px must be a multiple of {2 ** (levels - 1)} (the U-Net has {levels} levels)"
        )
    if args.model != "ddpm" and args.resolution % 2 ** (levels - 1):
        # An SDM trained on crops still samples whole slices (validation grids, users' masks).
        raise ValueError(
            f"the slice size {args.resolution} px must be a multiple of {2 ** (levels - 1)} (the U-Net has {levels} "
            "levels, and an SDM samples whole slices)"
        )
    if not 0.0 <= args.noise_offset <= 1.0:
        raise ValueError(f"--noise_offset must be in [0, 1] (diffusers' scripts use about 0.05-0.1), got {args.noise_offset}")
    if not 0.0 <= args.condition_dropout < 1.0:
        raise ValueError(f"--condition_dropout must be in [0, 1), got {args.condition_dropout}")
    if args.model == "upscaler":
        if not 0 < args.low_res_resolution < args.resolution:
            raise ValueError(
                f"--low_res_resolution must be between 1 and --resolution ({args.resolution}) - 1, got {args.low_res_resolution}"
            )
        if not 0 < args.max_noise_level <= args.num_train_timesteps:
            raise ValueError(f"--max_noise_level must be between 1 and --num_train_timesteps, got {args.max_noise_level}")
    if args.model == "ddpm" and args.condition_dropout:
        raise ValueError("--condition_dropout applies to --model sdm only: the ddpm prior has no condition")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be positive, got {args.learning_rate}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError("--checkpoints_total_limit must be at least 1")
    if args.validation_steps < 0 or args.num_validation_images < 1 or args.validation_inference_steps < 1:
        raise ValueError("--validation_steps must be >= 0, --num_validation_images and --validation_inference_steps >= 1")
    num_classes_for_configs(args.dataset_config)
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output_dir {output} exists and is not a folder")


# ---------------------------------------------------------------------------------------------- model


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


def augmented_low_res(args, noise_scheduler, low_res: torch.Tensor, generator: torch.Generator, device) -> dict:
    """Noise-conditioning augmentation (Ho et al. 2021): the low-resolution input noised to a random step below
    ``--max_noise_level``, and that step, as the upscaler's ``low_res_sample`` and ``noise_level``."""
    levels = torch.randint(0, args.max_noise_level, (low_res.shape[0],), generator=generator)
    noise = torch.randn(low_res.shape, generator=generator)
    noised = noise_scheduler.add_noise(low_res, noise, levels)
    return {"low_res_sample": noised.to(device), "noise_level": levels.to(device)}


def step_generator(seed: int, micro_step: int, process_index: int) -> torch.Generator:
    """The generator of one micro-step's noise, timesteps and mask dropout."""
    state = np.random.SeedSequence([seed, micro_step, process_index, 1]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# ---------------------------------------------------------------------------------------------- validation


def load_validation_slices(args: argparse.Namespace, num_classes: int) -> tuple[datasets.Dataset, str]:
    """The checked slices the validation grids draw from, and their split's name.

    The validation split (held-out patients) of each config that has one: the recipe lists a split only when it
    has rows, so e.g. the ``nodule`` config may lack a test split while ``healthy`` has one. The training split
    when no config has it.
    """
    parts = []
    for config in args.dataset_config:
        try:
            parts.append(load_slice_dataset(args.dataset_name, [config], args.validation_split, args.cache_dir))
        except ValueError:
            continue
    split = args.validation_split if parts else args.train_split
    if not parts:
        parts = [load_slice_dataset(args.dataset_name, args.dataset_config, args.train_split, args.cache_dir)]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    check_slice_dataset(dataset, num_classes, f"{split} split of {args.dataset_config}")
    return dataset, split


def validation_masks(args: argparse.Namespace, dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Fixed validation masks and their real slices.

    Spread evenly over the half of the slices with the most lung, so that the grid shows chests, not abdomens.
    """
    data = SliceTrainingData(dataset, args.resolution)
    items = [data[(row, 0)] for row in range(len(data))]
    lung = np.array([np.isin(item["mask"].numpy(), (LEFT_LUNG, RIGHT_LUNG)).sum() for item in items])
    chest = np.argsort(-lung, kind="stable")[: max(1, (len(items) + 1) // 2)]
    picks = sorted(chest[np.linspace(0, len(chest) - 1, min(args.num_validation_images, len(chest))).round().astype(int)])
    return np.stack([items[i]["mask"].numpy() for i in picks]), np.stack([items[i]["image"][0].numpy() for i in picks])


@torch.no_grad()
def validation_grid(args, unet, scheduler, masks, reals) -> np.ndarray:
    """Rows of real slice | mask | sample (sdm) or a row of samples (ddpm), as uint8 RGB."""
    sampler = DDIMScheduler.from_config(scheduler.config, variance_type="fixed_small")
    generator = torch.Generator().manual_seed(args.seed)
    unet.eval()
    if args.model == "sdm":
        pipe = LungSDMPipeline(unet=unet, scheduler=sampler)
        pipe.set_progress_bar_config(disable=True)
        samples = pipe(masks, num_inference_steps=args.validation_inference_steps, generator=generator, output_type="np")
        samples = samples.images[..., 0]
        grey = lambda a: np.repeat((np.clip(a, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)  # noqa: E731
        rows = [np.concatenate([grey(r / 2 + 0.5), mask_to_rgb(m), grey(s)], axis=1) for r, m, s in zip(reals, masks, samples)]
        grid = np.concatenate(rows, axis=0)
    else:
        pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        images = pipe(
            batch_size=args.num_validation_images,
            num_inference_steps=min(args.validation_inference_steps, args.num_train_timesteps),
            generator=generator,
            output_type="np",
        ).images
        grid = np.repeat((np.concatenate(list(images[..., 0]), axis=1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    unet.train()
    return grid


# ---------------------------------------------------------------------------------------------- training


def main(args: argparse.Namespace) -> Path:
    """Train; returns the folder of the final pipeline."""
    started = time.time()
    output_dir = Path(args.output_dir)
    num_classes = num_classes_for_configs(args.dataset_config)
    # Data first: a bad dataset fails before a model is built or a step is spent.
    train_dataset = load_slice_dataset(args.dataset_name, args.dataset_config, args.train_split, args.cache_dir)
    check_slice_dataset(train_dataset, num_classes, f"{args.train_split} split of {args.dataset_config}")
    validation_dataset = validation_split = None
    if args.validation_steps:
        validation_dataset, validation_split = load_validation_slices(args, num_classes)
    checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    side = args.crop_size or args.resolution

    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_args.json").write_text(training_args_json(args))  # for export_pipeline.py

    unet = build_model(args, num_classes)
    learned_variance = unet.config.out_channels == 2 * unet.config.in_channels
    model_cls = type(unet)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    noise_scheduler = training_scheduler(args, learned_variance)
    loss_fn = HybridDiffusionLoss(noise_scheduler)

    ema = None
    if not args.no_ema:
        ema = EMAModel(
            unet.parameters(),
            decay=args.ema_max_decay,
            use_ema_warmup=True,
            inv_gamma=args.ema_inv_gamma,
            power=args.ema_power,
            model_cls=model_cls,
            model_config=unet.config,
            foreach=args.foreach_ema,
        )

    def save_model_hook(models, weights, hook_dir):
        if accelerator.is_main_process:
            if ema is not None:
                # EMAModel.save_pretrained builds a fresh model, whose initialisation draws from the global RNG:
                # without the fork, how often a run checkpoints would change its dropout masks.
                with torch.random.fork_rng(devices=[]):
                    ema.save_pretrained(os.path.join(hook_dir, "unet_ema"))
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(os.path.join(hook_dir, "unet"))
                weights.pop()  # saved above, in diffusers format

    def load_model_hook(models, hook_dir):
        if ema is not None:
            loaded = EMAModel.from_pretrained(os.path.join(hook_dir, "unet_ema"), model_cls, foreach=args.foreach_ema)
            ema.load_state_dict(loaded.state_dict())
            del loaded
        while models:
            model = models.pop()
            loaded = model_cls.from_pretrained(hook_dir, subfolder="unet")
            model.register_to_config(**loaded.config)
            model.load_state_dict(loaded.state_dict())
            del loaded

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    if ema is not None:
        ema.to("cpu" if args.offload_ema else accelerator.device)

    global_step, earlier_wall_time = 0, 0.0
    if checkpoint is not None:
        accelerator.print(f"Resuming from {checkpoint}")
        accelerator.load_state(str(checkpoint))
        state = checkpoint_state(checkpoint)
        global_step, earlier_wall_time = state["global_step"], state.get("wall_time_s", 0.0)
    elif args.resume_from_checkpoint:
        accelerator.print(f"No checkpoint in {output_dir}: starting a new run")

    if accelerator.is_main_process and args.logger != "none":
        accelerator.init_trackers("train_" + args.model, config={k: str(v) for k, v in vars(args).items()})
    val_masks = val_reals = None
    if args.validation_steps and accelerator.is_main_process:
        if validation_split != args.validation_split:
            logger.warning(f"no {args.validation_split!r} split: the validation grids use masks of training slices")
        val_masks, val_reals = validation_masks(args, validation_dataset)

    low_res_resolution = args.low_res_resolution if args.model == "upscaler" else None
    data = SliceTrainingData(train_dataset, args.resolution, args.crop_size, args.random_flip, low_res_resolution)
    sampler = StepBatchSampler(
        len(data),
        args.train_batch_size,
        args.seed,
        start_micro_step=global_step * args.gradient_accumulation_steps,
        process_index=accelerator.process_index,
        num_processes=accelerator.num_processes,
    )
    # A private generator: a DataLoader draws its base seed when iterated, which would shift the global RNG
    # (dropout) of a resumed run against the uninterrupted one. Crops and flips are seeded by the sampler.
    loader_generator = torch.Generator().manual_seed(args.seed)
    batches = iter(
        torch.utils.data.DataLoader(
            data, batch_sampler=sampler, num_workers=args.dataloader_num_workers, generator=loader_generator
        )
    )
    logger.info(
        f"{len(data)} training slices at {side} px, {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters, "
        f"{accelerator.num_processes} process(es) x batch {args.train_batch_size} x {args.gradient_accumulation_steps} "
        f"accumulation, steps {global_step} -> {args.max_train_steps}"
    )

    progress = tqdm(
        total=args.max_train_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    unet.train()
    window_start, window_steps = time.perf_counter(), 0
    while global_step < args.max_train_steps:
        for accumulation in range(args.gradient_accumulation_steps):
            micro_step = global_step * args.gradient_accumulation_steps + accumulation
            batch = next(batches)
            generator = step_generator(args.seed, micro_step, accelerator.process_index)
            clean = batch["image"].to(accelerator.device)
            noise = torch.randn(clean.shape, generator=generator).to(clean.device)
            timesteps = torch.randint(0, args.num_train_timesteps, (clean.shape[0],), generator=generator).to(clean.device)
            if args.noise_offset:
                # The mean of 64x64 Gaussian noise varies by only 1/64, so the model learns to read brightness
                # from it, and at sampling a pure-noise start fixes the brightness by chance. A per-image offset
                # makes the mean uninformative: brightness must come from the mask and the content.
                offset = torch.randn(clean.shape[0], clean.shape[1], 1, 1, generator=generator).to(clean.device)
                noise = noise + args.noise_offset * offset
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with accelerator.accumulate(unet):
                if args.model != "ddpm":
                    one_hot = F.one_hot(batch["mask"], num_classes).permute(0, 3, 1, 2).float()
                    keep = torch.rand(clean.shape[0], generator=generator) >= args.condition_dropout
                    one_hot = (one_hot * keep[:, None, None, None]).to(clean.device)  # the null map is all zeros
                    low_res = {}
                    if args.model == "upscaler":
                        low_res = augmented_low_res(args, noise_scheduler, batch["low_res"], generator, clean.device)
                    model_output = unet(noisy, timesteps, one_hot, **low_res).sample
                else:
                    model_output = unet(noisy, timesteps).sample
                losses = loss_fn(model_output, clean, noisy, timesteps, noise)
                accelerator.backward(losses.loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)

        global_step += 1
        window_steps += 1
        if ema is not None:
            if args.offload_ema:  # as diffusers' scripts do: on the device only for the update
                ema.to(accelerator.device, non_blocking=True)
            ema.step(unet.parameters())
            if args.offload_ema:
                ema.to("cpu", non_blocking=True)
        logs = {"loss": losses.loss.detach().item(), "mse": losses.mse.item(), "lr": lr_scheduler.get_last_lr()[0]}
        if losses.vb is not None:
            logs["vb"] = losses.vb.item()
        if ema is not None:
            logs["ema_decay"] = ema.cur_decay_value
        elapsed = time.perf_counter() - window_start
        if elapsed > 0:
            logs["steps_per_s"] = window_steps / elapsed
        progress.update()
        progress.set_postfix(loss=f"{logs['loss']:.4f}", steps_per_s=f"{logs.get('steps_per_s', 0):.2f}")
        accelerator.log(logs, step=global_step)
        if window_steps >= 50:
            window_start, window_steps = time.perf_counter(), 0

        if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
            save_checkpoint(
                accelerator,
                output_dir,
                global_step,
                args.checkpoints_total_limit,
                wall_time_s=earlier_wall_time + time.time() - started,
            )
        if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
            grid = _with_ema(ema, unet, lambda: validation_grid(args, accelerator.unwrap_model(unet), noise_scheduler, val_masks, val_reals))
            path = save_synthetic_png(
                grid, output_dir / "validation" / f"step-{global_step:07d}.png", metadata=_grid_description(args)
            )
            for tracker in accelerator.trackers:
                if tracker.name == "tensorboard":
                    tracker.writer.add_image("validation", grid, global_step, dataformats="HWC")
            logger.info(f"validation grid: {path}")
    progress.close()

    accelerator.wait_for_everyone()
    final_dir = output_dir / "pipeline"
    if accelerator.is_main_process:
        unet = accelerator.unwrap_model(unet)
        if ema is not None:
            ema.copy_to(unet.parameters())
        write_pipeline_folder(
            args,
            unet,
            final_dir,
            steps=global_step,
            wall_time_s=earlier_wall_time + time.time() - started,
            num_slices=len(data),
            batch_size=args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes,
        )
        logger.info(f"pipeline saved to {final_dir}")
        if args.push_to_hub:
            # The folder as written (weights, configs, the training card, training.json), not a fresh
            # save_pretrained, which would drop the card's training facts.
            repo_id = create_repo(
                args.hub_model_id or output_dir.name, private=args.hub_private_repo, token=args.hub_token, exist_ok=True
            ).repo_id
            url = upload_folder(
                repo_id=repo_id,
                folder_path=final_dir,
                token=args.hub_token,
                commit_message=f"{args.model} trained for {global_step} steps with lung-diffusers",
            )
            logger.info(f"pushed to {url}")
    accelerator.end_training()
    return final_dir


def _with_ema(ema, unet, function):
    """Run ``function`` with the EMA weights swapped into ``unet`` (the way EMAModel does it), then swap back."""
    if ema is None:
        return function()
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        return function()
    finally:
        ema.restore(unet.parameters())


def _grid_description(args) -> dict[str, str]:
    if args.model == "sdm":
        columns = "real slice of the validation split (a patient scan) | its mask | synthetic slice made from that mask"
        return {"Columns": columns}
    return {"Columns": "synthetic samples only"}


def write_pipeline_folder(
    args: argparse.Namespace,
    unet: torch.nn.Module,
    folder: Path,
    *,
    steps: int,
    wall_time_s: float,
    num_slices: int,
    batch_size: int,
    dtype: torch.dtype | None = None,
    repo_id: str | None = None,
) -> Path:
    """Save ``unet`` (already holding the weights to ship, e.g. EMA) as a pipeline folder with its training card.

    Written beside ``folder`` and swapped in only when complete. ``dtype`` (e.g. float16) shrinks the weights;
    loading upcasts them to float32 unless a ``torch_dtype`` is asked for.
    """
    folder = Path(folder)
    learned_variance = unet.config.out_channels == 2 * unet.config.in_channels
    pipeline = _final_pipeline(args, unet, training_scheduler(args, learned_variance))
    staging = folder.parent / f".{folder.name}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    if dtype is not None:
        pipeline.to(dtype)
    pipeline.save_pretrained(staging)
    write_training_card(
        staging,
        pipeline,
        model=args.model,
        dataset=args.dataset_name,
        configs=list(args.dataset_config),
        split=args.train_split,
        num_slices=num_slices,
        steps=steps,
        batch_size=batch_size,
        resolution=args.resolution,
        crop_size=args.crop_size,
        wall_time_s=wall_time_s,
        command=args.command,
        ema=not args.no_ema,
        repo_id=repo_id or args.hub_model_id or Path(args.output_dir).name,
    )
    (staging / "training_args.json").write_text(training_args_json(args))
    if folder.exists():
        old = folder.parent / f".{folder.name}.old"
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old)
    else:
        staging.rename(folder)
    return folder


def training_args_json(args: argparse.Namespace) -> str:
    """The run's options as JSON (without the Hub token), kept beside checkpoints and pipelines."""
    return json.dumps({k: v for k, v in vars(args).items() if k != "hub_token"}, indent=2, default=str) + "\n"


def _final_pipeline(args, unet, noise_scheduler):
    if args.model == "sdm":
        return LungSDMPipeline(unet=unet, scheduler=noise_scheduler, hu_window=HU_WINDOW)
    return DDPMPipeline(unet=unet, scheduler=noise_scheduler)


def cli(argv: list[str] | None = None, model: str = "sdm") -> int:
    return run_script(
        lambda: main(parse_args(argv, model)),
        interrupted="interrupted: rerun with --resume_from_checkpoint latest to continue",
    )


if __name__ == "__main__":
    sys.exit(cli())
