"""Helpers of the synthesis tests: the mask dataset with all of the recipe's columns, runs in and out of process.
(Its own module name, not ``conftest``, so test modules can import it.) The tiny models and the phantoms come from
``lung_support``.

Everything is tiny (32-px U-Net with widths 32/32, 64-px phantom masks, 4 sampling steps) and runs on one torch
thread, so runs take seconds and are comparable bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from lung_support import (
    REPO_ROOT,
    phantom_image,
    phantom_label_map,
    reset_accelerate,
    subprocess_env,
    write_slice_dataset,
)

STORED_SIZE = 64  # the side of write_mask_dataset's masks
PIXEL_MM = 2.0  # their pixel size
NODULE_DIAMETERS_MM = (6.0, 14.0)  # their nodules' diameters, alternately


def recipe_rows(count: int, config: str, split: str, seed: int) -> list[dict]:
    """Rows with all of the data recipe's columns (``lung_diffusers.data.dataset_layout.FEATURES``); the lungs'
    sizes vary per row, so the masks differ."""
    import cv2

    rng = np.random.default_rng(seed)
    nodule_label = {"healthy": None, "nodule": 5, "malignancy": 6}[config]
    rows = []
    for k in range(count):
        mask = phantom_label_map(STORED_SIZE, nodule_label, lung_widths=(rng.uniform(0.11, 0.16), rng.uniform(0.09, 0.13)))
        diameter = NODULE_DIAMETERS_MM[k % 2]
        nodules = [] if nodule_label is None else [
            {"center_mm": [0.0, 0.0, 0.0], "center_px": [32.0, 44.8], "diameter_mm": diameter,
             "drawn_diameter_mm": diameter, "malignancy": 4.0 if nodule_label == 6 else None}
        ]
        rows.append({
            "image": {"bytes": cv2.imencode(".png", phantom_image(mask, rng))[1].tobytes(), "path": None},
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
        })  # fmt: skip
    return rows


def write_mask_dataset(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """A folder laid out as the data recipe writes it, with all its columns: ``counts[config][split]`` phantom rows
    per shard; the first config is the default."""
    from lung_diffusers.data.dataset_layout import FEATURES

    shards = {
        config: {split: recipe_rows(count, config, split, seed=100 * c + s) for s, (split, count) in enumerate(splits.items())}
        for c, (config, splits) in enumerate(counts.items())
    }
    return write_slice_dataset(root, shards, FEATURES, default_config=next(iter(counts)))


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

    from lung_diffusers.cli import build_parser
    from lung_diffusers.synthesis.commands import request_from_args
    from lung_diffusers.synthesis.runner import synthesize

    threads = torch.get_num_threads()
    try:
        return synthesize(request_from_args(build_parser().parse_args(argv)), log=lambda message: None)
    finally:
        reset_accelerate()
        torch.set_num_threads(threads)


def run_torchrun(argv: list[str], cache: Path, processes: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m lung_diffusers.cli ...`` (a free rendezvous port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "lung_diffusers.cli", *argv]
    return subprocess.run(command, env=subprocess_env(datasets_cache=cache), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


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
    return subprocess.run(command, env=subprocess_env(datasets_cache=cache), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
