"""Memorisation (issue 18, part 3) on known cases: real slices of the shared LIDC sample at 64 px, LIDC-IDRI-0003 as
the training patient and LIDC-IDRI-0001 as the held-out one."""

import json

import numpy as np
import PIL.Image
import pytest
from real_slices_support import LIDC_0001_SERIES, LIDC_0003_SERIES, real_slices
from skimage.metrics import structural_similarity

from lung_diffusers.evaluation import memorisation
from lung_diffusers.evaluation.memorisation import closest_pairs_figure, memorisation_summary, nearest_training_slices


@pytest.fixture(scope="module")
def patients(shared_dir):
    return real_slices(shared_dir, LIDC_0003_SERIES)[0], real_slices(shared_dir, LIDC_0001_SERIES)[0]


def test_nearest_slices_match_a_brute_force_search_across_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    training, queries = rng.random((7, 16, 16)), rng.random((4, 16, 16))
    queries[1] = training[5]
    monkeypatch.setattr(memorisation, "TRAINING_CHUNK", 3)  # the best match can sit in any chunk
    matches = nearest_training_slices(queries, training)
    correlation = np.corrcoef(queries.reshape(4, -1), training.reshape(7, -1))[:4, 4:]
    np.testing.assert_array_equal(matches.index, correlation.argmax(axis=1))
    np.testing.assert_allclose(matches.correlation, correlation.max(axis=1), atol=1e-6)
    expected_ssim = [structural_similarity(q, training[i], data_range=1.0) for q, i in zip(queries, matches.index)]
    np.testing.assert_allclose(matches.ssim, expected_ssim)
    assert matches.index[1] == 5 and matches.correlation[1] == pytest.approx(1.0, abs=1e-6)


def test_copies_are_flagged_and_another_patient_is_not(patients):
    training, other_patient = patients
    rng = np.random.default_rng(0)
    synthetic = np.stack([
        training[10],  # an exact copy
        np.clip(training[30] + rng.normal(0.0, 0.05, training[30].shape), 0.0, 1.0),  # a noisy copy (~70 HU)
        other_patient[1],  # slices of the held-out patient that are not in the held-out set
        other_patient[21],
    ])  # fmt: skip
    result = memorisation_summary(synthetic, other_patient[0::2], training)
    assert result.flagged.tolist() == [0, 1]
    assert result.synthetic.index[:2].tolist() == [10, 30]
    assert result.synthetic.correlation[0] == pytest.approx(1.0, abs=1e-6)
    assert result.synthetic.ssim[0] == pytest.approx(1.0) and result.synthetic.correlation[1] > 0.96
    assert result.threshold == pytest.approx(result.heldout.correlation.max())
    assert result.synthetic.correlation[2:].max() < result.threshold < 0.9
    summary = json.loads(json.dumps(result.to_dict()))
    assert (summary["synthetic_slices"], summary["heldout_slices"], summary["training_slices"]) == (4, 20, 60)
    assert summary["flagged"] == 2 and summary["flagged_fraction"] == 0.5 and summary["flagged_indices"] == [0, 1]
    assert summary["synthetic_correlation"]["max"] == pytest.approx(1.0, abs=1e-6)


def test_a_constant_image_correlates_with_nothing(patients):
    matches = nearest_training_slices(np.full((1, 64, 64), 0.5), patients[0][:5])
    assert matches.correlation[0] == 0.0 and np.isfinite(matches.ssim).all()


@pytest.mark.parametrize(
    "queries, message",
    [
        (np.zeros((64, 64)), r"queries must have shape \(slices, height, width\)"),
        (np.zeros((1, 32, 32)), "must have one size"),
        (np.full((1, 64, 64), -0.5), r"queries must lie in \[0, 1\]"),
        (np.zeros((0, 64, 64)), "queries needs at least 1 slices, got 0"),
    ],
)
def test_bad_slices_get_one_clear_error(patients, queries, message):
    with pytest.raises(ValueError, match=message):
        nearest_training_slices(queries, patients[0][:3])


def test_closest_pairs_figure_is_written_atomically_and_marked_synthetic(patients, tmp_path):
    training = patients[0][:6]
    synthetic = np.stack([training[2], patients[1][0], patients[1][5]])
    matches = nearest_training_slices(synthetic, training)
    path = closest_pairs_figure(synthetic, training, matches, tmp_path / "closest.png", count=2, threshold=0.9)
    with PIL.Image.open(path) as figure:
        assert figure.format == "PNG" and figure.text["synthetic"] == "true"
    assert [p.name for p in tmp_path.iterdir()] == ["closest.png"]
    with pytest.raises(ValueError, match="matches are for 3 slices, synthetic has 2"):
        closest_pairs_figure(synthetic[:2], training, matches, tmp_path / "x.png")
