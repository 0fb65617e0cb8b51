"""The tests' shared builders: tiny random models, fake recipe-shaped datasets, scripts run as a user runs them.

Everything is tiny (U-Nets of widths 32/32 at 16-32 px, phantom slices of 32-64 px, a few sampling steps) and runs
on one torch thread, so a test takes seconds and two runs of the same settings are identical bit for bit on CPU.
Helpers that only one folder's tests use stay beside them (``training_support``, ``synthesis_support``,
``space_support``).

A plain module with its own name, which tests/conftest.py puts on ``sys.path``: not ``conftest``, because under
pytest-xdist ``from conftest import ...`` can resolve to another folder's.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# LIDC-IDRI-0003 of the shared sample: 140 slices, three reference nodules; the recipe puts it in the train split,
# and its slice 75 cuts a 21 mm nodule.
LIDC_0003_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264"
NODULE_SLICE = 75

# ---------------------------------------------------------------------------------------------- tiny models

# The tiny SDM's shape (training_support.TINY_MODEL gives train_sdm.py the same as flags).
TINY_SDM = dict(
    block_out_channels=(32, 32),
    layers_per_block=1,
    attention_downsample_factors=(2,),
    attention_head_dim=16,
    spade_hidden_channels=8,
)


def tiny_sdm(sample_size: int = 16, num_classes: int = 6, seed: int = 0, **config):
    """A random Semantic Diffusion Model U-Net (learned variance), tiny; ``config`` overrides its shape."""
    from lung_diffusers import SemanticUNet2DModel

    torch.manual_seed(seed)
    return SemanticUNet2DModel(sample_size=sample_size, num_classes=num_classes, **{**TINY_SDM, **config}).eval()


def tiny_prior_unet(sample_size: int = 16, learned_variance: bool = True, seed: int = 0):
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


def repaint_pipe(unet, scheduler=None):
    """A LungRePaintPipeline around ``unet`` (the prior's scheduler unless given), without progress bars."""
    from lung_diffusers import LungRePaintPipeline

    pipe = LungRePaintPipeline(unet=unet, scheduler=scheduler or prior_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


# A few RePaint steps with jumps: enough to exercise every branch of the loop, quick on one thread.
FAST = {"num_inference_steps": 8, "jump_length": 2, "jump_n_sample": 2}


def tiny_upscaler(sample_size: int, training_crop_size: int, seed: int = 1):
    """A random second stage of the cascade, tiny: the low-resolution slice as an extra input, no attention (as the
    demo run's). Its output layer gets random weights: zero-initialised, the inputs would not matter."""
    from lung_diffusers import SemanticUNet2DModel

    torch.manual_seed(seed)
    unet = SemanticUNet2DModel(
        sample_size=sample_size, block_out_channels=(32, 32), layers_per_block=1, attention_downsample_factors=(),
        add_attention=False, spade_hidden_channels=8, low_res_channels=1, training_crop_size=training_crop_size,
    )  # fmt: skip
    torch.nn.init.normal_(unet.conv_out.weight, std=0.05)
    return unet.eval()


def save_tiny_sdm_pipeline(folder: Path, num_classes: int = 6, seed: int = 0) -> Path:
    """A random 32-px LungSDMPipeline saved to ``folder`` (its output is noise: only the plumbing is tested)."""
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMPipeline

    unet = tiny_sdm(32, num_classes=num_classes, seed=seed)
    LungSDMPipeline(unet=unet, scheduler=DDPMScheduler(variance_type="learned_range")).save_pretrained(folder)
    return folder


def save_tiny_prior(folder: Path) -> Path:
    """A tiny random healthy prior saved as a ``DDPMPipeline`` folder (what the evaluation scripts load)."""
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=tiny_prior_unet(), scheduler=prior_scheduler()).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- fake datasets

# Grey (uint8, lung window) of each recipe label: background, body, left and right lung, trachea, nodule, malignant.
PHANTOM_GREY = np.array([0, 150, 25, 25, 5, 170, 190], np.float64)


def phantom_label_map(
    size: int, nodule_label: int | None = None, lung_widths: tuple[float, float] = (0.14, 0.11)
) -> np.ndarray:
    """A chest-like label map with the recipe's labels.

    The patient's left lung (2) is on the image's right and narrower than the right lung (3), as in the recipe's
    radiological view, so a mirror image is told apart from the original. ``lung_widths``: the right and left
    lung's half-widths as fractions of the side.
    """
    rows, cols = np.mgrid[0:size, 0:size] / size
    right, left = lung_widths
    mask = np.zeros((size, size), np.uint8)
    mask[((rows - 0.5) / 0.42) ** 2 + ((cols - 0.5) / 0.46) ** 2 < 1] = 1
    mask[((rows - 0.5) / 0.28) ** 2 + ((cols - 0.30) / right) ** 2 < 1] = 3
    mask[((rows - 0.5) / 0.22) ** 2 + ((cols - 0.70) / left) ** 2 < 1] = 2
    mask[((rows - 0.22) / 0.05) ** 2 + ((cols - 0.5) / 0.05) ** 2 < 1] = 4
    if nodule_label is not None:
        mask[((rows - 0.5) / 0.08) ** 2 + ((cols - 0.70) / 0.06) ** 2 < 1] = nodule_label
    return mask


def phantom_image(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The uint8 lung-window slice of a phantom label map: each label's grey, with noise inside the body."""
    return np.clip(PHANTOM_GREY[mask] + rng.normal(0, 12, mask.shape) * (mask > 0), 0, 255).astype(np.uint8)


def phantom_slice(size: int, rng: np.random.Generator, nodule_label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A chest-like CT slice (uint8, lung window) and its mask with the recipe's labels."""
    mask = phantom_label_map(size, nodule_label)
    return phantom_image(mask, rng), mask


def phantom_rows(count: int, size: int = 32, seed: int = 0, nodule_label: int | None = None) -> dict[str, list]:
    """Columns ``image`` and ``mask`` of ``count`` phantom slices."""
    rng = np.random.default_rng(seed)
    pairs = [phantom_slice(size, rng, nodule_label) for _ in range(count)]
    return {"image": [p[0] for p in pairs], "mask": [p[1] for p in pairs]}


def box_chest(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A chest of boxes: its uint8 lung-window slice and label map (body, right lung 3 on the image's left, left
    lung 2)."""
    labels = np.zeros((size, size), np.uint8)
    labels[1 : size - 1, 0:size] = 1
    labels[5 : size - 5, 2 : size // 2 - 1] = 3
    labels[5 : size - 5, size // 2 + 1 : size - 2] = 2
    rng = np.random.default_rng(size)
    image = np.where(labels == 1, 0.7, 0.0) + np.where(np.isin(labels, (2, 3)), 0.1, 0.0)
    image = np.clip(image + rng.normal(0, 0.02, image.shape) * (labels > 0), 0, 1)
    return (image * 255).round().astype(np.uint8), labels


def write_slice_dataset(root: Path, shards: dict, features=None, default_config: str | None = None) -> Path:
    """A folder shaped like the recipe's: ``data/<config>/<split>-0.parquet`` and a README with ``configs`` YAML.

    ``shards[config][split]`` is a list of rows with the columns of ``features``, or a dict of columns: arrays
    become PNG images (as the recipe stores them), and without ``features`` strings stay strings. A column given as
    an empty list makes an empty shard.
    """
    import datasets
    import PIL.Image

    root.mkdir(parents=True, exist_ok=True)
    card = ["---", "configs:"]
    for config, splits in shards.items():
        card += [f"- config_name: {config}", *(["  default: true"] if config == default_config else []), "  data_files:"]
        for split, rows in splits.items():
            if isinstance(rows, list):
                dataset = datasets.Dataset.from_list(rows, features=features)
            else:
                columns = {
                    name: [PIL.Image.fromarray(v) if isinstance(v, np.ndarray) else v for v in column]
                    for name, column in rows.items()
                }
                dataset = datasets.Dataset.from_dict(columns, features=features or inferred_features(rows))
            path = root / "data" / config / f"{split}-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(str(path))
            card += [f"  - split: {split}", f"    path: data/{config}/{split}-*.parquet"]
    card += ["---", "", "# A tiny dataset shaped like the lung-diffusers recipe's (tests only; not LIDC-IDRI)", ""]
    (root / "README.md").write_text("\n".join(card))
    return root


def inferred_features(columns: dict[str, list]):
    """String columns stay strings; the others are images."""
    import datasets

    return datasets.Features(
        {
            name: datasets.Value("string") if values and isinstance(values[0], str) else datasets.Image()
            for name, values in columns.items()
        }
    )


def write_tiny_recipe(folder: Path) -> Path:
    """A recipe-shaped dataset of 32-px box chests in ``folder``: healthy train (LIDC-IDRI-0002, 0003), nodule train
    (0002, 0003: a bright 5-px nodule in the right lung), healthy test and nodule test (0001). Returns ``folder``."""
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "mask": datasets.Image(),
            "patient_id": datasets.Value("string"),
            "slice_index": datasets.Value("int32"),
            "spacing": {"pixel_mm": datasets.Sequence(datasets.Value("float32"))},
        }
    )
    image, labels = box_chest()

    def columns(patients: list[str], nodule: bool = False) -> dict[str, list]:
        images, masks = [], []
        for k in range(len(patients)):
            img, lab = image.copy(), labels.copy()
            if nodule:
                disc = np.hypot(*(np.indices(lab.shape) - np.array([14 + k, 8])[:, None, None])) <= 2.5
                lab[disc], img[disc] = 5, 190
            images.append(img)
            masks.append(lab)
        return {
            "image": images,
            "mask": masks,
            "patient_id": patients,
            "slice_index": list(range(len(patients))),
            "spacing": [{"pixel_mm": [2.0, 2.0]}] * len(patients),
        }

    train = ["LIDC-IDRI-0002", "LIDC-IDRI-0003", "LIDC-IDRI-0003"]
    shards = {
        "healthy": {"train": columns(train), "test": columns(["LIDC-IDRI-0001"] * 3)},
        "nodule": {"train": columns(train, nodule=True), "test": columns(["LIDC-IDRI-0001"] * 2, nodule=True)},
    }
    return write_slice_dataset(folder, shards, features)


# ---------------------------------------------------------------------------------------------- running


@contextlib.contextmanager
def one_thread():
    """Torch on one thread (as ``OMP_NUM_THREADS=1`` does in a subprocess): runs must be comparable bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next in-process run starts as a fresh process would."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def subprocess_env(datasets_cache: Path | str | None = None) -> dict[str, str]:
    """Environment of a subprocess: offline, one thread, this checkout's package first (and a private datasets
    cache, if given)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if datasets_cache is not None:
        env["HF_DATASETS_CACHE"] = str(datasets_cache)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_script(script: Path, argv: Sequence) -> int:
    """``python SCRIPT ARGV`` in this process, run as ``__main__`` (no interpreter start-up per call, and
    monkeypatches apply): its exit status. Tests run scripts; they never import functions from them."""
    with mock.patch.object(sys, "argv", [str(script), *map(str, argv)]):
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exit_:
            return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    return 0
