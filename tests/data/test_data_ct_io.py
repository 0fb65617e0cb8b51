import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from lung_diffusers.ct import read_ct_volume, read_label_volume, unwindow_hu, window_hu


def test_window_hu_maps_the_lung_window_linearly_and_clips():
    hu = np.array([-3024, -2048, -1000, -300, 400, 3071], np.int16)
    # (-300 + 1000) / 1400 * 255 = 127.5, rounded half to even.
    assert window_hu(hu).tolist() == [0, 0, 0, 128, 255, 255]
    assert window_hu(np.array([0]), (-100, 100)).tolist() == [128]
    assert window_hu(hu).dtype == np.uint8


def test_window_hu_rejects_an_empty_window():
    with pytest.raises(ValueError, match="upper > lower"):
        window_hu(np.zeros(3), (400, -1000))
    with pytest.raises(ValueError, match="upper > lower"):
        unwindow_hu(np.zeros(3), (400, -1000))


def test_unwindow_hu_inverts_window_hu_within_half_a_grey_level():
    hu = np.arange(-1000, 401)
    assert np.abs(unwindow_hu(window_hu(hu)) - hu).max() <= 1400 / 255 / 2 + 1e-3
    assert unwindow_hu(np.array([0, 255], np.uint8)).tolist() == [-1000.0, 400.0]
    assert unwindow_hu(window_hu(np.array([-3024, 3071]))).tolist() == [-1000.0, 400.0]  # clipped values


def test_luna16_volume_reads_with_the_documented_geometry_and_values(lidc_mini, sample_series):
    series_uid = sample_series["LIDC-IDRI-0001"]
    volume = read_ct_volume(lidc_mini / "subset0" / f"{series_uid}.mhd")
    assert volume.series_uid == series_uid
    assert volume.hu.shape == (133, 512, 512)
    assert volume.hu.dtype == np.int16
    assert volume.spacing_mm == pytest.approx((0.703125, 0.703125, 2.5))
    assert volume.origin_mm == pytest.approx((-166.0, -171.699997, -340.0))
    assert volume.hu.min() == -2048  # outside-the-scan-circle padding is kept as stored
    # The LUNA16 nodule of LIDC-IDRI-0001 sits at voxel (316.03, 367.00, 89.65); its centre voxel is 91 HU.
    column, row, slice_index = volume.world_to_voxel((56.20840547, 86.34341278, -115.8675792))
    assert (column, row, slice_index) == pytest.approx((316.03, 367.00, 89.65), abs=0.01)
    assert volume.hu[90, 367, 316] == 91
    assert volume.slice_z_mm(90) == pytest.approx(-115.0)
    assert volume.voxel_to_world((316.03, 367.00, 89.65)) == pytest.approx((56.2084, 86.3434, -115.8676), abs=0.01)


def test_a_dicom_series_reads_like_the_luna16_volume(lidc_mini, sample_series):
    # The DICOM sample is slices 86-93 of LIDC-IDRI-0001, files not in slice order.
    series = read_ct_volume(lidc_mini / "dicom-sample")
    volume = read_ct_volume(lidc_mini / "subset0" / f"{sample_series['LIDC-IDRI-0001']}.mhd")
    assert series.series_uid == sample_series["LIDC-IDRI-0001"]
    assert series.origin_mm == pytest.approx((-166.0, -171.699997, -125.0))
    assert series.spacing_mm == pytest.approx(volume.spacing_mm)
    assert np.array_equal(series.hu, volume.hu[86:94])
    with pytest.raises(ValueError, match="not in"):
        read_ct_volume(lidc_mini / "dicom-sample", series_uid="1.2.3")


def test_a_folder_without_dicom_files_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no DICOM series in"):
        read_ct_volume(tmp_path)


def test_nifti_volumes_are_read_too(tmp_path):
    image = sitk.GetImageFromArray(np.full((3, 4, 5), -500, np.int16))
    sitk.WriteImage(image, str(tmp_path / "scan-7.nii.gz"))
    volume = read_ct_volume(tmp_path / "scan-7.nii.gz")
    assert volume.series_uid == "scan-7" and volume.hu.shape == (3, 4, 5) and np.all(volume.hu == -500)


