"""Reading CT volumes and turning Hounsfield units into 8-bit images.

Volumes are returned as NumPy arrays indexed ``[z, y, x]`` in the DICOM patient frame (LPS):
x grows toward the patient's left, y toward the patient's back, z toward the head. Slice 0 is
the most inferior slice. Rows of a slice therefore run anterior to posterior (LPS y) and columns
run from the patient's right to the patient's left (LPS x): the usual radiological view, with no
flip applied. Scans stored with another direction matrix are reoriented to this frame on reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# The thesis' CT window (section 3.2.1): [-1000, 400] HU keeps lung parenchyma, vessels and
# soft tissue apart while mapping air to 0.
from lung_diffusers.labels import HU_WINDOW


@dataclass(frozen=True)
class CTVolume:
    """A CT volume in Hounsfield units with its geometry.

    Attributes:
        hu: int16 array ``[z, y, x]`` in HU, LPS-oriented (see module docstring).
        origin_mm: world position (x, y, z) in mm of voxel ``[0, 0, 0]``.
        spacing_mm: voxel size (x, y, z) in mm.
        series_uid: the DICOM SeriesInstanceUID (the LUNA16 file name without ``.mhd``).
        source_index_to_world: 3x4 affine taking a continuous index (column, row, slice) of the
            volume *as stored on disk* to world mm. LIDC contours are given in the stored pixel
            grid, so this keeps them usable after reorientation.
    """

    hu: np.ndarray
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    series_uid: str
    source_index_to_world: np.ndarray

    def world_to_voxel(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Continuous voxel index (x=column, y=row, z=slice) of world points (x, y, z) in mm."""
        return (np.asarray(xyz_mm, dtype=float) - self.origin_mm) / self.spacing_mm

    def voxel_to_world(self, xyz_index: np.ndarray) -> np.ndarray:
        """World points (x, y, z) in mm of continuous voxel indices (x=column, y=row, z=slice)."""
        return np.asarray(xyz_index, dtype=float) * self.spacing_mm + self.origin_mm

    def slice_z_mm(self, slice_index: int | np.ndarray) -> float | np.ndarray:
        """World z in mm of the centre of slice ``slice_index``."""
        return self.origin_mm[2] + np.asarray(slice_index) * self.spacing_mm[2]

    def source_pixel_to_world(self, column: np.ndarray, row: np.ndarray) -> np.ndarray:
        """World (x, y) in mm of pixel positions given in the on-disk (DICOM) pixel grid."""
        index = np.stack([np.asarray(column, float), np.asarray(row, float), np.zeros(np.shape(column))], -1)
        return (index @ self.source_index_to_world[:, :3].T + self.source_index_to_world[:, 3])[..., :2]


@dataclass(frozen=True)
class LabelVolume:
    """An integer label volume (e.g. a lung mask), LPS-oriented like :class:`CTVolume`.

    Attributes:
        array: ``[z, y, x]`` labels.
        origin_mm: world position (x, y, z) in mm of voxel ``[0, 0, 0]``.
        spacing_mm: voxel size (x, y, z) in mm.
    """

    array: np.ndarray
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]


def read_ct_volume(path: str | Path, series_uid: str | None = None) -> CTVolume:
    """Read a CT volume in HU: a file SimpleITK reads (``.mhd`` + ``.raw``/``.zraw``, NIfTI, NRRD)
    or a folder holding a DICOM series.

    The volume is reoriented to LPS if its direction matrix is not the identity, so array rows,
    columns and slices always follow LPS y, x and z. DICOM slices are sorted by position and
    rescaled to HU (RescaleSlope, RescaleIntercept) by SimpleITK/GDCM.

    Args:
        path: the volume file, or a folder of DICOM files.
        series_uid: which series to read when a DICOM folder holds several.

    Raises:
        FileNotFoundError: the path is missing, or a folder holds no DICOM series.
        ValueError: the file cannot be read (corrupt, or an ``.mhd`` whose data file is missing),
            a folder holds several series and ``series_uid`` does not pick one, or the volume is
            not a single-channel axial 3-D image.
    """
    image, source_index_to_world, uid = _read_lps_image(path, series_uid)
    hu = sitk.GetArrayFromImage(image)
    if not np.issubdtype(hu.dtype, np.integer) or hu.min() < -32768 or hu.max() > 32767:
        hu = np.clip(np.rint(hu), -32768, 32767)
    return CTVolume(
        hu=hu.astype(np.int16, copy=False),
        origin_mm=tuple(float(v) for v in image.GetOrigin()),
        spacing_mm=tuple(float(v) for v in image.GetSpacing()),
        series_uid=uid,
        source_index_to_world=source_index_to_world,
    )


