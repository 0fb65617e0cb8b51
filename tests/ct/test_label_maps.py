"""Label-map checks: values out of range (and maps scaled for viewing), sizes against what a model was trained on."""

from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
from lung_support import save_tiny_prior

from lung_diffusers.ct import as_label_tensor, check_label_map_size, check_label_values


def recipe_like_labels(size: int = 64) -> np.ndarray:
    labels = np.zeros((size, size), np.uint8)
    labels[4:-4, 4:-4] = 1
    labels[12:-12, 8:30] = 3
    labels[12:-12, 34:-8] = 2
    labels[4:12, 30:34] = 4
    labels[24:30, 40:46] = 5
    return labels


def test_a_map_scaled_for_viewing_is_named_as_out_of_range_with_its_factor():
    with pytest.raises(
        ValueError, match=r"\[0, 6\) for this model .* got 50, 100, 150, 200, 250 .*x50.*divide the map by 50"
    ):
        as_label_tensor(recipe_like_labels() * 50, num_classes=6)


@pytest.mark.parametrize("values", [[0, 255], [0, 1, 7], [0, 7, 9]])
def test_values_that_are_not_scaled_classes_get_no_scaling_hint(values):
    with pytest.raises(ValueError, match="label values must lie in") as error:
        check_label_values(np.array(values), 6)
    assert "look like" not in str(error.value)


def test_remove_nodule_reports_a_scaled_label_map_rather_than_a_missing_nodule(tmp_path, capsys):
    from lung_diffusers.cli import main

    save_tiny_prior(tmp_path / "prior")
    PIL.Image.fromarray(np.full((64, 64), 90, np.uint8)).save(tmp_path / "slice.png")
    PIL.Image.fromarray(recipe_like_labels() * 50).save(tmp_path / "mask.png")
    argv = ["remove-nodule", "--pipeline", tmp_path / "prior", "--image", tmp_path / "slice.png",
            "--label-map", tmp_path / "mask.png", "--output", tmp_path / "out", "--image-size", "64"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no nodule" not in error
    assert "mask.png (the recipe's classes 0-6); got 50, 100" in error and "divide the map by 50" in error


def config(**values) -> SimpleNamespace:
    return SimpleNamespace(**{"sample_size": 64, **values})


def test_maps_of_the_trained_size_pass_and_other_sizes_get_a_warning():
    assert check_label_map_size(64, 64, config()) is None
    for height, width in [(64, 80), (128, 128), (40, 64)]:
        message = check_label_map_size(height, width, config())
        assert f"{height}x{width}, but this model was trained on 64x64 slices" in message
        assert "resize_label_map(labels, 64)" in message


@pytest.mark.parametrize("height, width", [(32, 32), (16, 64), (64, 24)])
def test_maps_half_the_trained_size_or_smaller_are_refused(height, width):
    with pytest.raises(ValueError, match=rf"{height}x{width}, .*gives noise.*resize_label_map\(labels, 64\)"):
        check_label_map_size(height, width, config())


def test_a_model_trained_on_crops_of_whole_slices_takes_whole_slices():
    crops = config(sample_size=256, training_crop_size=64, pixel_spacing_mm=1.4)
    assert check_label_map_size(256, 256, crops) is None
    assert "256x256 slices (from 64-px crops of them) at 1.4 mm per pixel" in check_label_map_size(192, 256, crops)
    with pytest.raises(ValueError, match="gives noise"):
        check_label_map_size(64, 64, crops)
