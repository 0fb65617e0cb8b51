"""The pixel spacing a training run records in its U-Net's config (``pixel_spacing_mm``): the median spacing of the
training rows, scaled from the stored pixels to the model's sample size."""

from __future__ import annotations

import numpy as np
import pytest

from lung_diffusers.data.slice_dataset import load_slice_dataset
from lung_diffusers.training.sdm_model import training_pixel_spacing_mm


def rows_with_spacing(stored: list[tuple[int, list[float] | None]]):
    """Rows of blank slices stored at the given sides with the given ``spacing.pixel_mm`` (None: not known)."""
    import datasets
    import PIL.Image

    features = datasets.Features(
        {"mask": datasets.Image(), "spacing": {"pixel_mm": datasets.Sequence(datasets.Value("float32"))}}
    )
    return datasets.Dataset.from_dict(
        {
            "mask": [PIL.Image.fromarray(np.zeros((side, side), np.uint8)) for side, _ in stored],
            "spacing": [None if mm is None else {"pixel_mm": mm} for _, mm in stored],
        },
        features=features,
    )


def test_the_spacing_is_the_rows_median_scaled_to_the_sample_size():
    # At 32 px: 1.0, 1.5 and 0.5 x 64 / 32 = 1.0 mm (row and column averaged); the row without spacing is left out.
    rows = rows_with_spacing([(32, [1.0, 1.0]), (32, [1.4, 1.6]), (64, [0.5, 0.5]), (32, None)])
    assert training_pixel_spacing_mm(rows, 32) == pytest.approx(1.0)
    # A model of 8-px slices has pixels four times as large (as a 64-px model of the recipe's 256-px slices).
    assert training_pixel_spacing_mm(rows, 8) == pytest.approx(4.0)
    assert training_pixel_spacing_mm(rows_with_spacing([(32, [1.2, 1.2]), (32, [1.6, 1.6])]), 32) == pytest.approx(1.4)


def test_a_recipe_folder_gives_its_stored_spacing_at_the_models_size(tiny_recipe):
    dataset = load_slice_dataset(tiny_recipe, ["healthy", "nodule"], "train")  # 32-px rows at 2 mm per pixel
    assert training_pixel_spacing_mm(dataset, 16) == pytest.approx(4.0)
    assert training_pixel_spacing_mm(dataset, 32) == pytest.approx(2.0)


def test_rows_without_spacing_give_none(phantom_dataset):
    assert training_pixel_spacing_mm(load_slice_dataset(phantom_dataset, ["healthy"], "train"), 32) is None
    assert training_pixel_spacing_mm(rows_with_spacing([(32, None)]), 32) is None
