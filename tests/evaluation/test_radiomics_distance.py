"""Fréchet Radiomics Distance (lung_diffusers.evaluation.radiomics_distance): equal to frd-score's own number, and
ordered as it should be on real CT slices (the shared LIDC-IDRI sample) at 64 px."""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np
import pytest
from scipy import ndimage

from lung_diffusers.ct.volumes import read_ct_volume
from lung_diffusers.ct.window import image_from_hu
from lung_diffusers.evaluation.cascade_metrics import area_downsample
from lung_diffusers.evaluation.radiomics_distance import (
    RadiomicsFeatures,
    radiomics_distance,
    radiomics_features,
)

# Two patients of the shared sample (shared/data/README.md); six slices each between 35% and 80% of the scan's
# height (through the lungs), windowed and area-averaged from 512 to 64 px. Radiomics cost ~0.2 s a slice.
SERIES = {
    "LIDC-IDRI-0001": "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192",
    "LIDC-IDRI-0003": "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264",
}
SLICES, SIZE = 6, 64


@pytest.fixture(scope="module")
def patients(shared_dir) -> dict[str, np.ndarray]:
    """Window images in [0, 1], ``(SLICES, SIZE, SIZE)``, of each patient."""
    stacks = {}
    for patient, uid in SERIES.items():
        hu = read_ct_volume(shared_dir / "data" / "lidc-mini" / "subset0" / f"{uid}.mhd").hu
        rows = np.linspace(0.35 * len(hu), 0.8 * len(hu), SLICES).astype(int)
        stacks[patient] = np.stack([area_downsample(image_from_hu(hu[z]), SIZE) for z in rows]).astype(np.float32)
    return stacks


def test_library_value_is_frd_scores_own_on_the_same_slices_as_pngs(patients, tmp_path):
    """Four slices a patient (frd's own extraction runs in a worker process: kept short). The reference goes in as
    window images, the other patient as uint8 grey levels in two worker processes: all must give what frd reads
    from the PNGs."""
    import frd_score
    from frd_score import compute_frd

    grey = {
        patient: (images[:4] * 255).round().astype(np.uint8) for patient, images in patients.items()
    }  # as synthesize
    for patient, images in grey.items():
        (tmp_path / patient).mkdir()
        for index, image in enumerate(images):
            cv2.imwrite(str(tmp_path / patient / f"{index:02d}.png"), image)
    own = compute_frd([str(tmp_path / patient) for patient in SERIES], num_workers=1)  # v1, log; first = reference

    reference = radiomics_features(patients["LIDC-IDRI-0001"][:4], progress=False)
    other = radiomics_features(grey["LIDC-IDRI-0003"], num_workers=2, progress=False)  # and the worker pool
    ours = radiomics_distance(reference, other)
    assert ours.library == pytest.approx(own, rel=1e-9, abs=1e-9)
    assert ours.version == frd_score.__version__ and ours.form == "v1, log"
    assert reference.values.shape == (4, 398)  # frd v1's 2-D feature vector, numeric diagnostics included
    assert "wavelet-LH_firstorder_Median" in reference.names


def test_identical_sets_give_minus_infinity_and_degraded_slices_score_worse_than_another_patient(patients):
    other = patients["LIDC-IDRI-0003"]
    noise = np.random.default_rng(0).normal(0.0, 0.05, other.shape)
    reference, other, noisy, blurred = (
        radiomics_features(images, progress=False)
        for images in (
            patients["LIDC-IDRI-0001"],
            other,
            np.clip(other + noise, 0.0, 1.0),
            np.stack([ndimage.gaussian_filter(image, 1.0) for image in other]),
        )
    )
    same = radiomics_distance(reference, reference)
    assert same.library == -math.inf and same.guarded == -math.inf  # log(d² = 0): the minimum
    floor, noise, blur = (radiomics_distance(reference, other_set) for other_set in (other, noisy, blurred))
    assert math.isfinite(floor.library)
    for value in ("library", "guarded"):
        # Measured: another patient 8.1, noise 11.9, blur 10.8 (6 slices each).
        assert getattr(noise, value) > getattr(floor, value) + 2
        assert getattr(blur, value) > getattr(floor, value) + 1.5


def test_guarded_drops_features_that_are_constant_up_to_rounding_in_the_reference():
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "rounding", "constant"]
    real = np.column_stack([rng.normal(size=(30, 3)), 1e-15 + 1e-17 * rng.normal(size=30), np.full(30, 7.0)])
    synthetic = np.column_stack([rng.normal(0.3, 1.0, (30, 3)), rng.normal(0.0, 0.5, 30), np.full(30, 9.0)])
    distance = radiomics_distance(RadiomicsFeatures(real, names), RadiomicsFeatures(synthetic, names))
    # frd z-scores "rounding" by its 1e-17 spread: it dominates frd's own value (log d² ~ 2 x log(1e16)).
    assert distance.library > 60
    # The guard leaves it out: the distance on the three real features. frd drops "constant" itself (std 0).
    three = radiomics_distance(
        RadiomicsFeatures(real[:, :3], names[:3]), RadiomicsFeatures(synthetic[:, :3], names[:3])
    )
    assert distance.guarded == pytest.approx(three.library) and distance.guarded < 2
    assert distance.dropped == ["rounding"]


def test_bad_inputs_get_one_line_errors():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        radiomics_features(np.zeros((8, 8)), progress=False)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        radiomics_features(np.full((1, 8, 8), 1.5), progress=False)
    with pytest.raises(ValueError, match="dtype int16"):
        radiomics_features(np.zeros((1, 8, 8), np.int16), progress=False)
    one = RadiomicsFeatures(np.zeros((1, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="at least 2 images"):
        radiomics_distance(one, RadiomicsFeatures(np.zeros((3, 2)), ["a", "b"]))
    with pytest.raises(ValueError, match="same features"):
        radiomics_distance(one, RadiomicsFeatures(np.zeros((3, 2)), ["a", "c"]))
    flat = RadiomicsFeatures(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="constant over the real images"):
        radiomics_distance(flat, flat)


def test_a_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "frd_score", None)
    with pytest.raises(ImportError, match=r"lung-diffusers\[eval\]"):
        radiomics_features(np.zeros((1, 8, 8)), progress=False)
