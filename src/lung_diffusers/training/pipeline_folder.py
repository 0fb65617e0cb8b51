"""The final pipeline folder of a training run: weights, scheduler, the training card and ``training_args.json``.

Written beside its place and swapped in only when complete, at the end of ``training/train_sdm.py`` and by
``training/export_pipeline.py`` (from a checkpoint, while training goes on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import DDPMPipeline, DDPMScheduler

from .. import LungSDMPipeline, LungSDMUpscalePipeline
from ..ct import HU_WINDOW
from ..hub import replaced_folder
from ..learned_variance import predicts_learned_variance
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
    pipeline = final_pipeline(args, unet, training_scheduler(args, predicts_learned_variance(unet.config)))
    if dtype is not None:
        pipeline.to(dtype)
    with replaced_folder(folder) as staging:
        pipeline.save_pretrained(staging)
        _write_card(args, pipeline, staging, steps, wall_time_s, num_slices, batch_size, repo_id)
    return Path(folder)


def _write_card(args, pipeline, staging: Path, steps, wall_time_s, num_slices, batch_size, repo_id) -> None:
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


def final_pipeline(args, unet, noise_scheduler):
    if args.model == "sdm":
        return LungSDMPipeline(unet=unet, scheduler=noise_scheduler, hu_window=HU_WINDOW)
    if args.model == "upscaler":
        # The augmentation noise follows the training schedule (sdm_training.augmented_low_res).
        image_noising = DDPMScheduler.from_config(noise_scheduler.config)
        return LungSDMUpscalePipeline(
            unet=unet, scheduler=noise_scheduler, image_noising_scheduler=image_noising, hu_window=HU_WINDOW
        )
    return DDPMPipeline(unet=unet, scheduler=noise_scheduler)
