"""Resizing slices as the data recipe does: one rule for grey PNG slices and for window images."""

import numpy as np

from lung_diffusers.ct import resize_slice
from lung_diffusers.data.masks import resize_ct_image


def test_grey_slices_stay_grey_and_window_images_stay_float_through_one_area_resize():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    small = resize_slice(grey, 32)
    assert small.dtype == np.uint8 and small.shape == (32, 32)
    assert np.array_equal(resize_ct_image(grey, 32), small)  # the recipe's resizing is this one
    assert abs(int(small[0, 0]) - grey[:2, :2].mean()) <= 1  # area averaging, not sampling
    window = resize_slice(grey / np.float32(255), 32)
    assert window.dtype == np.float32
    np.testing.assert_allclose(window * 255, small, atol=1)
    same = resize_slice(grey, 64)
    assert np.array_equal(same, grey) and same is not grey
