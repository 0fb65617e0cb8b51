"""Helpers of the RePaint tests: tiny random U-Nets, the healthy prior's scheduler and the real nodule slice's place.

A plain module (not ``conftest``): several test folders have a ``conftest.py``, and under pytest-xdist ``from conftest
import ...`` can resolve to another folder's.
"""

from __future__ import annotations

import torch

# LIDC-IDRI-0003: the recipe puts it in the train split; slice 75 holds a 21 mm nodule.
NODULE_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264"
NODULE_SLICE = 75


def tiny_unet(sample_size: int = 16, learned_variance: bool = True, seed: int = 0):
    """A random unconditional U-Net, the shape of the healthy prior but tiny (epsilon, or epsilon + variance)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=1,
        out_channels=2 if learned_variance else 1,
        block_out_channels=(32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    ).eval()


def tiny_sdm(sample_size: int = 16, num_classes: int = 6, seed: int = 0):
    """A random Semantic Diffusion Model U-Net (learned variance), tiny."""
    from lung_diffusers import SemanticUNet2DModel

    torch.manual_seed(seed)
    return SemanticUNet2DModel(
        sample_size=sample_size,
        num_classes=num_classes,
        block_out_channels=(32, 32),
        layers_per_block=1,
        attention_downsample_factors=(2,),
        attention_head_dim=16,
        spade_hidden_channels=8,
    ).eval()


def prior_scheduler():
    """The healthy prior's scheduler (training issue): learned variance, linear betas 1e-4..0.02, linspace spacing."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        variance_type="learned_range",
        timestep_spacing="linspace",
        clip_sample=True,
    )


def make_pipe(unet, scheduler=None):
    from lung_diffusers import LungRePaintPipeline

    pipe = LungRePaintPipeline(unet=unet, scheduler=scheduler or prior_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


# A few steps with jumps: enough to exercise every branch of the loop, quick on one thread.
FAST = {"num_inference_steps": 8, "jump_length": 2, "jump_n_sample": 2}
