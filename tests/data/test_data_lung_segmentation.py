"""Lung and trachea segmentation on the three real LIDC-IDRI scans."""

import numpy as np
import pytest
import SimpleITK as sitk

from lung_diffusers.ct import CTVolume, read_ct_volume, window_hu
from lung_diffusers.data.luna16 import read_luna16_annotations
from lung_diffusers.data.lung_segmentation import (
    AIR_THRESHOLD_HU,
    lung_labels_from_luna16_mask,
    segment_lungs_and_trachea,
)
from lung_diffusers.data.masks import LEFT_LUNG, RIGHT_LUNG, TRACHEA, body_mask


@pytest.fixture(scope="module")
def segmented(lidc_mini, sample_series):
    """(volume, segmentation) per patient ID."""
    result = {}
    for patient, uid in sample_series.items():
        volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
        result[patient] = (volume, segment_lungs_and_trachea(volume.hu, volume.spacing_mm))
    return result


def _volume_ml(mask: np.ndarray, voxel_mm3: float) -> float:
    return mask.sum() * voxel_mm3 / 1000.0


def test_each_lung_and_the_trachea_have_anatomical_volumes(segmented):
    for patient, (volume, lungs) in segmented.items():
        coarse_voxel = volume.spacing_mm[0] * volume.spacing_mm[1] * lungs.stride**2 * volume.spacing_mm[2]
        for side in (LEFT_LUNG, RIGHT_LUNG):
            assert 1000 < _volume_ml(lungs.lungs == side, coarse_voxel) < 4500, patient
        trachea_ml = _volume_ml(lungs.trachea, np.prod(volume.spacing_mm))
        assert 5 < trachea_ml < 120, (patient, trachea_ml)


def test_left_lung_lies_toward_the_patients_left_and_the_trachea_between(segmented):
    for patient, (volume, lungs) in segmented.items():
        column_mm = volume.spacing_mm[0] * lungs.stride
        left_x = volume.origin_mm[0] + np.nonzero(lungs.lungs == LEFT_LUNG)[2].mean() * column_mm
        right_x = volume.origin_mm[0] + np.nonzero(lungs.lungs == RIGHT_LUNG)[2].mean() * column_mm
        trachea_x = volume.origin_mm[0] + np.nonzero(lungs.trachea)[2].mean() * volume.spacing_mm[0]
        # LPS: +x is the patient's left.
        assert right_x + 30 < trachea_x < left_x - 30, patient


def test_trachea_runs_from_the_top_of_the_scan_to_just_below_the_carina(segmented):
    for patient, (volume, lungs) in segmented.items():
        trachea_slices = np.flatnonzero(lungs.trachea.any(axis=(1, 2)))
        lung_slices = np.flatnonzero(lungs.lungs.any(axis=(1, 2)))
        assert trachea_slices[-1] >= lung_slices[-1], patient  # reaches above the apices
        lung_middle = (lung_slices[0] + lung_slices[-1]) / 2
        assert trachea_slices[0] > lung_middle, patient  # stops at the main bronchi
        length_mm = (trachea_slices[-1] - trachea_slices[0]) * volume.spacing_mm[2]
        assert 60 < length_mm < 200, (patient, length_mm)


def test_full_resolution_lung_labels_cover_only_air_inside_the_body(segmented):
    volume, lungs = segmented["LIDC-IDRI-0002"]
    for slice_index in (60, 120, 180, 230):
        hu_slice = volume.hu[slice_index]
        body = body_mask(window_hu(hu_slice))
        labels = lungs.slice_labels(slice_index, hu_slice, body)
        assert set(np.unique(labels)) <= {0, LEFT_LUNG, RIGHT_LUNG, TRACHEA}
        assert np.all((hu_slice < AIR_THRESHOLD_HU)[labels > 0])
        assert np.all(body[labels > 0])
        # Nearly all air inside the chest at these levels is lung or airway (the rest: oesophagus, bowel gas).
        air_in_body = (hu_slice < AIR_THRESHOLD_HU) & body
        assert (labels > 0).sum() > 0.9 * air_in_body.sum()


def test_reference_nodules_sit_in_the_lung_on_their_side(segmented, lidc_mini, sample_series):
    annotations = read_luna16_annotations(lidc_mini / "annotations.csv")
    checked = 0
    for patient, (volume, lungs) in segmented.items():
        trachea_x = volume.origin_mm[0] + np.nonzero(lungs.trachea)[2].mean() * volume.spacing_mm[0]
        for nodule in annotations.get(sample_series[patient], []):
            column, row, slice_index = np.rint(volume.world_to_voxel(nodule.center_mm)).astype(int)
            hu_slice = volume.hu[slice_index]
            labels = lungs.slice_labels(slice_index, hu_slice, body_mask(window_hu(hu_slice)))
            rows, columns = np.ogrid[: labels.shape[0], : labels.shape[1]]
            ring = (rows - row) ** 2 + (columns - column) ** 2 <= ((nodule.radius_mm + 5) / volume.spacing_mm[0]) ** 2
            around = labels[ring]
            expected = LEFT_LUNG if nodule.center_mm[0] > trachea_x else RIGHT_LUNG
            assert (around == expected).sum() > 0.3 * ring.sum(), (patient, nodule)
            assert (around == (LEFT_LUNG + RIGHT_LUNG - expected)).sum() == 0, (patient, nodule)
            checked += 1
    assert checked == 4


