"""Fixtures of the RePaint tests: tiny random U-Nets (pipeline mechanics) and a real LIDC-IDRI nodule slice.

The real slice comes from the data recipe run on one scan in a temporary folder (about 5-10 s, once per session):
LIDC-IDRI-0003, slice 75, which cuts a 21 mm nodule.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
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


@pytest.fixture
def prior_pipe():
    return make_pipe(tiny_unet())


@pytest.fixture
def sdm_pipe():
    return make_pipe(tiny_sdm())


@dataclass(frozen=True)
class RealSlice:
    image: np.ndarray  # uint8 (256, 256), lung window, as the recipe stores it
    labels: np.ndarray  # uint8 (256, 256), classes 0-5
    malignancy_labels: np.ndarray | None


@pytest.fixture(scope="session")
def real_nodule_slice(shared_dir, tmp_path_factory) -> RealSlice:
    """The recipe's 256-px slice 75 of LIDC-IDRI-0003 and its label map (nodule = 5)."""
    import PIL.Image
    import pyarrow.parquet as pq

    from lung_diffusers.data import prepare_luna16_dataset

    lidc_mini = shared_dir / "data" / "lidc-mini"
    if not (lidc_mini / "subset0").is_dir():
        pytest.fail(f"LUNA16 sample not found at {lidc_mini}; see shared/data/README.md")
    output = tmp_path_factory.mktemp("repaint-recipe") / "slices"
    prepare_luna16_dataset(
        lidc_mini,
        output,
        image_size=256,
        healthy_stride=100_000,  # nodule slices only
        series_uids=[NODULE_SERIES],
        lidc_xml_dir=lidc_mini / "lidc-xml",
        malignancy=True,
        log=lambda message: None,
    )

    def row(config: str):
        (shard,) = (output / "data" / config).glob("*.parquet")
        table = pq.read_table(shard).to_pylist()
        return next(r for r in table if r["slice_index"] == NODULE_SLICE)

    def png(cell) -> np.ndarray:
        return np.array(PIL.Image.open(io.BytesIO(cell["bytes"])))

    nodule_row = row("nodule")
    malignancy_dir = output / "data" / "malignancy"
    malignancy = (
        png(row("malignancy")["mask"]) if malignancy_dir.is_dir() and any(malignancy_dir.glob("*.parquet")) else None
    )
    return RealSlice(png(nodule_row["image"]), png(nodule_row["mask"]), malignancy)
