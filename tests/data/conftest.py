"""Fixtures for the data-recipe tests: the real LIDC-IDRI / LUNA16 sample and one prepared dataset."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PREPARE_SCRIPT = REPO_ROOT / "dataset_scripts" / "prepare_luna16.py"

# The three sample series (see shared/data/README.md).
SAMPLE_SERIES = {
    "LIDC-IDRI-0001": "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192",
    "LIDC-IDRI-0002": "1.3.6.1.4.1.14519.5.2.1.6279.6001.619372068417051974713149104919",
    "LIDC-IDRI-0003": "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264",
}


@pytest.fixture(scope="session")
def sample_series() -> dict[str, str]:
    """SeriesInstanceUID of each sample patient."""
    return dict(SAMPLE_SERIES)


@pytest.fixture(scope="session")
def lidc_mini(shared_dir: Path) -> Path:
    root = shared_dir / "data" / "lidc-mini"
    if not (root / "subset0").is_dir():
        pytest.fail(f"LUNA16 sample not found at {root}; see shared/data/README.md")
    return root


def run_prepare_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run dataset_scripts/prepare_luna16.py in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, str(PREPARE_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


@pytest.fixture(scope="session")
def prepare_script() -> Path:
    """dataset_scripts/prepare_luna16.py of this checkout."""
    return PREPARE_SCRIPT


@pytest.fixture(scope="session")
def run_prepare():
    """Run dataset_scripts/prepare_luna16.py with the given arguments in a fresh interpreter."""
    return run_prepare_script


@pytest.fixture(scope="session")
def prepared_dataset(
    tmp_path_factory: pytest.TempPathFactory, lidc_mini: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    """The sample prepared once per session: default settings plus the malignancy config, two workers."""
    output = tmp_path_factory.mktemp("prepared") / "luna16-slices"
    result = run_prepare_script(
        "--luna16-root", str(lidc_mini), "--output", str(output), "--malignancy", "--num-workers", "2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


@pytest.fixture(scope="session")
def datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A private datasets cache, so tests never read or fill the user's."""
    return str(tmp_path_factory.mktemp("hf-datasets-cache"))
