"""Training checkpoints: written atomically, rotated, and found again for ``--resume_from_checkpoint``.

A checkpoint is ``<output_dir>/checkpoint-<step>/``: accelerate's state (optimizer, LR scheduler, RNG)
plus the model and EMA weights in diffusers format, saved by the script's accelerate hooks, and
``training_state.json`` (the step and the wall time spent so far). It is written to a hidden staging
folder and renamed into place, so a run killed while saving leaves the previous checkpoints and no
half-written one; a folder named ``checkpoint-<step>`` is always complete.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))


def checkpoint_state(path: str | Path) -> dict:
    """What ``training_state.json`` of a checkpoint holds: ``global_step`` and ``wall_time_s`` (seconds so far)."""
    path = Path(path)
    state = path / STATE_FILE
    if not state.is_file():
        raise ValueError(f"{path} is not a training checkpoint of this script ({STATE_FILE} is missing)")
    return json.loads(state.read_text())


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a checkpoint was saved at."""
    return int(checkpoint_state(path)["global_step"])


def resolve_checkpoint(output_dir: str | Path, resume_from: str | None) -> Path | None:
    """``"latest"`` -> the newest checkpoint in ``output_dir`` (None on a fresh start); a path -> that checkpoint."""
    if resume_from is None:
        return None
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            return None
        path = found[-1]
    else:
        path = Path(resume_from)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume_from_checkpoint {resume_from}: no such checkpoint folder")
    checkpoint_step(path)  # validates it
    return path


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | Path,
    global_step: int,
    total_limit: int | None,
    wall_time_s: float | None = None,
) -> Path:
    """Save the accelerate state as ``checkpoint-<global_step>`` atomically, then drop the oldest beyond ``total_limit``.

    Call it on every process (accelerate saves per-process RNG states); only the main process moves folders.
    ``wall_time_s``: training time so far, summed over resumed runs (for the model card).
    """
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{global_step}"
    staging = output_dir / f".checkpoint-{global_step}.tmp"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"global_step": global_step}
        if wall_time_s is not None:
            state["wall_time_s"] = round(wall_time_s, 3)
        (staging / STATE_FILE).write_text(json.dumps(state) + "\n")
        if final.exists():
            # Saving again at a step a resumed run already reached: move the old one aside before deleting it,
            # so that a kill never leaves a half-deleted checkpoint-<step>.
            replaced = output_dir / f".checkpoint-{global_step}.old"
            if replaced.exists():
                shutil.rmtree(replaced)
            final.rename(replaced)
            staging.rename(final)
            shutil.rmtree(replaced)
        else:
            staging.rename(final)
        if total_limit is not None:
            # By step, but never the one just saved (a run resumed from an older checkpoint saves below newer ones).
            for old in [p for p in list_checkpoints(output_dir) if p != final][: -(total_limit - 1) or None]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final