def _write_official_style_mask(path, volume, labels, left_value, right_value):
    values = np.zeros(labels.shape, np.uint8)
    values[labels == LEFT_LUNG] = left_value
    values[labels == RIGHT_LUNG] = right_value
    values[labels == TRACHEA] = 5
    image = sitk.GetImageFromArray(values)
    image.SetOrigin(volume.origin_mm)
    image.SetSpacing(volume.spacing_mm)
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.fixture(scope="module")
def labels_0001(segmented):
    """Full-resolution lung/trachea labels of every slice of LIDC-IDRI-0001."""
    volume, lungs = segmented["LIDC-IDRI-0001"]
    return np.stack(
        [lungs.slice_labels(k, volume.hu[k], body_mask(window_hu(volume.hu[k]))) for k in range(volume.hu.shape[0])]
    )


@pytest.mark.parametrize("left_value", [3, 4])
def test_official_masks_are_read_with_sides_taken_from_position(segmented, labels_0001, tmp_path, left_value):
    volume, _ = segmented["LIDC-IDRI-0001"]
    labels = labels_0001
    path = tmp_path / f"{volume.series_uid}.mhd"
    _write_official_style_mask(path, volume, labels, left_value, 7 - left_value)
    if left_value == 3:
        official = lung_labels_from_luna16_mask(path, volume)
    else:
        with pytest.warns(UserWarning, match="value 4 lies on the patient's left"):
            official = lung_labels_from_luna16_mask(path, volume)
    assert np.array_equal(official.labels, labels)
    assert np.array_equal(official.slice_labels(90, volume.hu[90], np.ones((512, 512), bool)), labels[90])


def test_an_official_mask_of_another_scan_is_refused(segmented, tmp_path):
    volume, _ = segmented["LIDC-IDRI-0001"]
    other, _ = segmented["LIDC-IDRI-0003"]
    path = tmp_path / "other.mhd"
    _write_official_style_mask(path, other, np.zeros(other.hu.shape, np.uint8), 3, 4)
    with pytest.raises(ValueError, match=r"other\.mhd.*does not match"):
        lung_labels_from_luna16_mask(path, volume)


def test_a_small_official_mask_maps_3_4_5_to_left_right_trachea(tmp_path, recwarn):
    hu = np.full((2, 8, 10), -900, np.int16)
    volume = CTVolume(hu, (-5.0, -4.0, 0.0), (1.0, 1.0, 2.0), "tiny", np.eye(3, 4))
    values = np.zeros(hu.shape, np.uint8)
    values[:, 2:6, 6:9] = 3  # columns toward LPS +x: the patient's left
    values[:, 2:6, 1:4] = 4
    values[1, 0:2, 4:6] = 5
    image = sitk.GetImageFromArray(values)
    image.SetOrigin(volume.origin_mm)
    image.SetSpacing(volume.spacing_mm)
    sitk.WriteImage(image, str(tmp_path / "tiny.mhd"))
    labels = lung_labels_from_luna16_mask(tmp_path / "tiny.mhd", volume).labels
    assert np.array_equal(labels, np.choose(values, [0, 0, 0, LEFT_LUNG, RIGHT_LUNG, TRACHEA]))
    assert not recwarn.list  # 3 lies on the left, as the thesis reads it: nothing to warn about


def test_sanity_the_heart_lies_to_the_patients_left_of_the_spine(segmented):
    """Not how sides are decided (that is LPS x), only a check that the stored frame is anatomical."""
    for patient, (volume, lungs) in segmented.items():
        lung_slices = np.flatnonzero(lungs.lungs.any(axis=(1, 2)))
        low, high = lung_slices[0], lung_slices[-1]
        candidates = []
        for slice_index in range(int(low + 0.3 * (high - low)), int(low + 0.7 * (high - low))):
            hu = volume.hu[slice_index]
            body = body_mask(window_hu(hu))
            labels = lungs.slice_labels(slice_index, hu, body)
            columns = np.arange(hu.shape[1])
            both = (labels == RIGHT_LUNG).any(axis=1) & (labels == LEFT_LUNG).any(axis=1)
            right_edge = np.where(labels == RIGHT_LUNG, columns, -1).max(axis=1)
            left_edge = np.where(labels == LEFT_LUNG, columns, hu.shape[1]).min(axis=1)
            mediastinum = (columns > right_edge[:, None]) & (columns < left_edge[:, None]) & both[:, None] & (hu > -100)
            # The vertebral body: dense bone in the posterior half, near the body's middle column.
            body_rows, body_columns = np.nonzero(body)
            bone = body & (hu > 400) & (np.abs(columns - body_columns.mean()) < 60)[None, :]
            bone[: int(body_rows.mean())] = False
            if bone.sum() < 30:
                continue
            bone_rows, bone_columns = np.nonzero(bone)
            mediastinum[bone_rows.min() :] = False  # keep what lies in front of the spine
            if mediastinum.any():
                offset = np.nonzero(mediastinum)[1].mean() - np.median(bone_columns)
                candidates.append((mediastinum.sum(), offset))
        # The heart is the bulk of the mediastinum where it is widest.
        widest = sorted(candidates)[-5:]
        assert np.mean([offset for _, offset in widest]) > 0, patient
