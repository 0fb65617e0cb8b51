"""Fixtures of the training tests: the training loop, tiny and real datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from lung_support import LIDC_0003_SERIES, phantom_rows, write_slice_dataset


@pytest.fixture(scope="session")
def train_sdm():
    """What ``training/train_sdm.py`` runs: ``parse_args``, ``main``, ``cli``, and the ``build_model`` it calls."""
    from lung_diffusers.training import sdm_training

    return sdm_training


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory) -> Path:
    """Healthy and nodule configs of 32-px phantoms: 6 + 2 training slices, 2 + 1 test slices."""
    return write_slice_dataset(
        tmp_path_factory.mktemp("phantom") / "slices",
        {
            "healthy": {"train": phantom_rows(6, seed=1), "test": phantom_rows(2, seed=2)},
            "nodule": {"train": phantom_rows(2, seed=3, nodule_label=5), "test": phantom_rows(1, seed=4, nodule_label=5)},
        },
    )


@pytest.fixture(scope="session")
def real_mini_dataset(built_once, shared_dir) -> Path:
    """The data recipe run on one real scan (LIDC-IDRI-0003 at 32 px, all three configs): a train split only."""
    from lung_diffusers.data import prepare_luna16_dataset

    lidc_mini = shared_dir / "data" / "lidc-mini"
    if not (lidc_mini / "subset0").is_dir():
        pytest.fail(f"LUNA16 sample not found at {lidc_mini}; see shared/data/README.md")

    def build(folder: Path) -> None:
        prepare_luna16_dataset(
            lidc_mini,
            folder / "luna16-mini-0003",
            image_size=32,
            malignancy=True,
            healthy_stride=16,
            series_uids=[LIDC_0003_SERIES],
            log=lambda message: None,
        )

    return built_once("real-mini-dataset", build) / "luna16-mini-0003"
