"""The training loop of ``training/train_sdm.py`` and ``training/train_ddpm.py``: a lung-CT Semantic Diffusion
Model, the unconditional healthy prior (``--model ddpm``) or a cascade's upscaler.

Shaped like diffusers' ``examples/unconditional_image_generation/train_unconditional.py``: accelerate for
CPU / one GPU / several, mixed precision, gradient accumulation and checkpointing, EMA weights saved in
diffusers format through accelerate's hooks, atomic checkpoints with rotation and resume, tensorboard
logging, validation grids sampled with the EMA weights, and a final pipeline folder (``LungSDMPipeline`` for
``--model sdm``, diffusers' ``DDPMPipeline`` for ``--model ddpm``) with a model card, optionally pushed to
the Hub. The method is the thesis' / SDM's: improved-DDPM hybrid loss with learned variance, a linear
schedule of 1000 steps, AdamW at 1e-4 and classifier-free-guidance training by dropping the mask.

Randomness (batches, crops, flips, noise, timesteps, mask dropout) is a pure function of ``--seed`` and the
step, so a run resumed from a checkpoint continues exactly as an uninterrupted one. The options are
:mod:`.sdm_options`, the model :mod:`.sdm_model`, the grids :mod:`.validation_grids` and the final folder
:mod:`.pipeline_folder`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from .. import save_synthetic_png
from ..data.slice_dataset import check_slice_dataset, load_slice_dataset, num_classes_for_configs
from ..hub import push_folder
from .checkpoints import checkpoint_state, resolve_checkpoint, save_checkpoint
from .diffusion_loss import HybridDiffusionLoss
from .pipeline_folder import write_pipeline_folder
from .script_cli import run_script
from .sdm_model import build_model, record_pixel_spacing, training_pixel_spacing_mm, training_scheduler
from .sdm_options import parse_args, training_args_json
from .slice_data import SliceTrainingData, StepBatchSampler
from .validation_grids import (
    grid_description,
    load_validation_slices,
    validation_grid,
    validation_masks,
    with_ema_weights,
)

logger = get_logger(__name__, log_level="INFO")


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
    pixel_spacing_mm = None
    if args.model != "ddpm":
        # In the config, for RePaint's insertion resampling, size checks and NIfTI outputs (None without spacing).
        pixel_spacing_mm = training_pixel_spacing_mm(train_dataset, unet.config.sample_size)
        if pixel_spacing_mm is not None:
            record_pixel_spacing(unet, pixel_spacing_mm)
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
            if pixel_spacing_mm is not None:  # a checkpoint of a run started before training recorded the spacing
                record_pixel_spacing(model, pixel_spacing_mm)
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
            grid = with_ema_weights(ema, unet, lambda: validation_grid(args, accelerator.unwrap_model(unet), noise_scheduler, val_masks, val_reals))
            path = save_synthetic_png(
                grid, output_dir / "validation" / f"step-{global_step:07d}.png", metadata=grid_description(args)
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
            url = push_folder(
                final_dir,
                args.hub_model_id or output_dir.name,
                private=args.hub_private_repo,
                token=args.hub_token,
                commit_message=f"{args.model} trained for {global_step} steps with lung-diffusers",
            )
            logger.info(f"pushed to {url}")
    accelerator.end_training()
    return final_dir


def cli(argv: list[str] | None = None, model: str = "sdm") -> int:
    return run_script(
        lambda: main(parse_args(argv, model)),
        interrupted="interrupted: rerun with --resume_from_checkpoint latest to continue",
    )
