"""Helpers of the synthesis tests: a tiny random checkpoint, a tiny recipe-shaped mask dataset, runs in and out of
process. (Its own module name, not ``conftest``, so test modules can import it.)

Everything is tiny (32-px U-Net with widths 32/32, 64-px phantom masks, 4 sampling steps) and runs on one torch
thread, so runs take seconds and are comparable bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
STORED_SIZE = 64  # the masks' stored side; the tiny model works at 32, so masks are resized as in real use
PIXEL_MM = 2.0  # stored pixel size: 4 mm per model pixel
NODULE_DIAMETERS_MM = (6.0, 14.0)


def tiny_checkpoint(folder: Path, num_classes: int = 6, seed: int = 0) -> Path:
    """A random 32-px LungSDMPipeline saved to ``folder`` (its output is noise: only the plumbing is tested)."""
    import torch
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel

    torch.manual_seed(seed)
    unet = SemanticUNet2DModel(
        sample_size=32,
        num_classes=num_classes,
        block_out_channels=(32, 32),
        layers_per_block=1,
        attention_downsample_factors=(2,),
        attention_head_dim=16,
        spade_hidden_channels=8,
    ).eval()
    LungSDMPipeline(unet=unet, scheduler=DDPMScheduler(variance_type="learned_range")).save_pretrained(folder)
    return folder


def phantom_label_map(size: int, rng: np.random.Generator, nodule_label: int | None = None) -> np.ndarray:
    """A chest-like label map with the recipe's classes; lung sizes vary per draw, so masks differ."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    right, left = rng.uniform(0.11, 0.16), rng.uniform(0.09, 0.13)
    mask = np.zeros((size, size), np.uint8)
    mask[((rows - 0.5) / 0.42) ** 2 + ((cols - 0.5) / 0.46) ** 2 < 1] = 1
    mask[((rows - 0.5) / 0.28) ** 2 + ((cols - 0.30) / right) ** 2 < 1] = 3
    mask[((rows - 0.5) / 0.22) ** 2 + ((cols - 0.70) / left) ** 2 < 1] = 2
    mask[((rows - 0.22) / 0.05) ** 2 + ((cols - 0.5) / 0.05) ** 2 < 1] = 4
    if nodule_label is not None:
        mask[((rows - 0.5) / 0.08) ** 2 + ((cols - 0.70) / 0.06) ** 2 < 1] = nodule_label
    return mask


def recipe_rows(count: int, config: str, split: str, seed: int) -> list[dict]:
    """Rows with the data recipe's columns (``lung_diffusers.data.dataset_layout.FEATURES``)."""
    import cv2

    rng = np.random.default_rng(seed)
    nodule_label = {"healthy": None, "nodule": 5, "malignancy": 6}[config]
    rows = []
    for k in range(count):
        mask = phantom_label_map(STORED_SIZE, rng, nodule_label)
        image = np.clip(np.array([0, 150, 25, 25, 5, 170, 190])[mask] + rng.normal(0, 12, mask.shape), 0, 255)
        diameter = NODULE_DIAMETERS_MM[k % 2]
        nodules = [] if nodule_label is None else [
            {"center_mm": [0.0, 0.0, 0.0], "center_px": [32.0, 44.8], "diameter_mm": diameter,
             "drawn_diameter_mm": diameter, "malignancy": 4.0 if nodule_label == 6 else None}
        ]
        rows.append({
            "image": {"bytes": cv2.imencode(".png", image.astype(np.uint8))[1].tobytes(), "path": None},
            "mask": {"bytes": cv2.imencode(".png", mask)[1].tobytes(), "path": None},
            "seriesuid": f"1.2.3.{split}.{seed}",
            "patient_id": f"PHANTOM-{split}-{seed}",
            "slice_index": 10 * k,
            "slice_z_mm": -100.0 + 10 * k,
            "has_nodule": bool(nodules),
            "nodules": nodules,
            "spacing": {"pixel_mm": [PIXEL_MM, PIXEL_MM], "original_mm": [0.5, 0.5, 2.5]},
            "hu_window": [-1000.0, 400.0],
            "split": split,
            "lung_mask_source": "hu-threshold",
        })
    return rows


