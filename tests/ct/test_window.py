"""The HU window and the conversions between HU, grey levels, window images and the models' range [-1, 1]."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from lung_diffusers.ct import (
    HU_WINDOW,
    check_hu_window,
    hu_from_image,
    hu_from_model_range,
    image_from_hu,
    image_from_model_range,
    model_range_from_grey,
    model_range_from_hu,
    model_range_from_image,
    unwindow_hu,
    window_hu,
)

HU = np.array([-2048, -1000, -999.4, -600, -303, 0, 40, 399.9, 400, 3071], np.float32)
IN_WINDOW = (HU >= HU_WINDOW[0]) & (HU <= HU_WINDOW[1])


def test_the_thesis_window_maps_air_to_the_bottom_and_400_hu_to_the_top_of_every_scale():
    assert HU_WINDOW == (-1000.0, 400.0)
    assert window_hu(np.array(HU_WINDOW)).tolist() == [0, 255]
    assert image_from_hu(np.array(HU_WINDOW)).tolist() == [0.0, 1.0]
    assert model_range_from_hu(np.array(HU_WINDOW)).tolist() == [-1.0, 1.0]


def test_hu_grey_round_trip_is_exact_to_half_a_grey_level_and_clips_outside_the_window():
    back = unwindow_hu(window_hu(HU))
    assert back.dtype == np.float32
    half_level = (HU_WINDOW[1] - HU_WINDOW[0]) / 255 / 2
    assert np.abs(back - HU)[IN_WINDOW].max() <= half_level + 1e-3
    assert back[~IN_WINDOW].tolist() == [-1000.0, 400.0]  # -2048 and 3071 come back as the window's bounds


def test_hu_window_image_and_model_range_round_trips_agree():
    clipped = np.clip(HU, *HU_WINDOW)
    np.testing.assert_allclose(hu_from_image(image_from_hu(HU)), clipped, atol=1e-3)
    np.testing.assert_allclose(hu_from_model_range(model_range_from_hu(HU)), clipped, atol=1e-3)
    image = image_from_hu(HU)
    np.testing.assert_allclose(image_from_model_range(model_range_from_image(image)), image, atol=1e-7)
    # Grey levels reach the model range the same way as through the window image (grey / 255).
    grey = np.arange(256, dtype=np.uint8)
    np.testing.assert_allclose(model_range_from_grey(grey), model_range_from_image(grey / 255.0), atol=1e-6)
    assert model_range_from_grey(grey).dtype == np.float32


def test_model_range_conversions_keep_torch_tensors_as_the_pipelines_computed_them():
    samples = torch.linspace(-1.3, 1.3, 27).reshape(1, 1, 3, 9)
    images = image_from_model_range(samples)
    assert torch.is_tensor(images)
    assert torch.equal(images, (samples / 2 + 0.5).clamp(0, 1))  # samples overshoot [-1, 1] a little
    assert torch.equal(model_range_from_image(images), images * 2 - 1)
    grey = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(model_range_from_grey(grey), grey.float().div(127.5).sub(1.0))
    hu = hu_from_model_range(samples)
    assert isinstance(hu, np.ndarray) and hu.dtype == np.float32
    np.testing.assert_allclose(hu, hu_from_image((samples.numpy() + 1) / 2), atol=1e-3)


@pytest.mark.parametrize("window", [(400, -1000), (0, 0), (float("nan"), 400), (-1000, float("inf")), (1, 2, 3), "wide"])
def test_a_window_that_is_not_a_finite_increasing_pair_is_refused_by_every_conversion(window):
    with pytest.raises(ValueError, match="hu_window must be two"):
        check_hu_window(window)
    with pytest.raises(ValueError, match="window_hu must be two"):
        window_hu(HU, window)
    with pytest.raises(ValueError, match="hu_window"):
        hu_from_image(np.zeros(2), window)


def test_the_ct_package_imports_without_torch():
    # The bottom layer: reading label schemes, windows and label maps must not cost a torch import.
    code = (
        "import sys, numpy as np; import lung_diffusers.ct as ct; "
        "ct.window_hu(np.zeros(2)); ct.label_scheme(7).colours; ct.resize_label_map(np.zeros((4, 4), np.uint8), 2); "
        "ct.check_label_values(np.zeros(3), 6); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
