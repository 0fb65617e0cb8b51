"""Validation grids of a training run: fixed masks of held-out patients, sampled with the EMA weights.

Rows of real slice | mask | synthetic slice for mask models, a row of samples for the unconditional prior;
``training/train_sdm.py`` saves them marked synthetic (:func:`grid_description` says what the columns are).
"""

from __future__ import annotations

import argparse

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler

from .. import LungSDMPipeline, LungSDMUpscalePipeline
from ..cascade import upsample_low_res
from ..ct import LEFT_LUNG, RIGHT_LUNG, image_from_model_range, mask_to_rgb
from ..data.slice_dataset import check_slice_dataset, load_slice_dataset
from ..pipelines.pipeline_lung_sdm_upscale import DEFAULT_NOISE_LEVEL
from .slice_data import SliceTrainingData


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
    grey = lambda a: np.repeat((np.clip(a, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)  # noqa: E731
    if args.model == "sdm":
        pipe = LungSDMPipeline(unet=unet, scheduler=sampler)
        pipe.set_progress_bar_config(disable=True)
        samples = pipe(masks, num_inference_steps=args.validation_inference_steps, generator=generator, output_type="np")
        samples = samples.images[..., 0]
        rows = [np.concatenate([grey(image_from_model_range(r)), mask_to_rgb(m), grey(s)], axis=1) for r, m, s in zip(reals, masks, samples)]
        grid = np.concatenate(rows, axis=0)
    elif args.model == "upscaler":
        # Stage 2 from the real slices shrunk to the first stage's size (what it learns from), at a mid
        # augmentation level: real | mask | its low-resolution input (upsampled) | the upscaler's slice.
        pipe = LungSDMUpscalePipeline(unet=unet, scheduler=sampler, image_noising_scheduler=DDPMScheduler.from_config(scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        real = torch.from_numpy(reals)[:, None].float()
        low_res = F.interpolate(real, size=(args.low_res_resolution,) * 2, mode="area")
        level = min(DEFAULT_NOISE_LEVEL, args.max_noise_level - 1)
        samples = pipe(low_res, masks, noise_level=level, num_inference_steps=args.validation_inference_steps,
                       generator=generator, output_type="np").images[..., 0]
        inputs = image_from_model_range(upsample_low_res(low_res, args.resolution)[:, 0].numpy())
        rows = [
            np.concatenate([grey(image_from_model_range(r)), mask_to_rgb(m), grey(i), grey(s)], axis=1)
            for r, m, i, s in zip(reals, masks, inputs, samples)
        ]
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


def with_ema_weights(ema, unet, function):
    """Run ``function`` with the EMA weights swapped into ``unet`` (the way EMAModel does it), then swap back."""
    if ema is None:
        return function()
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        return function()
    finally:
        ema.restore(unet.parameters())


def grid_description(args) -> dict[str, str]:
    if args.model == "upscaler":
        columns = (
            "real slice of the validation split (a patient scan) | its mask | the real slice shrunk to the first "
            "stage's size and upsampled | synthetic slice the upscaler made from them"
        )
        return {"Columns": columns}
    if args.model == "sdm":
        columns = "real slice of the validation split (a patient scan) | its mask | synthetic slice made from that mask"
        return {"Columns": columns}
    return {"Columns": "synthetic samples only"}
