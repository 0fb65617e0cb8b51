"""Files users upload: label maps, real CT slices and nodule masks, read and checked with messages a user can act on.

Every function raises ``ValueError`` (or ``FileNotFoundError``) with a sentence that names the file and what to
change; the UI shows that sentence, never a traceback. The reading itself is the package's (``read_ct_slice``,
``read_label_slice``), so the Space reads files exactly as the ``lung-diffusers`` command does.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image

from lung_diffusers.ct import (
    BENIGN_NODULE,
    MALIGNANT_NODULE,
    label_scheme,
    read_ct_slice,
    read_label_slice,
    resize_binary_mask,
    resize_label_map,
    resize_slice,
)
from lung_diffusers.inpainting.settings import RECIPE_IMAGE_SIZE

from .mask_painting import DEFAULT_FIELD_OF_VIEW_MM

# Real slices are worked on at the data recipe's size (the healthy prior was trained on 64-px crops of 256-px
# slices); uploads of another square size are resized to it as the recipe resizes.
REAL_SLICE_SIZE = RECIPE_IMAGE_SIZE


def _name(path) -> str:
    return Path(path).name


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        found = sorted(int(v) for v in np.unique(labels) if v >= num_classes)
        hint = label_scheme(num_classes).unknown_label_hint(found)
        raise ValueError(
            f"{where} holds label value(s) {found[:5]}, but this model knows classes 0-{num_classes - 1} "
            f"(0 background, 1 body, 2 left lung, 3 right lung, 4 trachea, 5+ nodule){hint}. If it is a picture of "
            "a mask in colours, save the class ids instead (a grey PNG whose pixel values are 0, 1, 2, ...)"
        )


def _square_to(labels: np.ndarray, size: int, where: str) -> np.ndarray:
    height, width = labels.shape
    if height != width:
        raise ValueError(f"{where} is {width}x{height} px; label maps must be square (as the data recipe's)")
    if height < size:
        raise ValueError(
            f"{where} is {width}x{height} px, smaller than the model's {size}x{size}; upload it at {size} px or more"
        )
    return resize_label_map(labels, size) if height != size else labels


def read_label_map(path: str | Path, num_classes: int, size: int) -> np.ndarray:
    """A label-map PNG (grey, pixel value = class id) as a uint8 ``size x size`` map.

    A larger square map (e.g. the recipe's 256-px masks) is shrunk by area-weighted majority, as the recipe does.
    """
    where = _name(path)
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"{where} is not a PNG: load a label map as a grey PNG of class ids (0-{num_classes - 1})")
    try:
        labels = read_label_slice(path)
    except PIL.UnidentifiedImageError:
        raise ValueError(f"{where} could not be read as a PNG image") from None
    _check_labels(labels, num_classes, where)
    return _square_to(labels, size, where)


def _gather_dicom_series(paths: Sequence[str | Path]) -> Path:
    """Several uploaded DICOM files -> one folder holding them (``read_ct_slice`` reads a series from a folder)."""
    folder = Path(tempfile.mkdtemp(prefix="lung-space-dicom-"))
    for index, path in enumerate(paths):
        shutil.copy(path, folder / f"{index:05d}_{_name(path)}")
    return folder


def read_real_slice(
    paths: Sequence[str | Path] | str | Path, slice_index: int | None = None
) -> tuple[np.ndarray, float, str]:
    """A real CT slice from one PNG (lung window), NIfTI / MetaImage / DICOM file, or several DICOM files of a
    series, at :data:`REAL_SLICE_SIZE` px.

    Returns:
        ``(uint8 image, pixel spacing in mm at that size, source description)``. PNG files carry no spacing: the
        default field of view (:data:`DEFAULT_FIELD_OF_VIEW_MM`) is assumed.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [p for p in paths if p]
    if not paths:
        raise ValueError("upload a real slice first: a PNG (lung window), a NIfTI file, or DICOM file(s)")
    if slice_index is not None and (not float(slice_index).is_integer() or slice_index < 0):
        raise ValueError(f"the slice index must be a whole number >= 0, got {slice_index}")
    slice_index = None if slice_index is None else int(slice_index)
    if len(paths) > 1:
        if not all(str(p).lower().endswith(".dcm") for p in paths):
            raise ValueError("several files are read as one DICOM series: upload only .dcm files, or a single file")
        folder = _gather_dicom_series(paths)
        try:
            ct = read_ct_slice(folder, slice_index)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        try:
            ct = read_ct_slice(paths[0], slice_index)
        except PIL.UnidentifiedImageError:
            raise ValueError(f"{_name(paths[0])} could not be read as an image") from None
    image = ct.image
    height, width = image.shape
    if height != width:
        raise ValueError(
            f"the slice is {width}x{height} px; the Space works on square axial slices (as the data recipe)"
        )
    if height < 64:
        raise ValueError(
            f"the slice is only {width}x{height} px; upload a CT slice of at least 64 px (256 or 512 usual)"
        )
    pixel_mm = ct.pixel_mm[0] * height / REAL_SLICE_SIZE if ct.pixel_mm else DEFAULT_FIELD_OF_VIEW_MM / REAL_SLICE_SIZE
    image = resize_slice(image, REAL_SLICE_SIZE)
    grey = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    source = (
        ct.source
        if len(paths) == 1
        else f"DICOM series of {len(paths)} files{'' if slice_index is None else f', slice {slice_index}'}"
    )
    return grey, float(pixel_mm), source.replace(str(Path(paths[0]).parent) + "/", "")


def read_slice_labels(path: str | Path, slice_index: int | None, num_classes: int) -> np.ndarray:
    """The label map of a real slice (PNG of class ids, or a NIfTI label volume with the slice index) at
    :data:`REAL_SLICE_SIZE` px."""
    where = _name(path)
    try:
        labels = read_label_slice(path, None if slice_index is None else int(slice_index))
    except PIL.UnidentifiedImageError:
        raise ValueError(f"{where} could not be read as an image") from None
    _check_labels(labels, num_classes, where)
    return _square_to(labels, REAL_SLICE_SIZE, where)


def read_nodule_mask(path: str | Path, slice_index: int | None) -> np.ndarray:
    """A nodule mask file: binary (0/1 or 0/255: nonzero = nodule) or a label map whose classes 5/6 are the
    nodule, as a bool map at :data:`REAL_SLICE_SIZE` px."""
    where = _name(path)
    try:
        mask = read_label_slice(path, None if slice_index is None else int(slice_index))
    except PIL.UnidentifiedImageError:
        raise ValueError(f"{where} could not be read as an image") from None
    values = set(np.unique(mask).tolist())
    nodule = mask > 0 if values <= {0, 1, 255} else np.isin(mask, (BENIGN_NODULE, MALIGNANT_NODULE))
    height, width = nodule.shape
    if height != width:
        raise ValueError(f"{where} is {width}x{height} px; the nodule mask must be square like the slice")
    nodule = resize_binary_mask(nodule, REAL_SLICE_SIZE) if height != REAL_SLICE_SIZE else nodule
    if not nodule.any():
        raise ValueError(f"{where} marks no nodule (no nonzero pixel, and no class 5/6)")
    return nodule
