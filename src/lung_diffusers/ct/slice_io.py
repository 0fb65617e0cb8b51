"""One CT slice or label map from a file: PNG, NIfTI (or any volume SimpleITK reads) or a DICOM series; resizing.

Images are handled as *window images*: float32 ``(H, W)`` in [0, 1], where 0 is -1000 HU and 1 is 400 HU (the
data recipe's lung window; its 8-bit PNGs divided by 255; see :mod:`.window`). Volumes are read with
:func:`~lung_diffusers.ct.read_ct_volume` (LPS orientation, DICOM sorted by position), so a slice index
means what it means in the recipe's datasets: 0 is the most inferior slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .window import HU_WINDOW, image_from_hu

_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".dcm")
_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class CTSlice:
    """A CT slice as the inpainting helpers take it.

    Attributes:
        image: float32 ``(H, W)`` window image in [0, 1] (0 = ``hu_window[0]``, 1 = ``hu_window[1]``).
        pixel_mm: (row, column) pixel size in mm, or `None` when the file does not say (PNG).
        source: where it came from (path, and slice index for volumes), for records and figures.
    """

    image: np.ndarray
    pixel_mm: tuple[float, float] | None
    source: str


def as_window_image(image: np.ndarray) -> np.ndarray:
    """A uint8 lung-window slice (the recipe's PNGs) or a float one in [0, 1] -> float32 ``(H, W)`` in [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"a CT slice must be a 2-D (H, W) array, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype.kind != "f":
        raise TypeError(
            f"a CT slice must be uint8 (lung window 0-255) or float in [0, 1], got dtype {array.dtype}; "
            "for Hounsfield units use image_from_hu"
        )
    if not np.isfinite(array).all():
        raise ValueError("the CT slice contains NaN or infinite values")
    if array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"a float CT slice must lie in [0, 1] (the lung window), got {array.min():g} to {array.max():g}; "
            "for Hounsfield units use image_from_hu"
        )
    return array.astype(np.float32)


def read_ct_slice(
    path: str | Path,
    slice_index: int | None = None,
    series_uid: str | None = None,
    hu_window: Sequence[float] = HU_WINDOW,
) -> CTSlice:
    """Read one CT slice as a window image.

    Args:
        path: a grey PNG (or other picture) in the lung window, as the data recipe stores slices; a NIfTI, MetaImage,
            NRRD or single DICOM file in HU (2-D, or 3-D with ``slice_index``); or a folder holding a DICOM series.
        slice_index: which axial slice of a volume or DICOM series (0 = most inferior, as in the recipe's
            ``slice_index`` column). Not needed for a single 2-D slice.
        series_uid: which series when a DICOM folder holds several.
        hu_window: the window mapped to [0, 1] for volumes in HU.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unknown file type, a volume without (or with an out-of-range) ``slice_index``, or a colour picture.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    name = path.name.lower()
    if path.is_file() and name.endswith(_PICTURE_SUFFIXES):
        return CTSlice(_read_grey_picture(path).astype(np.float32) / 255.0, None, str(path))
    hu, pixel_mm, where = _read_volume_slice(path, slice_index, series_uid)
    return CTSlice(image_from_hu(hu, hu_window), pixel_mm, f"{path}{where}")


def read_label_slice(path: str | Path, slice_index: int | None = None) -> np.ndarray:
    """Read a label map or binary mask slice as uint8 ``(H, W)``: a grey PNG of class values (the recipe's masks,
    or 0/255 masks), or a NIfTI / MetaImage label volume (LPS, with ``slice_index`` for 3-D volumes)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file() and path.name.lower().endswith(_PICTURE_SUFFIXES):
        return _read_grey_picture(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder: label maps are read from PNG or NIfTI files")
    labels, _, _ = _read_volume_slice(path, slice_index, None, labels=True)
    if labels.min() < 0 or labels.max() > 255 or not np.array_equal(labels, np.round(labels)):
        raise ValueError(f"{path} does not hold integer labels 0-255")
    return labels.astype(np.uint8)


def resize_slice(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a CT slice to ``size x size`` with area averaging (no aliasing when shrinking), as the data recipe
    does: a uint8 grey slice stays uint8, anything else becomes a float32 window image."""
    import cv2

    dtype = np.uint8 if image.dtype == np.uint8 else np.float32
    if image.shape == (size, size):
        return image.astype(dtype, copy=True)
    return cv2.resize(image.astype(dtype, copy=False), (size, size), interpolation=cv2.INTER_AREA)


def resize_binary_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a binary mask to ``size x size``: an output pixel is set when any input pixel under it is (so a
    region to regenerate never shrinks away)."""
    import cv2

    mask = np.asarray(mask) > 0
    if mask.shape == (size, size):
        return mask.copy()
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0


def _read_grey_picture(path: Path) -> np.ndarray:
    import PIL.Image

    with PIL.Image.open(path) as picture:
        if picture.mode in ("RGB", "RGBA"):
            rgb = np.asarray(picture.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                raise ValueError(f"{path} is a colour picture; a CT slice or label map must be grey (mode L)")
            return rgb[..., 0].copy()
        if picture.mode not in ("L", "P", "1"):
            raise ValueError(
                f"{path} has PNG mode {picture.mode}; expected an 8-bit grey picture (the recipe's lung-window PNGs "
                "and label maps). For HU data use NIfTI or DICOM"
            )
        return np.asarray(picture.convert("L") if picture.mode == "1" else picture).astype(np.uint8)


def _read_volume_slice(path: Path, slice_index: int | None, series_uid: str | None, labels: bool = False):
    """(slice array, (row, column) pixel mm, ' slice N' or '') of a volume, a 2-D image file or a DICOM folder."""
    import SimpleITK as sitk

    from .volumes import read_ct_volume, read_label_volume

    if path.is_file() and not path.name.lower().endswith(_VOLUME_SUFFIXES):
        raise ValueError(
            f"cannot read {path}: expected a PNG, a NIfTI (.nii, .nii.gz), MetaImage (.mhd, .mha), NRRD or DICOM (.dcm) "
            "file, or a folder holding a DICOM series"
        )
    if path.is_file():
        try:
            info = sitk.ImageFileReader()
            info.SetFileName(str(path))
            info.ReadImageInformation()
            size = info.GetSize()
        except RuntimeError as error:
            raise ValueError(f"could not read {path}: {str(error).strip().splitlines()[-1]}") from None
        if len(size) == 2 or (len(size) == 3 and size[2] == 1):
            image = sitk.ReadImage(str(path))
            array = sitk.GetArrayFromImage(image).astype(np.float32).reshape(size[1], size[0])
            spacing = image.GetSpacing()
            return array, (float(spacing[1]), float(spacing[0])), ""
    volume = read_label_volume(path) if labels else read_ct_volume(path, series_uid)
    array = volume.array if labels else volume.hu
    count = array.shape[0]
    if slice_index is None:
        raise ValueError(f"{path} holds {count} slices: give a slice index (0 = most inferior, up to {count - 1})")
    if not 0 <= slice_index < count:
        raise ValueError(f"slice index {slice_index} is outside {path}, which holds slices 0 to {count - 1}")
    spacing = volume.spacing_mm
    return array[slice_index].astype(np.float32), (float(spacing[1]), float(spacing[0])), f" slice {slice_index}"
