"""The fidelity figures of synthetic slices against their label maps (lung_diffusers.evaluation.fidelity), on arrays
with known answers."""

import math

import numpy as np
import pytest

from lung_diffusers.evaluation import fidelity


def chest_mask(size: int = 32) -> np.ndarray:
    """A 32x32 label map: body, two lungs, a trachea."""
    mask = np.zeros((size, size), np.uint8)
    mask[3:29, 2:30] = 1
    mask[7:25, 5:14] = 3
    mask[7:25, 18:27] = 2
    mask[4:7, 15:17] = 4
    return mask


def faithful_hu(mask: np.ndarray) -> np.ndarray:
    """-1000 HU in air (background, lungs, trachea), 40 HU in the body."""
    hu = np.full(mask.shape, -1000.0, np.float32)
    hu[mask == 1] = 40.0
    return hu


def test_lung_dice_perfect_inverted_and_undefined():
    mask = chest_mask()
    mask[mask == 4] = 1  # no trachea: air is exactly the lungs
    assert fidelity.lung_dice(faithful_hu(mask), mask) == 1.0

    inverted = np.where(np.isin(mask, (2, 3)), 40.0, -1000.0).astype(np.float32)
    assert fidelity.lung_dice(inverted, mask) == 0.0

    no_lung = np.where(mask > 0, 1, 0).astype(np.uint8)
    assert math.isnan(fidelity.lung_dice(faithful_hu(no_lung), no_lung))


def test_lung_dice_counts_air_in_the_body_only_and_trachea_against():
    mask = chest_mask()
    hu = faithful_hu(mask)
    lungs, trachea = np.isin(mask, (2, 3)).sum(), (mask == 4).sum()
    # Background air is outside the body: it does not count; trachea air does.
    assert fidelity.lung_dice(hu, mask) == pytest.approx(2 * lungs / (2 * lungs + trachea))
    hu[mask == 2] = -400.0  # above the -500 HU air threshold: the left lung is missed
    right = (mask == 3).sum()
    assert fidelity.lung_dice(hu, mask) == pytest.approx(2 * right / (lungs + right + trachea))


def test_medians_per_region_and_soft_tissue_margin():
    mask = chest_mask()
    hu = faithful_hu(mask)
    hu[mask == 0] = -990.0
    hu[mask == 3] = -850.0
    figures = fidelity.slice_fidelity(hu, mask, margin_px=3)
    assert figures["median_hu_lungs"] == -925.0  # 162 px at -1000 HU, 162 at -850
    assert figures["median_hu_soft_tissue"] == 40.0
    assert figures["median_hu_background"] == -990.0

    soft = fidelity.soft_tissue_mask(mask, margin_px=3)
    assert not soft[10, 15]  # body between the lungs, 2 px from the right one
    assert soft[27, 16]  # body below the lungs, 3 px down and 2 across from the nearest lung pixel: sqrt(13) > 3
    assert not (soft & (mask != 1)).any()
    assert fidelity.soft_tissue_margin_px(64) == 3 and fidelity.soft_tissue_margin_px(256) == 12
    assert fidelity.soft_tissue_margin_px(16) == 1

    empty = fidelity.region_masks(np.zeros((8, 8), np.uint8), 3)
    assert math.isnan(fidelity.median_hu(np.zeros((8, 8)), empty["lungs"]))


def test_hu_conversion_mid_chest_means_and_targets():
    assert fidelity.hu_from_model_range(np.array([-1.0, 0.0, 1.0]), (-1000, 400)).tolist() == [-1000.0, -300.0, 400.0]
    flags = fidelity.mid_chest([0, 50, 10, 40, 0, 30])
    assert flags.tolist() == [False, True, False, True, False, False]  # 2 of the 4 masks with lung
    assert fidelity.mean_over_images([1.0, math.nan, 0.5]) == (0.75, 2)
    assert math.isnan(fidelity.mean_over_images([math.nan])[0])

    good = {"dice": 0.9, "median_hu_lungs": -800.0, "median_hu_soft_tissue": 30.0, "median_hu_background": -1000.0}
    assert all(fidelity.targets_met(good, {"dice": 0.92}).values())
    assert not fidelity.targets_met(good, {"dice": 0.96})["lung_dice"]  # more than 0.05 below the real slices
    bad = {"dice": math.nan, "median_hu_lungs": -500.0, "median_hu_soft_tissue": -300.0, "median_hu_background": -700.0}
    assert not any(fidelity.targets_met(bad, {"dice": 0.9}).values())

