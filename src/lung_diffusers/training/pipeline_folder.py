"""The final pipeline folder of a training run: weights, scheduler, the training card and ``training_args.json``.

Written beside its place and swapped in only when complete, at the end of ``training/train_sdm.py`` and by
``training/export_pipeline.py`` (from a checkpoint, while training goes on).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from diffusers import DDPMPipeline

from .. import LungSDMPipeline
from ..ct import HU_WINDOW
from .model_card import write_training_card
from .sdm_model import training_scheduler
from .sdm_options import training_args_json


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
    pipeline = final_pipeline(args, unet, training_scheduler(args, learned_variance))
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


def final_pipeline(args, unet, noise_scheduler):
    if args.model == "sdm":
        return LungSDMPipeline(unet=unet, scheduler=noise_scheduler, hu_window=HU_WINDOW)
    return DDPMPipeline(unet=unet, scheduler=noise_scheduler)
