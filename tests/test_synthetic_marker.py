"""Synthetic images are marked in every format the package writes, and the mark reads back."""

import numpy as np
import PIL.Image
import pytest
import SimpleITK as sitk

from lung_diffusers import is_synthetic, save_synthetic_nifti, save_synthetic_png


def test_png_marker_round_trip(tmp_path, tiny_pipe, reference_labels):
    image = tiny_pipe(reference_labels[0], num_inference_steps=2).images[0]
    path = save_synthetic_png(image, tmp_path / "out" / "slice.png", metadata={"seed": 7})
    assert is_synthetic(path)
    with PIL.Image.open(path) as reread:
        assert reread.text["synthetic"] == "true" and "not for diagnosis" in reread.text["Description"]
        assert reread.text["seed"] == "7"
        np.testing.assert_array_equal(np.asarray(reread), np.asarray(image))
    assert [p.name for p in path.parent.iterdir()] == ["slice.png"]  # no temporary files left

    # Arrays in [0, 1] work too; an ordinary PNG is reported as not synthetic.
    assert is_synthetic(save_synthetic_png(np.random.rand(16, 16, 1).astype(np.float32), tmp_path / "array.png"))
    PIL.Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "plain.png")
    assert not is_synthetic(tmp_path / "plain.png")


def test_nifti_marker_round_trip(tmp_path, tiny_pipe, reference_labels):
    hu = tiny_pipe(reference_labels, num_inference_steps=2, output_type="hu").images
    path = save_synthetic_nifti(hu, tmp_path / "stack.nii.gz", spacing=(0.7, 0.7, 2.5))
    assert is_synthetic(path)
    image = sitk.ReadImage(str(path))
    assert image.GetMetaData("descrip").startswith("SYNTHETIC")
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), hu, atol=1e-3)
    np.testing.assert_allclose(image.GetSpacing(), (0.7, 0.7, 2.5), atol=1e-6)
    assert is_synthetic(save_synthetic_nifti(hu[0], tmp_path / "slice.nii"))

    plain = tmp_path / "plain.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(plain))
    assert not is_synthetic(plain)


def test_writers_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match=".png"):
        save_synthetic_png(np.zeros((8, 8), np.uint8), tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="NaN"):
        save_synthetic_png(np.full((8, 8), np.nan, np.float32), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\.nii"):
        save_synthetic_nifti(np.zeros((8, 8)), tmp_path / "x.mhd")
    with pytest.raises(ValueError, match="shape"):
        save_synthetic_nifti(np.zeros(8), tmp_path / "x.nii")
    with pytest.raises(ValueError, match="only .png"):
        (tmp_path / "x.txt").write_text("hi")
        is_synthetic(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        is_synthetic(tmp_path / "missing.png")
    assert not list(tmp_path.glob(".*"))