def write_mask_dataset(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """A folder laid out as the data recipe writes it: ``counts[config][split]`` phantom rows per shard."""
    import datasets

    from lung_diffusers.data.dataset_layout import FEATURES

    card = ["---", "configs:"]
    for c, (config, splits) in enumerate(counts.items()):
        card += [f"- config_name: {config}", *(["  default: true"] if c == 0 else []), "  data_files:"]
        for s, (split, count) in enumerate(splits.items()):
            path = root / "data" / config / f"{split}-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = recipe_rows(count, config, split, seed=100 * c + s)
            datasets.Dataset.from_list(rows, features=FEATURES).to_parquet(str(path))
            card += [f"  - split: {split}", f"    path: data/{config}/{split}-*.parquet"]
    card += ["---", "", "# Phantom masks shaped like the lung-diffusers recipe's (tests only; not LIDC-IDRI)", ""]
    (root / "README.md").write_text("\n".join(card))
    return root


def synthesize_argv(checkpoint: Path, masks: str, output: Path, cache: Path, **options) -> list[str]:
    """``lung-diffusers synthesize`` arguments of the tests' standard run, with ``options`` overriding."""
    values = {
        "--pipeline": checkpoint, "--masks": masks, "--num-images": 10, "--batch-size": 4, "--steps": 4,
        "--seed": 3, "--nodule-fraction": 0.5, "--output": output, "--cache-dir": cache,
    }
    values.update({f"--{k.replace('_', '-')}": v for k, v in options.items()})
    return ["synthesize", *(str(x) for k, v in values.items() if v is not None for x in (k, v))]


def run_in_process(argv: list[str]):
    """``lung-diffusers`` in this process, as a fresh process would run it (accelerate state and threads restored)."""
    import torch
    from accelerate.state import AcceleratorState, GradientState

    from lung_diffusers.cli import build_parser
    from lung_diffusers.synthesis.commands import request_from_args
    from lung_diffusers.synthesis.runner import synthesize

    threads = torch.get_num_threads()
    try:
        return synthesize(request_from_args(build_parser().parse_args(argv)), log=lambda message: None)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        torch.set_num_threads(threads)


def subprocess_env(cache: Path) -> dict[str, str]:
    """Offline, one thread, this checkout's package first, a private datasets cache."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["HF_DATASETS_CACHE"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_torchrun(argv: list[str], cache: Path, processes: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m lung_diffusers.cli ...`` (a free rendezvous port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "lung_diffusers.cli", *argv]
    return subprocess.run(command, env=subprocess_env(cache), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def rows_of(folder: Path) -> list[dict]:
    """All rows of a synthetic dataset folder's ``data/`` files, raw (PNG bytes), in file order."""
    import pyarrow.parquet as pq

    return [row for path in sorted((folder / "data").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


# Runs a synthesis in a subprocess and SIGKILLs it in the middle of writing the shard of batch ``KILL_AT``: the
# batch's parquet is fully written to its staging file, the rename into place never happens.
KILLED_RUN = """
import os, signal, sys
import datasets
from lung_diffusers.cli import main

KILL_AT = int(sys.argv[1])
shards = []
original = datasets.Dataset.to_parquet

def to_parquet_then_die(self, path, *args, **kwargs):
    written = original(self, path, *args, **kwargs)
    shards.append(path)
    if len(shards) > KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return written

datasets.Dataset.to_parquet = to_parquet_then_die
main(sys.argv[2:])
"""


def run_killed(argv: list[str], cache: Path, kill_at: int, timeout: int = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", KILLED_RUN, str(kill_at), *argv]
    return subprocess.run(command, env=subprocess_env(cache), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
