"""Diversity across seeds (issue 18, part 2) on known cases: real slices of the shared LIDC sample at 64 px.

The reference is real slices 2.5 mm apart (LIDC-IDRI-0003 has 2.5-mm slices: 59 pairs, median MS-SSIM ~0.994).
"""

import json

import numpy as np
import PIL.Image
import pytest
from real_slices_support import LIDC_0001_SERIES, LIDC_0003_SERIES, real_slices

from lung_diffusers.evaluation import diversity
from lung_diffusers.evaluation.diversity import (
    IDENTICAL_MS_SSIM,
    diversity_figure,
    diversity_summary,
    mean_pairwise_ms_ssim,
    ms_ssim_settings,
    neighbour_pairs,
    real_neighbour_similarity,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scan(shared_dir):
    return real_slices(shared_dir, LIDC_0003_SERIES)


@pytest.fixture(scope="module")
def reference(scan):
    images, z_mm = scan
    return real_neighbour_similarity(images, z_mm, ["LIDC-IDRI-0003"] * len(images))


def test_settings_follow_the_image_size_and_torchmetrics_accepts_them():
    small = ms_ssim_settings(64, 64)
    assert small["kernel_size"] == 5 and len(small["betas"]) == 4
    assert sum(small["betas"]) == pytest.approx(1.0)
    assert ms_ssim_settings(256, 256) == {"kernel_size": 11, "betas": diversity.MS_SSIM_BETAS}
    # torchmetrics' own bound for its defaults is side // 16 > 10 (it says "over 160", integer division makes it 176)
    assert ms_ssim_settings(175, 175)["kernel_size"] == 5 and ms_ssim_settings(176, 176)["kernel_size"] == 11
    rng = np.random.default_rng(0)
    for side in (48, 64, 175, 176):  # the smallest and largest side of each setting
        images = rng.random((2, 1, side, side))
        assert np.isfinite(diversity.pair_ms_ssim(images[0], images[1])).all()
    with pytest.raises(ValueError, match="at least 48 px, got 47x47"):
        ms_ssim_settings(47, 47)


def test_kernel_size_only_passes_torchmetrics_size_check():
    """What ms_ssim_settings' docstring says: with the Gaussian window, kernel 5 and 7 give the same MS-SSIM."""
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    images = torch.from_numpy(np.random.default_rng(0).random((2, 1, 1, 64, 64)))
    betas = ms_ssim_settings(64, 64)["betas"]
    five, seven = (
        multiscale_structural_similarity_index_measure(*images, data_range=1.0, kernel_size=k, betas=betas)
        for k in (5, 7)
    )
    assert five.item() == seven.item()


def test_pairs_are_batched_and_identical_slices_score_one(scan, monkeypatch):
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    images = scan[0][[0, 10, 20]]
    one_by_one = [
        multiscale_structural_similarity_index_measure(
            torch.from_numpy(images[[i]][:, None]), torch.from_numpy(images[[j]][:, None]), data_range=1.0,
            **ms_ssim_settings(64, 64),
        ).item()
        for i, j in ((0, 1), (0, 2), (1, 2))
    ]  # fmt: skip
    assert mean_pairwise_ms_ssim(images) == pytest.approx(np.mean(one_by_one), abs=1e-6)
    monkeypatch.setattr(diversity, "PAIRS_PER_BATCH", 2)
    assert mean_pairwise_ms_ssim(images) == pytest.approx(np.mean(one_by_one), abs=1e-6)
    assert mean_pairwise_ms_ssim(np.stack([images[0]] * 3)) == pytest.approx(1.0, abs=1e-6)


def test_neighbour_pairs_take_the_slice_nearest_the_gap_within_one_scan():
    z = np.arange(6) * 1.25
    assert neighbour_pairs(z, ["a"] * 6).tolist() == [[0, 2], [1, 3], [2, 4], [3, 5]]
    z = np.arange(4) * 2.0  # 2 mm is within 0.5 mm of 2.5 mm; 4 mm is not
    assert neighbour_pairs(z, ["a"] * 4).tolist() == [[0, 1], [1, 2], [2, 3]]
    assert neighbour_pairs(np.arange(4) * 4.0, ["a"] * 4).size == 0
    # two scans at the same positions never pair across; a slice of unknown position is left out
    z, scans = np.array([0.0, 0.0, 2.5, 2.5, np.nan]), ["a", "b", "a", "b", "a"]
    assert neighbour_pairs(z, scans).tolist() == [[0, 2], [1, 3]]


def test_real_neighbours_are_alike_and_farther_slices_less(scan, reference):
    images, z_mm = scan
    assert reference.size == len(images) - 1  # 2.5-mm slices: every slice but the top one has its neighbour
    assert 0.95 < np.median(reference) < IDENTICAL_MS_SSIM and reference.max() < IDENTICAL_MS_SSIM
    ten_apart = real_neighbour_similarity(images, z_mm, ["x"] * len(images), gap_mm=25.0)
    assert np.median(ten_apart) < np.median(reference) - 0.1


def test_collapsed_sampler_is_flagged(scan, reference):
    images = scan[0]
    per_mask = {f"mask{k}": np.stack([images[k * 20]] * 4) for k in range(3)}  # the same image for every seed
    result = diversity_summary(per_mask, reference)
    assert result.collapsed
    assert result.flagged == result.identical == ["mask0", "mask1", "mask2"]
    assert all(score == pytest.approx(1.0, abs=1e-6) for score in result.per_mask.values())


def test_independent_seeds_pass_and_near_copies_are_flagged(shared_dir, scan, reference):
    images, other_patient = scan[0], real_slices(shared_dir, LIDC_0001_SERIES)[0]
    rng = np.random.default_rng(0)
    per_mask = {
        # seeds as different as slices 25 mm apart, or two patients
        "far_slices": images[[0, 10, 20, 30]],
        "two_patients": np.stack([images[20], other_patient[20], images[40], other_patient[10]]),
        # one slice with 0.015 of noise per seed: more alike than real neighbours, yet not identical
        "near_copies": np.clip(images[30] + rng.normal(0.0, 0.015, (4, 64, 64)), 0.0, 1.0),
    }
    result = diversity_summary(per_mask, reference)
    assert result.per_mask["far_slices"] < result.threshold and result.per_mask["two_patients"] < result.threshold
    assert result.threshold < result.per_mask["near_copies"] < IDENTICAL_MS_SSIM
    assert result.flagged == ["near_copies"] and result.identical == [] and not result.collapsed
    assert result.threshold == pytest.approx(np.median(reference))
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["masks"] == 3 and summary["pairs"] == 18 and summary["reference"]["pairs"] == reference.size
    assert summary["seeds_per_mask"] == {"min": 4, "max": 4}
    assert summary["flagged"] == ["near_copies"] and summary["flagged_fraction"] == pytest.approx(1 / 3)
    assert summary["collapsed"] is False and summary["ms_ssim_settings"]["kernel_size"] == 5


@pytest.mark.parametrize(
    "images, error, message",
    [
        (np.zeros((64, 64)), ValueError, r"shape \(slices, height, width\), got \(64, 64\)"),
        (np.zeros((1, 64, 64)), ValueError, "at least 2 slices, got 1"),
        (np.full((2, 64, 64), 255.0), ValueError, r"must lie in \[0, 1\].*got values in \[255, 255\]"),
        (np.full((2, 64, 64), np.nan), ValueError, "NaN or infinite"),
        (np.zeros((2, 64, 64), bool), TypeError, "numeric array"),
    ],
)
def test_bad_images_get_one_clear_error(images, error, message):
    with pytest.raises(error, match=message):
        mean_pairwise_ms_ssim(images)


def test_summary_rejects_mixed_sizes_and_an_empty_reference(scan, reference):
    two = scan[0][:2]
    with pytest.raises(ValueError, match="one size"):
        diversity_summary({"a": two, "b": np.zeros((2, 48, 48))}, reference)
    with pytest.raises(ValueError, match="at least one finite MS-SSIM"):
        diversity_summary({"a": two}, np.zeros(0))
    with pytest.raises(ValueError, match="per_mask is empty"):
        diversity_summary({}, reference)
    with pytest.raises(ValueError, match="one slice_z_mm per image"):
        real_neighbour_similarity(two, [0.0], ["a", "a"])


def test_figure_is_written_atomically_and_marked_synthetic(scan, tmp_path):
    images = scan[0]
    path = diversity_figure({"a": images[:3], "b": images[10:13], "c": images[20:23]}, tmp_path / "diversity.png",
                            max_masks=2, scores={"a": 0.5, "b": 0.6})  # fmt: skip
    with PIL.Image.open(path) as figure:
        assert figure.format == "PNG" and figure.text["synthetic"] == "true"
    assert [p.name for p in tmp_path.iterdir()] == ["diversity.png"]
