"""High-frequency lung noise (issue 18, part 4): it rises with added noise, ignores a constant offset, and refuses
inputs it cannot measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lung_support import phantom_label_map
from scipy import ndimage

from lung_diffusers.evaluation.lung_noise import lung_high_frequency_noise, smoothing_sigma_px


def textured_chest(side=64, seed=0):
    """A phantom chest in HU: lungs at -850 with smooth texture, soft tissue at 40, air outside."""
    labels = phantom_label_map(side)
    rng = np.random.default_rng(seed)
    hu = np.select([np.isin(labels, (2, 3)), labels > 0], [-850.0, 40.0], -1000.0)
    return hu + ndimage.gaussian_filter(rng.normal(0, 80, labels.shape), 2.0), labels


def test_rises_monotonically_with_added_gaussian_noise():
    hu, labels = textured_chest()
    grain = np.random.default_rng(1).normal(0, 1, hu.shape)
    values = [lung_high_frequency_noise(hu + s * grain, labels) for s in (0, 5, 10, 20, 40, 80)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    # Mostly the added noise at the top: the residual of 1-px smoothing keeps most of white noise's spread.
    assert 0.6 * 80 < values[-1] < 80


def test_ignores_a_constant_offset_and_the_lung_wall():
    hu, labels = textured_chest()
    assert lung_high_frequency_noise(hu + 300.0, labels) == pytest.approx(lung_high_frequency_noise(hu, labels))
    # A flat slice scores ~0 although the lung wall is a 890-HU step: the border is left out.
    flat = np.select([np.isin(labels, (2, 3)), labels > 0], [-850.0, 40.0], -1000.0)
    assert lung_high_frequency_noise(flat, labels) < 10.0


def test_smoothing_scales_with_the_pixel_size_but_not_below_one_pixel():
    assert smoothing_sigma_px() == 1.0
    assert smoothing_sigma_px(5.5) == 1.0  # 64 px of a LIDC-IDRI slice
    assert smoothing_sigma_px(0.5) == pytest.approx(3.0)
    hu, labels = textured_chest(128)
    # Finer pixels: a wider Gaussian keeps more of the texture in the residual.
    assert lung_high_frequency_noise(hu, labels, pixel_mm=0.5) > lung_high_frequency_noise(hu, labels, pixel_mm=1.5)
    with pytest.raises(ValueError, match="pixel_mm must be a positive number"):
        lung_high_frequency_noise(hu, labels, pixel_mm=0)


def test_refuses_mismatched_shapes_maps_without_lung_and_non_finite_hu():
    hu, labels = textured_chest()
    with pytest.raises(ValueError, match="same shape"):
        lung_high_frequency_noise(hu[:32], labels)
    with pytest.raises(ValueError, match="same shape"):
        lung_high_frequency_noise(hu[None], labels[None])
    with pytest.raises(ValueError, match="no lung pixels"):
        lung_high_frequency_noise(hu, np.where(np.isin(labels, (2, 3)), 1, labels))
    with pytest.raises(ValueError, match="NaN or infinite"):
        lung_high_frequency_noise(np.where(labels == 0, np.nan, hu), labels)
    # Lungs too thin to leave pixels inside the border: no figure, as lung_dice gives none without lung.
    thin = np.zeros_like(labels)
    thin[10:50, 10:13] = 2
    assert math.isnan(lung_high_frequency_noise(hu, thin))
