import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests must never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared_root() -> Path:
    """The project's shared folder: ``../shared`` beside the repository, or ``$LUNG_DIFFUSERS_SHARED``."""
    return Path(os.environ.get("LUNG_DIFFUSERS_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if not root.is_dir():
        pytest.fail(
            f"shared data folder not found at {root}; put it beside the repository or set LUNG_DIFFUSERS_SHARED"
        )
    return root