def read_label_volume(path: str | Path) -> LabelVolume:
    """Read an integer label volume (e.g. ``seg-lungs-LUNA16/<seriesuid>.mhd``), LPS-oriented.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it cannot be read or is not a single-channel axial 3-D volume.
    """
    image, _, _ = _read_lps_image(path)
    return LabelVolume(
        array=sitk.GetArrayFromImage(image),
        origin_mm=tuple(float(v) for v in image.GetOrigin()),
        spacing_mm=tuple(float(v) for v in image.GetSpacing()),
    )


def _read_lps_image(path: str | Path, series_uid: str | None = None) -> tuple[sitk.Image, np.ndarray, str]:
    """The image reoriented to LPS, the 3x4 index-to-world affine of the image as stored, and its UID."""
    path = Path(path)
    if path.is_dir():
        image, uid = _read_dicom_series(path, series_uid)
    elif path.is_file():
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise ValueError(
                f"could not read volume {path}: {_reason(error)}. "
                "For LUNA16, keep each .mhd next to its complete .raw/.zraw data file."
            ) from error
        uid = _without_image_suffix(path.name)
    else:
        raise FileNotFoundError(f"volume not found: {path}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path} is not a single-channel 3-D volume (got {image.GetDimension()}-D)")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = np.array(image.GetSpacing())
    source_index_to_world = np.concatenate([direction * spacing, np.array(image.GetOrigin())[:, None]], axis=1)
    if not np.allclose(direction, np.eye(3)):
        # DICOMOrient only permutes and flips axes (no resampling), so voxel values are untouched.
        image = sitk.DICOMOrient(image, "LPS")
        if not np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-3):
            raise ValueError(f"{path} is not an axial volume (oblique direction {image.GetDirection()}); not supported")
    return image, source_index_to_world, uid


def _read_dicom_series(folder: Path, series_uid: str | None) -> tuple[sitk.Image, str]:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise FileNotFoundError(f"no DICOM series in {folder}")
    if series_uid is None and len(series_ids) > 1:
        raise ValueError(f"{folder} holds {len(series_ids)} DICOM series ({', '.join(series_ids)}); pass series_uid")
    uid = series_uid or series_ids[0]
    if uid not in series_ids:
        raise ValueError(f"DICOM series {uid} not in {folder} (found {', '.join(series_ids)})")
    reader = sitk.ImageSeriesReader()
    # GDCM sorts the files by slice position along the slice normal, not by file name.
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    try:
        return reader.Execute(), uid
    except RuntimeError as error:
        raise ValueError(f"could not read DICOM series {uid} in {folder}: {_reason(error)}") from error


def _reason(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _without_image_suffix(name: str) -> str:
    for suffix in (".nii.gz", ".mhd", ".mha", ".nii", ".nrrd"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def window_hu(hu: np.ndarray, window_hu: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Map HU linearly to uint8: ``window_hu[0]`` and below to 0, ``window_hu[1]`` and above to 255.

    ``value = round((clip(hu, lo, hi) - lo) / (hi - lo) * 255)``. With the default lung window,
    -1000 HU is 0 and 400 HU is 255 (about 5.49 HU per grey level).
    """
    lower, upper = window_hu
    if not upper > lower:
        raise ValueError(f"window_hu must be (lower, upper) with upper > lower, got {window_hu}")
    scaled = (np.clip(hu, lower, upper).astype(np.float32) - lower) * (255.0 / (upper - lower))
    return np.rint(scaled).astype(np.uint8)


def unwindow_hu(windowed: np.ndarray, window_hu: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Map window grey levels (0-255, e.g. a generated image) back to HU, as float32.

    The inverse of :func:`window_hu` within the window: ``lo + value / 255 * (hi - lo)``. Values
    that were clipped (below ``lo`` or above ``hi``) come back as ``lo`` or ``hi``; within the
    window a round trip is exact to half a grey level (about 2.7 HU for the lung window).
    """
    lower, upper = window_hu
    if not upper > lower:
        raise ValueError(f"window_hu must be (lower, upper) with upper > lower, got {window_hu}")
    return (np.asarray(windowed, np.float32) * np.float32((upper - lower) / 255.0) + np.float32(lower)).astype(
        np.float32
    )
