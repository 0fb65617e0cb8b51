"""Checkpoint folders: found by step, written atomically, rotated without losing the one just saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lung_diffusers.training.checkpoints import (
    checkpoint_state,
    list_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)


class FakeAccelerator:
    """What save_checkpoint uses of accelerate: one process whose state is a single file."""

    is_main_process = True

    def __init__(self, content: str = "state"):
        self.content = content

    def wait_for_everyone(self) -> None:
        pass

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "optimizer.bin").write_text(self.content)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_latest_is_the_highest_complete_step_not_a_staging_folder(tmp_path):
    for step in (2, 10, 9):
        save_checkpoint(FakeAccelerator(), tmp_path, step, None)
    for leftover in (".checkpoint-11.tmp", ".checkpoint-12.old", "checkpoint-13-copy", "checkpoint-x"):
        (tmp_path / leftover).mkdir()
    assert resolve_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-10"  # by number: 10 > 9 > 2
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-9", "checkpoint-10"]
    assert resolve_checkpoint(tmp_path / "empty", "latest") is None
    assert resolve_checkpoint(tmp_path, None) is None


def test_an_explicit_checkpoint_must_be_one(tmp_path):
    save_checkpoint(FakeAccelerator(), tmp_path, 3, None, wall_time_s=12.5)
    assert resolve_checkpoint(tmp_path, str(tmp_path / "checkpoint-3")) == tmp_path / "checkpoint-3"
    assert checkpoint_state(tmp_path / "checkpoint-3") == {"global_step": 3, "wall_time_s": 12.5}
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        resolve_checkpoint(tmp_path, str(tmp_path / "checkpoint-4"))
    (tmp_path / "checkpoint-7").mkdir()  # e.g. copied from another script
    with pytest.raises(ValueError, match="checkpoint-7 is not a training checkpoint of this script"):
        resolve_checkpoint(tmp_path, "latest")


def test_the_limit_keeps_the_newest_and_never_the_half_written(tmp_path):
    for step in range(1, 6):
        save_checkpoint(FakeAccelerator(), tmp_path, step, 2)
    assert names(tmp_path) == ["checkpoint-4", "checkpoint-5"]


def test_saving_a_step_again_replaces_the_whole_folder(tmp_path):
    save_checkpoint(FakeAccelerator("old"), tmp_path, 4, None)
    (tmp_path / "checkpoint-4" / "stale.bin").write_text("from the first save")
    (tmp_path / ".checkpoint-4.tmp").mkdir()  # left by a kill while saving
    (tmp_path / ".checkpoint-4.tmp" / "half.bin").write_text("half")
    save_checkpoint(FakeAccelerator("new"), tmp_path, 4, None)
    assert names(tmp_path) == ["checkpoint-4"]
    assert names(tmp_path / "checkpoint-4") == ["optimizer.bin", "training_state.json"]
    assert (tmp_path / "checkpoint-4" / "optimizer.bin").read_text() == "new"


def test_a_run_resumed_from_an_older_checkpoint_keeps_what_it_saves(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(FakeAccelerator(), tmp_path, step, None)
    # Resumed from checkpoint-2 with a limit of 2: its checkpoint-3 must survive the rotation.
    save_checkpoint(FakeAccelerator(), tmp_path, 3, 2)
    assert names(tmp_path) == ["checkpoint-3", "checkpoint-6"]
    assert json.loads((tmp_path / "checkpoint-3" / "training_state.json").read_text())["global_step"] == 3
