"""What the Space displays: every synthetic picture carries the SYNTHETIC banner, and it hides no pixel."""

import numpy as np
from lung_space import display


def test_the_banner_is_added_above_and_the_picture_is_kept_whole():
    picture = np.random.default_rng(0).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    stamped = display.stamp_synthetic(picture)
    band = display.banner_height(512)
    assert stamped.shape == (512 + band, 512, 3)
    np.testing.assert_array_equal(stamped[band:], picture)
    np.testing.assert_array_equal(display.stamp_region(stamped), display.synthetic_banner(512))


def test_the_banner_shows_white_text_on_red():
    banner = display.synthetic_banner(512)
    red = (banner == display.STAMP_RGB).all(axis=-1)
    white = (banner >= 250).all(axis=-1)
    assert red.mean() > 0.6 and white.sum() > 300  # mostly red, with the letters in white


def test_synthetic_views_are_enlarged_and_stamped():
    grey = np.full((64, 64), 100, np.uint8)
    labels = np.zeros((64, 64), np.uint8)
    labels[8:56, 8:56] = 1
    labels[20:40, 12:30] = 3
    for view in (display.synthetic_view(grey), display.synthetic_overlay_view(grey, labels)):
        np.testing.assert_array_equal(display.stamp_region(view), display.synthetic_banner(512))
        assert view.shape == (512 + display.banner_height(512), 512, 3)
    difference = np.zeros((256, 256), np.float32)
    difference[100:110, 100:110] = 0.3
    np.testing.assert_array_equal(
        display.stamp_region(display.difference_view(difference)), display.synthetic_banner(512)
    )


def test_real_slices_are_not_stamped():
    grey = np.full((256, 256), 7, np.uint8)
    assert display.real_view(grey).shape == (512, 512, 3)
    assert (display.real_view(grey) == 7).all()
