"""Fidelity of synthetic CT slices to their label maps: lung Dice and median HU per region.

``training/evaluate_fidelity.py`` applies these to every generated slice of the held-out masks and, by the
same rules on the same masks, to the real slices (:mod:`.fidelity_report` turns them into the model card's
table). The rules:

- **Lung Dice**: the mask's lungs (labels 2 and 3; trachea and nodules are not lung) against the image's
  air (below -500 HU) inside the mask's body (labels > 0). Air in the trachea therefore counts against
  the score, of real and synthetic slices alike. Undefined (NaN) for a mask without lung; such masks are
  left out of the average.
- **Median HU** of three regions: the lungs (labels 2 and 3), the background (label 0) and soft tissue:
  body pixels (label 1 exactly) more than ``margin_px`` from any lung, trachea or nodule pixel (Euclidean
  distance between pixel centres, :func:`scipy.ndimage.distance_transform_edt`), so that partial-volume
  pixels at the lung border do not count. The margin is 3 px at 64 px and scales with the image side
  (:func:`soft_tissue_margin_px`): about 16-20 mm on LIDC-IDRI scans (350-420 mm field of view).
- **Averages**: one figure per image (medians per image, not pooled over pixels), then the mean over
  images, skipping NaNs (an image without that region). ``mid-chest`` masks are the half of the
  lung-containing masks with the most lung pixels (:func:`mid_chest`); slices near the apex or the
  diaphragm have little lung and a lower Dice, so the mid-chest mean is shown as extra information while
  the targets apply to all lung-containing masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..ct import BACKGROUND, BODY, LEFT_LUNG, RIGHT_LUNG, hu_from_model_range  # noqa: F401 (part of this module's interface)

AIR_THRESHOLD_HU = -500.0
# The project's targets for a trained model (see `targets_met`).
DICE_TARGET = 0.85
DICE_MAX_GAP_TO_REAL = 0.05
LUNG_HU_BELOW = -600.0
SOFT_TISSUE_HU_WITHIN = 250.0
BACKGROUND_HU_BELOW = -800.0
REGIONS = ("lungs", "soft_tissue", "background")


def lung_mask(mask: np.ndarray) -> np.ndarray:
    """The left and right lung labels (2 and 3) of a label map; trachea and nodules are not lung."""
    return np.isin(mask, (LEFT_LUNG, RIGHT_LUNG))


def lung_dice(hu: np.ndarray, mask: np.ndarray, air_threshold_hu: float = AIR_THRESHOLD_HU) -> float:
    """Dice between the mask's lungs and the image's air (< ``air_threshold_hu``) inside the mask's body.

    Returns NaN when the mask has no lung (Dice is undefined there).
    """
    _check_pair(hu, mask)
    lungs = lung_mask(mask)
    if not lungs.any():
        return math.nan
    air = (hu < air_threshold_hu) & (mask > BACKGROUND)
    return float(2.0 * np.count_nonzero(lungs & air) / (np.count_nonzero(lungs) + np.count_nonzero(air)))


def soft_tissue_margin_px(resolution: int) -> int:
    """The soft-tissue margin at an image side of ``resolution`` px: 3 px at 64 px, scaled, at least 1."""
    return max(1, round(3 * resolution / 64))


def soft_tissue_mask(mask: np.ndarray, margin_px: float) -> np.ndarray:
    """Body pixels (label 1) farther than ``margin_px`` from every lung, trachea or nodule pixel (labels >= 2)."""
    airway_or_lung = mask > BODY
    if not airway_or_lung.any():
        return mask == BODY
    distance = ndi.distance_transform_edt(~airway_or_lung)
    return (mask == BODY) & (distance > margin_px)


def region_masks(mask: np.ndarray, margin_px: float) -> dict[str, np.ndarray]:
    """The regions whose median HU is reported: ``lungs``, ``soft_tissue`` and ``background``."""
    return {
        "lungs": lung_mask(mask),
        "soft_tissue": soft_tissue_mask(mask, margin_px),
        "background": mask == BACKGROUND,
    }


def median_hu(hu: np.ndarray, region: np.ndarray) -> float:
    """Median HU of ``hu`` over the pixels of ``region``; NaN for an empty region."""
    values = np.asarray(hu)[np.asarray(region, dtype=bool)]
    return float(np.median(values)) if values.size else math.nan


def slice_fidelity(
    hu: np.ndarray, mask: np.ndarray, margin_px: float, air_threshold_hu: float = AIR_THRESHOLD_HU
) -> dict[str, float]:
    """All figures of one slice: ``dice`` and ``median_hu_<region>`` for each region (NaN where undefined)."""
    _check_pair(hu, mask)
    figures = {"dice": lung_dice(hu, mask, air_threshold_hu)}
    for name, region in region_masks(mask, margin_px).items():
        figures[f"median_hu_{name}"] = median_hu(hu, region)
    return figures


def mid_chest(lung_pixels: Sequence[int]) -> np.ndarray:
    """Boolean flags of the mid-chest masks: the half (rounded up) of the lung-containing ones with most lung.

    Ties are broken by order, so the choice is stable.
    """
    lung_pixels = np.asarray(lung_pixels)
    with_lung = np.flatnonzero(lung_pixels > 0)
    ranked = with_lung[np.argsort(-lung_pixels[with_lung], kind="stable")]
    flags = np.zeros(lung_pixels.shape, bool)
    flags[ranked[: (len(ranked) + 1) // 2]] = True
    return flags


def mean_over_images(values: Sequence[float]) -> tuple[float, int]:
    """Mean of the defined (non-NaN) values and how many there were; (NaN, 0) when none."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return (float(defined.mean()) if defined.size else math.nan), int(defined.size)


def targets_met(synthetic: dict[str, float], real: dict[str, float]) -> dict[str, bool]:
    """Which targets the synthetic means meet (a NaN figure meets none).

    Args:
        synthetic, real: means over images of ``dice`` (all lung-containing masks) and ``median_hu_<region>``.
    """
    dice, real_dice = synthetic["dice"], real["dice"]
    return {
        "lung_dice": dice >= DICE_TARGET and dice >= real_dice - DICE_MAX_GAP_TO_REAL,
        "lungs": synthetic["median_hu_lungs"] < LUNG_HU_BELOW,
        "soft_tissue": abs(synthetic["median_hu_soft_tissue"]) <= SOFT_TISSUE_HU_WITHIN,
        "background": synthetic["median_hu_background"] < BACKGROUND_HU_BELOW,
    }


def _check_pair(hu: np.ndarray, mask: np.ndarray) -> None:
    if np.shape(hu) != np.shape(mask) or np.ndim(mask) != 2:
        raise ValueError(f"hu and mask must be 2-D arrays of the same shape, got {np.shape(hu)} and {np.shape(mask)}")
