"""Fixtures of the synthesis tests: tiny checkpoints and mask dataset, and the runs several tests read.

Under pytest-xdist the workers share what is built (a file lock; the first builds, the others reuse it), so each
run happens once per session.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from synthesis_support import run_in_process, run_torchrun, synthesize_argv, tiny_checkpoint, write_mask_dataset


@pytest.fixture(scope="session")
def shared_build(tmp_path_factory):
    """``shared_build(name, build)``: the folder ``build(folder)`` fills, made once per session (all workers)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    root = root / "synthesis-built-once"
    root.mkdir(parents=True, exist_ok=True)

    def get(name: str, build) -> Path:
        folder, done = root / name, root / f"{name}.done"
        with FileLock(str(root / f"{name}.lock")):
            if not done.exists():
                if folder.exists():
                    shutil.rmtree(folder)  # a build that failed on another worker
                folder.mkdir()
                build(folder)
                done.touch()
        return folder

    return get


@dataclass(frozen=True)
class SynthesisInputs:
    checkpoint: Path  # 6 classes
    checkpoint_7: Path  # 7 classes (benign / malignant)
    masks: Path  # healthy (train 6, test 2), nodule (train 2, test 1), malignancy (train 2)
    cache: Path  # private datasets cache

    def argv(self, output: Path, masks: str | None = None, checkpoint: Path | None = None, **options) -> list[str]:
        masks = masks if masks is not None else f"{self.masks}:healthy"
        return synthesize_argv(checkpoint or self.checkpoint, masks, output, self.cache, **options)


@pytest.fixture(scope="session")
def inputs(shared_build) -> SynthesisInputs:
    def build(folder: Path) -> None:
        tiny_checkpoint(folder / "sdm-6")
        tiny_checkpoint(folder / "sdm-7", num_classes=7)
        write_mask_dataset(
            folder / "masks",
            {"healthy": {"train": 6, "test": 2}, "nodule": {"train": 2, "test": 1}, "malignancy": {"train": 2}},
        )
        (folder / "cache").mkdir()

    root = shared_build("inputs", build)
    return SynthesisInputs(root / "sdm-6", root / "sdm-7", root / "masks", root / "cache")


@pytest.fixture(scope="session")
def reference_run(shared_build, inputs) -> Path:
    """The standard run (10 images in batches of 4, half with a placed nodule), in one process."""
    return shared_build("reference", lambda folder: run_in_process(inputs.argv(folder / "out"))) / "out"


@dataclass(frozen=True)
class TorchrunRun:
    output: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def two_process_run(shared_build, inputs) -> TorchrunRun:
    """The standard run on 2 CPU processes: ``torchrun`` starts them, accelerate coordinates them."""

    def build(folder: Path) -> None:
        done = run_torchrun(inputs.argv(folder / "out"), inputs.cache)
        (folder / "stdout.txt").write_text(done.stdout)
        (folder / "stderr.txt").write_text(done.stderr)
        assert done.returncode == 0, done.stderr[-3000:]

    folder = shared_build("two-processes", build)
    return TorchrunRun(folder / "out", (folder / "stdout.txt").read_text(), (folder / "stderr.txt").read_text())
