"""Uploads the Space reads: label maps, real slices (PNG, NIfTI, DICOM) and nodule masks, with readable refusals."""

import numpy as np
import PIL.Image
import pytest
import SimpleITK as sitk
from lung_space.uploads import REAL_SLICE_SIZE, read_label_map, read_nodule_mask, read_real_slice, read_slice_labels
from space_support import SPACE_DIR

EXAMPLE = SPACE_DIR / "examples" / "lidc-idri-0001_slice090.png"
EXAMPLE_LABELS = SPACE_DIR / "examples" / "lidc-idri-0001_slice090_labels.png"


def save_png(path, array, mode=None):
    PIL.Image.fromarray(array, mode).save(path)
    return path


def test_a_64_px_label_map_loads_as_it_is(tmp_path):
    labels = np.zeros((64, 64), np.uint8)
    labels[10:50, 10:50] = 1
    labels[20:30, 20:30] = 5
    np.testing.assert_array_equal(read_label_map(save_png(tmp_path / "m.png", labels), 6, 64), labels)


def test_a_recipe_256_px_label_map_is_shrunk_by_majority():
    labels = read_label_map(EXAMPLE_LABELS, 6, 64)
    assert labels.shape == (64, 64) and set(np.unique(labels)) == {0, 1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: save_png(p / "m.png", np.full((64, 64), 7, np.uint8)), "classes 0-5"),
        (lambda p: save_png(p / "m.png", np.full((64, 64), 6, np.uint8)), "needs a 7-class model"),
        (lambda p: save_png(p / "m.png", np.zeros((64, 96), np.uint8)), "must be square"),
        (lambda p: save_png(p / "m.png", np.zeros((32, 32), np.uint8)), "smaller than the model"),
        (
            lambda p: save_png(
                p / "m.png",
                np.dstack(
                    [np.zeros((64, 64), np.uint8), np.ones((64, 64), np.uint8) * 9, np.zeros((64, 64), np.uint8)]
                ),
            ),
            "colour picture",
        ),
        (lambda p: save_png(p / "m.jpg", np.zeros((64, 64), np.uint8)), "not a PNG"),
        (lambda p: (p / "m.png").write_bytes(b"not an image") and p / "m.png", "could not be read"),
    ],
    ids=["label-7", "malignant-in-6-class", "not-square", "too-small", "colour", "jpeg", "garbage"],
)
def test_bad_label_maps_get_a_sentence_saying_what_to_fix(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        read_label_map(make(tmp_path), 6, 64)


def test_a_png_slice_loads_at_the_recipe_size_with_the_default_spacing():
    image, pixel_mm, source = read_real_slice([EXAMPLE])
    assert image.shape == (REAL_SLICE_SIZE, REAL_SLICE_SIZE) and image.dtype == np.uint8
    assert pixel_mm == 360 / 256 and source.endswith("lidc-idri-0001_slice090.png")


def test_a_dicom_file_loads_resized_with_its_spacing(shared_dir):
    dicom = sorted((shared_dir / "data" / "lidc-mini" / "dicom-sample").glob("*.dcm"))
    image, pixel_mm, _ = read_real_slice(dicom[0])
    spacing = sitk.ReadImage(str(dicom[0])).GetSpacing()
    assert image.shape == (256, 256)
    assert pixel_mm == pytest.approx(spacing[1] * 512 / 256)


def test_several_dicom_files_are_one_series_read_with_the_slice_index(shared_dir):
    dicom = sorted((shared_dir / "data" / "lidc-mini" / "dicom-sample").glob("*.dcm"))[:3]
    with pytest.raises(ValueError, match="give a slice index"):
        read_real_slice(dicom)
    image, _, source = read_real_slice(dicom, 1)
    assert image.shape == (256, 256) and "slice 1" in source


def test_a_nifti_volume_needs_a_slice_index_in_range(tmp_path):
    volume = sitk.GetImageFromArray(np.full((3, 80, 80), -500, np.int16))
    volume.SetSpacing((0.8, 0.8, 2.5))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(volume, str(path))
    with pytest.raises(ValueError, match="slice index"):
        read_real_slice(path)
    with pytest.raises(ValueError, match="outside"):
        read_real_slice(path, 7)
    image, pixel_mm, _ = read_real_slice(path, 2)
    assert image.shape == (256, 256) and pixel_mm == pytest.approx(0.8 * 80 / 256)
    assert abs(int(image.mean()) - round(500 / 1400 * 255)) <= 1


@pytest.mark.parametrize(
    "files, index, message",
    [([], None, "upload a real slice"), (["a.png", "b.dcm"], None, "only .dcm"), (["x.png"], -1, "whole number")],
)
def test_bad_slice_uploads_are_refused(tmp_path, files, index, message):
    paths = [
        save_png(tmp_path / name, np.zeros((64, 64), np.uint8)) if name.endswith(".png") else tmp_path / name
        for name in files
    ]
    for path in paths:
        path.touch()
    with pytest.raises(ValueError, match=message):
        read_real_slice(paths, index)


def test_small_or_oblong_slices_are_refused(tmp_path):
    with pytest.raises(ValueError, match="square"):
        read_real_slice(save_png(tmp_path / "a.png", np.zeros((256, 200), np.uint8)))
    with pytest.raises(ValueError, match="at least 64"):
        read_real_slice(save_png(tmp_path / "b.png", np.zeros((32, 32), np.uint8)))


def test_nodule_masks_are_binary_or_taken_from_a_label_map(tmp_path):
    binary = np.zeros((512, 512), np.uint8)
    binary[200:220, 300:330] = 255
    mask = read_nodule_mask(save_png(tmp_path / "b.png", binary), None)
    assert mask.shape == (256, 256) and mask[105, 155] and mask.sum() == 10 * 15
    from_labels = read_nodule_mask(EXAMPLE_LABELS, None)
    np.testing.assert_array_equal(from_labels, read_slice_labels(EXAMPLE_LABELS, None, 6) == 5)
    with pytest.raises(ValueError, match="marks no nodule"):
        read_nodule_mask(save_png(tmp_path / "e.png", np.zeros((256, 256), np.uint8)), None)