def _write_flipped_volume(path):
    values = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((10.0, 20.0, -30.0))
    # Stored with x and y reversed, as some scanners export.
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(image, str(path))
    return image


def test_a_flipped_scan_is_reoriented_to_lps_without_changing_values(tmp_path):
    source = _write_flipped_volume(tmp_path / "flipped.mhd")
    volume = read_ct_volume(tmp_path / "flipped.mhd")
    assert volume.hu.shape == (4, 5, 6)
    for index in [(0, 0, 0), (5, 4, 3), (2, 3, 1)]:
        world = source.TransformIndexToPhysicalPoint(index)
        column, row, slice_index = np.rint(volume.world_to_voxel(world)).astype(int)
        assert volume.hu[slice_index, row, column] == source[index]
    # Positions given in the stored pixel grid (as LIDC outlines are) still land on the same world point.
    assert volume.source_pixel_to_world(np.array([5.0]), np.array([4.0]))[0] == pytest.approx(
        source.TransformContinuousIndexToPhysicalPoint((5.0, 4.0, 0.0))[:2]
    )
    # Columns now grow toward +x (the patient's left), rows toward +y (posterior).
    assert np.all(np.diff(volume.hu[0, 0].astype(int)) < 0)
    labels = read_label_volume(tmp_path / "flipped.mhd")
    assert np.array_equal(labels.array, volume.hu)


def test_missing_volume_and_missing_data_file_are_reported_with_the_path(tmp_path, lidc_mini, sample_series):
    with pytest.raises(FileNotFoundError, match="nothing.mhd"):
        read_ct_volume(tmp_path / "nothing.mhd")
    header_only = tmp_path / f"{sample_series['LIDC-IDRI-0001']}.mhd"
    shutil.copy(lidc_mini / "subset0" / header_only.name, header_only)
    with pytest.raises(ValueError, match=r"could not read volume .*\.mhd.*\.zraw data file"):
        read_ct_volume(header_only)
    # A truncated (corrupt) data file.
    data_file = lidc_mini / "subset0" / header_only.with_suffix(".zraw").name
    header_only.with_suffix(".zraw").write_bytes(data_file.read_bytes()[:100_000])
    with pytest.raises(ValueError, match=r"could not read volume .*\.mhd"):
        read_ct_volume(header_only)


def _write_small_mhd(folder, compressed):
    """A 6-slice 16 x 16 int16 MetaImage (.mhd + .zraw, or + .raw): 3,072 bytes of voxels."""
    header = folder / "scan.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((6, 16, 16), -700, np.int16)), str(header), compressed)
    return header, header.with_suffix(".zraw" if compressed else ".raw")


def test_a_missing_or_truncated_data_file_is_reported_as_such(tmp_path):
    header, data = _write_small_mhd(tmp_path, compressed=True)
    complete = data.read_bytes()
    data.write_bytes(complete[: len(complete) // 2])
    with pytest.raises(ValueError, match=r"scan\.zraw is truncated: it holds [\d,]+ of the [\d,]+ bytes") as error:
        read_ct_volume(header)
    assert "No such file" not in str(error.value)
    # Without CompressedDataSize in the header, the cut-off zlib stream gives it away.
    header.write_text("".join(line for line in header.read_text().splitlines(True) if "CompressedDataSize" not in line))
    with pytest.raises(ValueError, match=r"scan\.zraw is cut short or corrupt"):
        read_ct_volume(header)
    data.unlink()
    with pytest.raises(ValueError, match=r"its data file .*scan\.zraw \(ElementDataFile\) is missing"):
        read_ct_volume(header)


@pytest.mark.parametrize("compressed", [True, False])
def test_a_header_claiming_more_slices_than_the_data_holds_is_refused(tmp_path, compressed):
    header, _ = _write_small_mhd(tmp_path, compressed)
    assert read_ct_volume(header).hu.shape == (6, 16, 16)
    header.write_text(header.read_text().replace("DimSize = 16 16 6", "DimSize = 16 16 9"))
    held = "unpacks to 3,072 bytes" if compressed else "holds 3,072 bytes"
    with pytest.raises(ValueError, match=rf"{held}, but the header's 16 x 16 x 9 voxels of MET_SHORT need 4,608 bytes"):
        read_ct_volume(header)
