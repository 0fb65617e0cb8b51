"""The options of ``training/train_sdm.py`` (and ``train_ddpm.py``, its ``--model ddpm`` defaults): parsing,
the checks made before anything is loaded, and the record of a run (``training_args.json``).

The flags and ``training_args.json`` are an interface: a run resumes, and ``training/export_pipeline.py``
rebuilds a run's options, from what earlier versions of the script wrote. Add flags; do not rename them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..data.slice_dataset import num_classes_for_configs

DESCRIPTION = "Train a lung-CT Semantic Diffusion Model (or, with ``--model ddpm``, the unconditional healthy prior)."
MODELS = ("sdm", "ddpm", "upscaler")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv: list[str] | None = None, model: str = "sdm") -> argparse.Namespace:
    """Command-line options; ``model`` sets the defaults (``train_ddpm.py`` passes ``"ddpm"``)."""
    sdm = model == "sdm"
    parser = argparse.ArgumentParser(description=DESCRIPTION)
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


def training_args_json(args: argparse.Namespace) -> str:
    """The run's options as JSON (without the Hub token), kept beside checkpoints and pipelines."""
    return json.dumps({k: v for k, v in vars(args).items() if k != "hub_token"}, indent=2, default=str) + "\n"
