"""The thesis' mask recipe (Listing 1, with Listing 3's malignancy classes) for one CT slice.

1. Window the slice to [-1000, 400] HU and map it to 0-255.
2. Body mask: windowed > 127, holes filled, largest region.
3. Left lung, right lung and trachea from the lung labels (official LUNA16 masks or
   :mod:`~lung_diffusers.data.lung_segmentation`).
4. Each nodule: disc from centre and diameter, dilated 5x5, K-means (k = 2) threshold inside.
5. Compose: background 0, body 1, left lung 2, right lung 3, trachea 4, nodule 5; the higher class
   wins. The malignancy-aware map uses 5 for benign and 6 for malignant nodules instead.
6. Resize the image (area averaging) and the label maps (area-weighted majority) to the output size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lung_diffusers.ct import HU_WINDOW, CTVolume, resize_label_map, window_hu
from lung_diffusers.data.lung_segmentation import LungLabels
from lung_diffusers.data.malignancy import NoduleMalignancy
from lung_diffusers.data.masks import (
    BENIGN_NODULE,
    MALIGNANT_NODULE,
    NODULE,
    body_mask,
    compose_label_map,
    nodule_mask_from_annotation,
    resize_ct_image,
)
from lung_diffusers.data.slice_selection import NoduleSection, lung_area_mm2


@dataclass(frozen=True)
class LabelledSlice:
    """One CT slice with its semantic masks, at the output size.

    Attributes:
        image: uint8 ``[size, size]`` lung-window CT image.
        mask: uint8 ``[size, size]`` labels 0-5 (0-4 when the slice has no nodule).
        malignancy_mask: uint8 ``[size, size]`` labels 0-6, or None when the slice has a nodule
            without a malignancy rating (or no malignancy was requested).
        lung_area_mm2: area of the left and right lung labels in the full-resolution slice.
    """

    image: np.ndarray
    mask: np.ndarray
    malignancy_mask: np.ndarray | None
    lung_area_mm2: float


def label_slice(
    volume: CTVolume,
    slice_index: int,
    lung_labels: LungLabels,
    image_size: int,
    nodules: Sequence[tuple[NoduleSection, NoduleMalignancy | None]] = (),
    window: tuple[float, float] = HU_WINDOW,
) -> LabelledSlice:
    """Apply the mask recipe (module docstring) to slice ``slice_index`` of ``volume``.

    Args:
        volume: the CT volume.
        slice_index: index of the axial slice (0 = most inferior).
        lung_labels: lung/trachea labels for this volume.
        image_size: side of the square output images in pixels.
        nodules: the nodules drawn in this slice, each with its malignancy (None if unknown).
        window: CT window in HU.
    """
    hu_slice = volume.hu[slice_index]
    windowed = window_hu(hu_slice, window)
    body = body_mask(windowed)
    lungs = lung_labels.slice_labels(slice_index, hu_slice, body)

    nodule_labels = malignancy_labels = None
    if nodules:
        nodule_labels = np.zeros(hu_slice.shape, np.uint8)
        malignancy_labels = np.zeros(hu_slice.shape, np.uint8)
        for section, malignancy in nodules:
            column, row, _ = volume.world_to_voxel(section.annotation.center_mm)
            nodule = nodule_mask_from_annotation(windowed, (column, row), section.diameter_mm / volume.spacing_mm[0])
            nodule_labels[nodule] = NODULE
            if malignancy is None or malignancy.is_malignant is None:
                malignancy_labels = None
            elif malignancy_labels is not None:
                value = MALIGNANT_NODULE if malignancy.is_malignant else BENIGN_NODULE
                np.maximum(malignancy_labels, np.where(nodule, value, 0).astype(np.uint8), out=malignancy_labels)

    mask = compose_label_map(body, lungs, nodule_labels)
    malignancy_mask = None
    if malignancy_labels is not None:
        malignancy_mask = resize_label_map(compose_label_map(body, lungs, malignancy_labels), image_size)
    return LabelledSlice(
        image=resize_ct_image(windowed, image_size),
        mask=resize_label_map(mask, image_size),
        malignancy_mask=malignancy_mask,
        lung_area_mm2=lung_area_mm2(lungs, volume.spacing_mm[0] * volume.spacing_mm[1]),
    )
