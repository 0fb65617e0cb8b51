"""The cascade's measures (issue 17) on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lung_diffusers.evaluation import (
    area_downsample,
    nodule_contrast_hu,
    ring_around,
    sharpness_ratio,
    stage_agreement_hu,
)


def chest(side=64):
    labels = np.zeros((side, side), np.uint8)
    labels[4:60, 4:60] = 1
    labels[10:54, 8:30] = 3
    labels[10:54, 34:56] = 2
    return labels


def test_contrast_is_nodule_against_a_ring_of_lung_only():
    labels = chest()
    hu = np.where(np.isin(labels, (2, 3)), -850.0, 40.0)
    nodule = np.zeros_like(labels, bool)
    nodule[30:34, 26:30] = True  # touches the soft tissue between the lungs at column 30
    hu[nodule] = 20.0
    # Ring 2 mm at 1 mm / px: the soft tissue beside the nodule is not lung and stays out of the ring.
    assert nodule_contrast_hu(hu, nodule, labels, pixel_mm=1.0, ring_mm=2.0) == pytest.approx(870.0)
    ring = ring_around(nodule, 2.0, within=np.isin(labels, (2, 3)))
    assert not (ring & nodule).any() and ring.sum() > 0 and (labels[ring] != 1).all()
    # The width is in mm: at 0.5 mm / px a 3-mm ring is 6 px wide.
    assert ring_around(nodule, 6.0).sum() > ring_around(nodule, 3.0).sum()
    lone = np.zeros_like(nodule)
    lone[1, 1] = True  # outside the body: no lung around it
    assert np.isnan(nodule_contrast_hu(hu, lone, labels, pixel_mm=1.0))
    with pytest.raises(ValueError, match="one shape"):
        nodule_contrast_hu(hu[:10], nodule, labels, 1.0)


def textured(seed=0, side=64, sigma=1.0, noise_hu=0.0):
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(0, 200, (side, side)), sigma)
    return texture + rng.normal(0, noise_hu, (side, side)) if noise_hu else texture


def test_sharpness_tells_blur_and_grain_from_real_texture():
    labels, real = chest(), textured()
    assert sharpness_ratio(real, real, labels) == pytest.approx(1.0)
    assert sharpness_ratio(ndimage.gaussian_filter(real, 2.0), real, labels) < 0.5  # blurred (bicubic-like)
    assert sharpness_ratio(real + np.random.default_rng(1).normal(0, 60, real.shape), real, labels) > 1.5  # grainy
    assert 0.7 < sharpness_ratio(textured(seed=5), real, labels) < 1.3  # another draw of the same texture


def test_agreement_with_stage_one_is_the_body_s_mean_absolute_difference():
    low_labels = chest(16)
    low = np.where(low_labels > 0, 40.0, -1000.0)
    full = np.kron(low, np.ones((4, 4)))
    assert stage_agreement_hu(full, low, low_labels) == 0.0
    shifted = full + 50.0
    assert stage_agreement_hu(shifted, low, low_labels) == pytest.approx(50.0)
    np.testing.assert_allclose(area_downsample(full, 16), low)
    with pytest.raises(ValueError, match="whole blocks"):
        area_downsample(full[:62, :62], 16)
