"""Helpers of the training tests: the training loop run in-process, tiny recipe-shaped datasets.

Runs use tiny U-Nets (widths 32, 32; 16-32 px; batch 2) on one thread, so that they take seconds and two
runs of the same settings are bit-identical on CPU. (A module with its own name, not ``conftest``, so test
modules can import it: pytest puts this folder on ``sys.path``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = REPO_ROOT / "training"
TRAIN_SDM = TRAINING_DIR / "train_sdm.py"
TRAIN_DDPM = REPO_ROOT / "training" / "train_ddpm.py"
PYTHON = sys.executable

# LIDC-IDRI-0003: 140 slices, three reference nodules; the recipe puts it in the train split.
REAL_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264"

# The options every tiny run shares (the dataset, output folder and step counts are added per test).
TINY_MODEL = [
    "--block_out_channels", "32,32",
    "--layers_per_block", "1",
    "--attention_downsample_factors", "2",
    "--attention_head_dim", "16",
    "--spade_hidden_channels", "8",
    "--train_batch_size", "2",
    "--mixed_precision", "no",
    "--logger", "none",
    "--validation_steps", "0",
    "--validation_inference_steps", "2",
    "--num_validation_images", "2",
]


@contextlib.contextmanager
def one_thread():
    """Torch on one thread (as ``OMP_NUM_THREADS=1`` does in a subprocess): runs must be comparable bit for bit."""
    import torch

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


def run_training(module, argv: Sequence, model: str = "sdm") -> Path:
    """``main(parse_args(argv))`` in this process on one thread; returns the final pipeline folder."""
    args = module.parse_args([str(a) for a in argv], model)
    try:
        with one_thread():
            return module.main(args)
    finally:
        reset_accelerate()


def python_env() -> dict[str, str]:
    """Environment of a training subprocess: offline, one thread, this checkout's package first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ------------------------------------------------------------------------------------------ tiny datasets


def phantom_slice(size: int, rng: np.random.Generator, nodule_label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A chest-like CT slice (uint8, lung window) and its mask with the recipe's labels.

    The patient's left lung (2) is on the image's right and smaller than the right lung (3), as in the
    recipe's radiological view, so a mirror image is told apart from the original.
    """
    rows, cols = np.mgrid[0:size, 0:size] / size
    mask = np.zeros((size, size), np.uint8)
    mask[((rows - 0.5) / 0.42) ** 2 + ((cols - 0.5) / 0.46) ** 2 < 1] = 1
    mask[((rows - 0.5) / 0.28) ** 2 + ((cols - 0.30) / 0.14) ** 2 < 1] = 3
    mask[((rows - 0.5) / 0.22) ** 2 + ((cols - 0.70) / 0.11) ** 2 < 1] = 2
    mask[((rows - 0.22) / 0.05) ** 2 + ((cols - 0.5) / 0.05) ** 2 < 1] = 4
    if nodule_label is not None:
        mask[((rows - 0.5) / 0.08) ** 2 + ((cols - 0.70) / 0.06) ** 2 < 1] = nodule_label
    tissue = np.array([0, 150, 25, 25, 5, 170, 190], np.float64)[mask]
    image = np.clip(tissue + rng.normal(0, 12, mask.shape) * (mask > 0), 0, 255).astype(np.uint8)
    return image, mask


def phantom_rows(count: int, size: int = 32, seed: int = 0, nodule_label: int | None = None) -> dict[str, list]:
    """Columns ``image`` and ``mask`` of ``count`` phantom slices."""
    rng = np.random.default_rng(seed)
    pairs = [phantom_slice(size, rng, nodule_label) for _ in range(count)]
    return {"image": [p[0] for p in pairs], "mask": [p[1] for p in pairs]}


def write_slice_dataset(root: Path, shards: dict[str, dict[str, dict[str, list]]]) -> Path:
    """A folder shaped like the recipe's: ``data/<config>/<split>-0.parquet`` and a README with ``configs`` YAML.

    ``shards[config][split]`` maps column names to values: arrays become PNG images (as the recipe stores
    them), strings stay strings. A column given as an empty list makes an empty shard.
    """
    import datasets
    import PIL.Image

    root.mkdir(parents=True, exist_ok=True)
    card = ["---", "configs:"]
    for config, splits in shards.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, columns in splits.items():
            features = datasets.Features(
                {
                    name: datasets.Value("string") if values and isinstance(values[0], str) else datasets.Image()
                    for name, values in columns.items()
                }
            )
            values = {
                name: [PIL.Image.fromarray(v) if isinstance(v, np.ndarray) else v for v in column]
                for name, column in columns.items()
            }
            path = root / "data" / config / f"{split}-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_dict(values, features=features).to_parquet(str(path))
            card += [f"  - split: {split}", f"    path: data/{config}/{split}-*.parquet"]
    card += ["---", "", "# A tiny dataset shaped like the lung-diffusers recipe's (tests only)", ""]
    (root / "README.md").write_text("\n".join(card))
    return root


# What a training checkpoint holds (accelerate's state, and the model and EMA weights in diffusers format).
CHECKPOINT_FILES = {
    "training_state.json",
    "optimizer.bin",
    "scheduler.bin",
    "random_states_0.pkl",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet_ema/config.json",
    "unet_ema/diffusion_pytorch_model.safetensors",
}


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def assert_same_values(a, b, where: str) -> None:
    """Nested dicts / lists / tuples of tensors, arrays and plain values are identical."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same_values(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_values(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where}: tensors differ"
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a), load_file(b)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{a.parent.name}/{name} differs"


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Two checkpoints hold the same step, weights, EMA, optimizer, LR-scheduler and RNG states."""
    assert CHECKPOINT_FILES <= files_of(a) and CHECKPOINT_FILES <= files_of(b)
    assert json.loads((a / "training_state.json").read_text())["global_step"] == json.loads(
        (b / "training_state.json").read_text()
    )["global_step"]
    for weights in ("unet", "unet_ema"):
        assert_same_weights(a / weights / "diffusion_pytorch_model.safetensors", b / weights / "diffusion_pytorch_model.safetensors")
    # EMA bookkeeping (decay, optimization_step, warm-up) is stored in the EMA config.
    assert json.loads((a / "unet_ema" / "config.json").read_text()) == json.loads((b / "unet_ema" / "config.json").read_text())
    for state in ("optimizer.bin", "scheduler.bin"):
        assert_same_values(torch.load(a / state, weights_only=True), torch.load(b / state, weights_only=True), state)
    # accelerate pickles the Python, NumPy and torch RNG states (and its step counter): our own files.
    assert_same_values(
        torch.load(a / "random_states_0.pkl", weights_only=False),
        torch.load(b / "random_states_0.pkl", weights_only=False),
        "random_states",
    )
