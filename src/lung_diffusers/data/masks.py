"""Semantic label maps for one CT slice, following the thesis' mask recipe (Listings 1 and 3).

Classes (pixel values of the stored mask PNGs):

- 0 background: outside the patient
- 1 body: lung window > 127, holes filled, largest region
- 2 left lung: the patient's left lung (the image's right half in the stored orientation)
- 3 right lung: the patient's right lung
- 4 trachea: trachea and main bronchi
- 5 nodule: a LUNA16 reference nodule. In the malignancy-aware map of Listing 3, 5 is a benign
  nodule and 6 a malignant one.

Where structures overlap, the higher class wins, as in the thesis' ``argmax`` over the stacked
``class * mask`` images. The class ids are :mod:`lung_diffusers.ct`'s, re-exported here.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from .._moved_names import moved_names
from ..ct import (  # noqa: F401 (class ids are part of this module's interface)
    BACKGROUND,
    BENIGN_NODULE,
    BODY,
    LEFT_LUNG,
    MALIGNANT_NODULE,
    NODULE,
    RIGHT_LUNG,
    TRACHEA,
    resize_slice,
)

# Thesis: "Each slice is intensity thresholded at 127" on the lung-window image, i.e. about -303 HU.
BODY_THRESHOLD = 127
# Thesis Listing 1 dilates the nodule disc with a 5x5 kernel before thresholding, so the
# intensity clustering sees the nodule's rim and some surrounding parenchyma.
_NODULE_DILATION_KERNEL = np.ones((5, 5), np.uint8)
_EIGHT_CONNECTED = np.ones((3, 3), bool)


def body_mask(windowed_slice: np.ndarray, threshold: int = BODY_THRESHOLD) -> np.ndarray:
    """The patient's body in one lung-windowed slice (thesis Listing 1, ``make_body_mask``).

    Pixels above ``threshold`` (uint8 lung window, see :func:`~lung_diffusers.data.ct_io.window_hu`),
    with holes filled (so the lungs are inside), keeping only the largest 8-connected region (this
    drops the scanner table, arms separated from the trunk, and noise).

    Args:
        windowed_slice: uint8 ``[y, x]`` lung-window image.
        threshold: grey level; pixels strictly above it are tissue.

    Returns:
        bool ``[y, x]``; all False when nothing is above the threshold.
    """
    tissue = ndi.binary_fill_holes(windowed_slice > threshold)
    components, count = ndi.label(tissue, _EIGHT_CONNECTED)
    if count == 0:
        return tissue
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == np.argmax(sizes)


def nodule_mask_from_annotation(
    windowed_slice: np.ndarray, center_px: tuple[float, float], diameter_px: float
) -> np.ndarray:
    """Nodule pixels in one slice from a centre and diameter (thesis Listing 1, ``make_mask`` + K-means).

    A disc of radius ``ceil(diameter_px) // 2`` around the rounded centre, dilated with a 5x5
    kernel, selects the region of interest. Its non-zero intensities are clustered into two groups
    with K-means (:func:`kmeans_two_cluster_threshold`); pixels of the region brighter than the
    mean of the two cluster centres are the nodule.

    Args:
        windowed_slice: uint8 ``[y, x]`` lung-window image.
        center_px: nodule centre as (column, row) in pixels of this slice.
        diameter_px: nodule diameter in pixels (diameter in mm divided by the pixel spacing).

    Returns:
        bool ``[y, x]`` nodule mask (empty if the disc lies outside the slice).
    """
    if not diameter_px > 0:
        raise ValueError(f"nodule diameter must be positive, got {diameter_px} px")
    disc = np.zeros(windowed_slice.shape, np.uint8)
    center = (int(np.rint(center_px[0])), int(np.rint(center_px[1])))
    cv2.circle(disc, center, int(np.ceil(diameter_px)) // 2, 255, thickness=-1)
    region = cv2.dilate(disc, _NODULE_DILATION_KERNEL) > 0
    values = windowed_slice[region]
    # The thesis clusters only non-zero pixels: air at or below -1000 HU is not nodule candidate.
    values = values[values > 0]
    if np.unique(values).size < 2:
        return region & (windowed_slice > 0)
    threshold = kmeans_two_cluster_threshold(values)
    roi = np.where(region, windowed_slice, 0).astype(np.uint8)
    _, nodule = cv2.threshold(roi, threshold, 1, cv2.THRESH_BINARY)
    return nodule.astype(bool)


def kmeans_two_cluster_threshold(values: np.ndarray) -> float:
    """Mean of the two centres of a 1-D K-means clustering (k = 2) of ``values``.

    In one dimension the optimal 2-means split is the split with the least within-class
    variance, which is exactly Otsu's threshold; the two cluster centres are then the means on
    either side. This gives the thesis' K-means threshold without the iterative (and, for a few
    hundred pixels, thread-bound and slow) K-means fit, and deterministically.
    """
    split = threshold_otsu(np.asarray(values))
    below, above = values[values <= split], values[values > split]
    return float((below.mean() + above.mean()) / 2.0)


def compose_label_map(body: np.ndarray, lungs_and_trachea: np.ndarray, nodules: np.ndarray | None = None) -> np.ndarray:
    """Combine structure masks into one label map; the higher class wins where they overlap.

    Args:
        body: bool ``[y, x]`` body mask.
        lungs_and_trachea: uint8 ``[y, x]`` with 0, ``LEFT_LUNG``, ``RIGHT_LUNG``, ``TRACHEA``.
        nodules: optional uint8 ``[y, x]`` holding nodule class values (``NODULE``, or
            ``BENIGN_NODULE`` / ``MALIGNANT_NODULE``) and 0 elsewhere.

    Returns:
        uint8 ``[y, x]`` label map.
    """
    labels = np.where(body, BODY, BACKGROUND).astype(np.uint8)
    np.maximum(labels, lungs_and_trachea, out=labels)
    if nodules is not None:
        np.maximum(labels, nodules, out=labels)
    return labels


def resize_ct_image(windowed_slice: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 CT slice to ``size x size`` (area averaging when shrinking, so no aliasing)."""
    return resize_slice(windowed_slice, size)


__getattr__, __dir__ = moved_names(__name__, "lung_diffusers.ct", ("resize_label_map",), globals())
