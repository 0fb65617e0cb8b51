"""Helpers of the training tests: train_sdm.py's tiny options, the training loop run in-process, checkpoints
compared. (The tiny datasets come from ``lung_support``.)

Runs use tiny U-Nets (widths 32, 32; 16-32 px; batch 2) on one thread, so that they take seconds and two
runs of the same settings are bit-identical on CPU. (A module with its own name, not ``conftest``, so test
modules can import it: pytest puts this folder on ``sys.path``.)
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lung_support import REPO_ROOT, one_thread, reset_accelerate
from safetensors.torch import load_file

TRAIN_SDM = REPO_ROOT / "training" / "train_sdm.py"
TRAIN_DDPM = REPO_ROOT / "training" / "train_ddpm.py"

# The options every tiny run shares: lung_support.TINY_SDM's shape as flags (the dataset, output folder and step
# counts are added per test).
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


def run_training(module, argv: Sequence, model: str = "sdm") -> Path:
    """``main(parse_args(argv))`` in this process on one thread; returns the final pipeline folder."""
    args = module.parse_args([str(a) for a in argv], model)
    try:
        with one_thread():
            return module.main(args)
    finally:
        reset_accelerate()


def kill_in_the_middle_of_a_step(argv: Sequence, pause_at: int, marker: Path) -> None:
    """Run ``training/train_sdm.py argv`` in a child process and SIGKILL it inside the loss of its ``pause_at``-th
    micro-batch: after the gradients of the micro-batches before it, before that step's optimizer update.

    The child is a fork of this process, so it starts with torch and diffusers imported (a fresh interpreter
    spends most of such a test importing them); it runs the script itself, as ``python training/train_sdm.py``
    does, on one thread, and writes ``marker`` when it pauses.
    """
    log = marker.with_name(marker.name + ".log")
    pid = os.fork()
    if pid == 0:
        try:
            # Its output to the log, also at the descriptors (under xdist the worker's talk to the controller).
            output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(output, 1)
            os.dup2(output, 2)
            sys.stdout = sys.stderr = open(output, "w", buffering=1, closefd=False)  # noqa: SIM115 (ends in os._exit)
            _run_pausing(argv, pause_at, marker)
        except BaseException:  # noqa: BLE001 (the child must never return into pytest)
            traceback.print_exc()
        finally:
            os._exit(1)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), f"the run ended before micro-batch {pause_at}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the run did not reach micro-batch {pause_at}"
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        pid = None
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _run_pausing(argv: Sequence, pause_at: int, marker: Path) -> None:
    from lung_diffusers.training import diffusion_loss

    original, calls = diffusion_loss.HybridDiffusionLoss.__call__, []

    def pausing(self, *args, **kwargs):
        losses = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == pause_at:
            marker.write_text("paused in the middle of a step")
            time.sleep(600)
        return losses

    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    torch.set_num_threads(1)
    reset_accelerate()
    diffusion_loss.HybridDiffusionLoss.__call__ = pausing
    sys.argv = [str(TRAIN_SDM), *map(str, argv)]
    runpy.run_path(str(TRAIN_SDM), run_name="__main__")  # the script itself, as `python training/train_sdm.py` runs it


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
