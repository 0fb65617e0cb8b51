"""Reading CT volumes in Hounsfield units, and label volumes, in one orientation (files or DICOM folders).

Volumes are returned as NumPy arrays indexed ``[z, y, x]`` in the DICOM patient frame (LPS):
x grows toward the patient's left, y toward the patient's back, z toward the head. Slice 0 is
the most inferior slice. Rows of a slice therefore run anterior to posterior (LPS y) and columns
run from the patient's right to the patient's left (LPS x): the usual radiological view, with no
flip applied. Scans stored with another direction matrix are reoriented to this frame on reading.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# Bytes per voxel of the MetaImage element types with a fixed size.
_METAIMAGE_ELEMENT_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
_LUNA16_HINT = "For LUNA16, keep each .mhd next to its complete .raw/.zraw data file (download or unzip it again)."


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
        ValueError: the file cannot be read (corrupt, or an ``.mhd`` whose data file is missing or
            holds fewer voxels than its header says), a folder holds several series and
            ``series_uid`` does not pick one, or the volume is not a single-channel axial 3-D image.
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
        if path.suffix.lower() == ".mhd":
            _check_metaimage_data(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise ValueError(f"could not read volume {path}: {_reason(error)}. {_LUNA16_HINT}") from error
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


def _check_metaimage_data(header: Path) -> None:
    """Raise ValueError when the data file of a MetaImage header is missing or holds less than the header says.

    SimpleITK reports both as "No such file or directory", and it reads compressed data that ends
    early without complaint (the missing slices are filled in, typically with zeros).
    """
    fields = {}
    for line in header.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
    name, element_bytes = fields.get("ElementDataFile", ""), _METAIMAGE_ELEMENT_BYTES.get(fields.get("ElementType"))
    if name in ("", "LOCAL", "LIST") or " " in name or "%" in name or element_bytes is None:
        return  # data inside the header, split over several files, or an unusual type: left to SimpleITK
    data = header.parent / name
    if not data.is_file():
        raise ValueError(
            f"could not read volume {header}: its data file {data} (ElementDataFile) is missing. {_LUNA16_HINT}"
        )
    try:
        shape = [int(v) for v in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        header_bytes = max(int(fields.get("HeaderSize", "0")), 0)  # -1: data at the end, no header to skip
        compressed_size = int(fields.get("CompressedDataSize", "0"))
    except (KeyError, ValueError):
        return  # a malformed header: SimpleITK says what is wrong with it
    needed = math.prod(shape) * channels * element_bytes
    what = f"{' x '.join(map(str, shape))} voxels of {fields['ElementType']} need {needed:,} bytes"
    if fields.get("CompressedData", "False").lower() != "true":
        held = data.stat().st_size - header_bytes
        if held < needed:
            raise ValueError(
                f"could not read volume {header}: its data file {data} holds {held:,} bytes, but the header's {what}: "
                f"the file is truncated, or DimSize claims more slices than it holds. {_LUNA16_HINT}"
            )
        return
    if data.stat().st_size < compressed_size:
        raise ValueError(
            f"could not read volume {header}: its compressed data file {data} is truncated: it holds "
            f"{data.stat().st_size:,} of the {compressed_size:,} bytes the header names. {_LUNA16_HINT}"
        )
    held = _zlib_decompressed_size(data)
    if held is None:
        raise ValueError(
            f"could not read volume {header}: its compressed data file {data} is cut short or corrupt (the zlib "
            f"stream does not end properly). {_LUNA16_HINT}"
        )
    if held < needed:
        raise ValueError(
            f"could not read volume {header}: its compressed data file {data} unpacks to {held:,} bytes, but the "
            f"header's {what} (DimSize claims more slices than the data holds). Fix DimSize or get a matching "
            "header and data file."
        )


def _zlib_decompressed_size(path: Path, chunk_bytes: int = 1 << 20) -> int | None:
    """Bytes the zlib stream in ``path`` unpacks to (read in chunks, nothing kept), or None if it is cut short."""
    stream, size = zlib.decompressobj(), 0
    try:
        with open(path, "rb") as file:
            while not stream.eof and (chunk := file.read(chunk_bytes)):
                size += len(stream.decompress(chunk))
    except zlib.error:
        return None
    return size if stream.eof else None


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
