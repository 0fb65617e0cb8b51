"""Fixtures of the synthesis tests: tiny checkpoints and mask dataset, and the runs several tests read.

Under pytest-xdist the workers share what is built (``built_once``, tests/conftest.py), so each run happens once
per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from lung_support import save_tiny_sdm_pipeline
from synthesis_support import run_in_process, run_torchrun, synthesize_argv, write_mask_dataset


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
def inputs(built_once) -> SynthesisInputs:
    def build(folder: Path) -> None:
        save_tiny_sdm_pipeline(folder / "sdm-6")
        save_tiny_sdm_pipeline(folder / "sdm-7", num_classes=7)
        write_mask_dataset(
            folder / "masks",
            {"healthy": {"train": 6, "test": 2}, "nodule": {"train": 2, "test": 1}, "malignancy": {"train": 2}},
        )
        (folder / "cache").mkdir()

    root = built_once("inputs", build)
    return SynthesisInputs(root / "sdm-6", root / "sdm-7", root / "masks", root / "cache")


@pytest.fixture(scope="session")
def reference_run(built_once, inputs) -> Path:
    """The standard run (10 images in batches of 4, half with a placed nodule), in one process."""
    return built_once("reference", lambda folder: run_in_process(inputs.argv(folder / "out"))) / "out"


@dataclass(frozen=True)
class TorchrunRun:
    output: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def two_process_run(built_once, inputs) -> TorchrunRun:
    """The standard run on 2 CPU processes: ``torchrun`` starts them, accelerate coordinates them."""

    def build(folder: Path) -> None:
        done = run_torchrun(inputs.argv(folder / "out"), inputs.cache)
        (folder / "stdout.txt").write_text(done.stdout)
        (folder / "stderr.txt").write_text(done.stderr)
        assert done.returncode == 0, done.stderr[-3000:]

    folder = built_once("two-processes", build)
    return TorchrunRun(folder / "out", (folder / "stdout.txt").read_text(), (folder / "stderr.txt").read_text())
