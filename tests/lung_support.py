"""The tests' shared builders: tiny random U-Nets, the healthy prior's scheduler, a tiny recipe-shaped dataset and
the real nodule slice's place.

A plain module (not ``conftest``; tests/conftest.py puts its folder on ``sys.path``): several test folders have a ``conftest.py``, and under pytest-xdist ``from conftest
import ...`` can resolve to another folder's.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

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


def chest(size: int = 32):
    """A label map (body, right lung 3 on the image's left, left lung 2) and its uint8 lung-window slice."""
    import numpy as np

    labels = np.zeros((size, size), np.uint8)
    labels[1 : size - 1, 0:size] = 1
    labels[5 : size - 5, 2 : size // 2 - 1] = 3
    labels[5 : size - 5, size // 2 + 1 : size - 2] = 2
    rng = np.random.default_rng(size)
    image = np.where(labels == 1, 0.7, 0.0) + np.where(np.isin(labels, (2, 3)), 0.1, 0.0)
    image = np.clip(image + rng.normal(0, 0.02, image.shape) * (labels > 0), 0, 1)
    return (image * 255).round().astype(np.uint8), labels


TINY_RECIPE_README = """---
configs:
- config_name: healthy
  data_files:
  - split: train
    path: data/healthy/train-*.parquet
  - split: test
    path: data/healthy/test-*.parquet
- config_name: nodule
  data_files:
  - split: train
    path: data/nodule/train-*.parquet
  - split: test
    path: data/nodule/test-*.parquet
---
"""


def write_tiny_recipe(folder):
    """A recipe-shaped dataset of 32-px chests in ``folder``: healthy train (LIDC-IDRI-0002, 0003), nodule train
    (0002, 0003: a bright 5-px nodule in the right lung), healthy test and nodule test (0001). Returns ``folder``."""
    import datasets
    import numpy as np

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "mask": datasets.Image(),
            "patient_id": datasets.Value("string"),
            "slice_index": datasets.Value("int32"),
            "spacing": {"pixel_mm": datasets.Sequence(datasets.Value("float32"))},
        }
    )
    image, labels = chest()

    def write(config, split, patients, nodule=False):
        images, masks = [], []
        for k in range(len(patients)):
            img, lab = image.copy(), labels.copy()
            if nodule:
                disc = np.hypot(*(np.indices(lab.shape) - np.array([14 + k, 8])[:, None, None])) <= 2.5
                lab[disc], img[disc] = 5, 190
            images.append(img)
            masks.append(lab)
        data = {
            "image": images,
            "mask": masks,
            "patient_id": patients,
            "slice_index": list(range(len(patients))),
            "spacing": [{"pixel_mm": [2.0, 2.0]}] * len(patients),
        }
        path = folder / "data" / config / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(data, features=features).to_parquet(str(path))

    write("healthy", "train", ["LIDC-IDRI-0002", "LIDC-IDRI-0003", "LIDC-IDRI-0003"])
    write("nodule", "train", ["LIDC-IDRI-0002", "LIDC-IDRI-0003", "LIDC-IDRI-0003"], nodule=True)
    write("healthy", "test", ["LIDC-IDRI-0001"] * 3)
    write("nodule", "test", ["LIDC-IDRI-0001"] * 2, nodule=True)
    (folder / "README.md").write_text(TINY_RECIPE_README)
    return folder


def save_tiny_prior(folder):
    """A tiny random healthy prior saved as a ``DDPMPipeline`` folder (what the evaluation scripts load)."""
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=tiny_unet(), scheduler=prior_scheduler()).save_pretrained(folder)
    return folder


def run_script(script: Path, argv: Sequence) -> int:
    """``python SCRIPT ARGV`` in this process, run as ``__main__`` (no interpreter start-up per call, and
    monkeypatches apply): its exit status. Tests run scripts; they never import functions from them."""
    with mock.patch.object(sys, "argv", [str(script), *map(str, argv)]):
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exit_:
            return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    return 0
