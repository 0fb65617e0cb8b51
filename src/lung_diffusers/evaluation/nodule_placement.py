"""The nodules whose contrast issue 17's cascade evaluation measures: nodules it places, and nodules a map holds.

* **Placed nodules** (:func:`place_nodules`): discs of given diameters in mm, converted to pixels with the slice's
  own spacing, each at ``positions`` random centres where the whole disc lies inside a lung
  (:func:`lung_diffusers.synthesis.mask_plan.nodule_position`). The centres are a pure function of the map's
  content, the diameter and the position's index, so a resumed or repeated evaluation places the same nodules.
* **Drawn nodules** (:func:`drawn_nodules`): the connected components of a map's nodule classes (the recipe's
  LUNA16 nodules), each with the diameter in mm of the circle of its area.

Contrast is :func:`lung_diffusers.evaluation.cascade_metrics.nodule_contrast_hu` on either.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NodulePlacement:
    """One placed nodule: a disc of ``diameter_px`` (``diameter_mm`` at the slice's spacing) at ``center_px``
    (row, column); ``position`` is its index among the centres drawn for that diameter."""

    diameter_mm: float
    diameter_px: float
    center_px: tuple[int, int]
    position: int

    def disc(self, shape: tuple[int, int]) -> np.ndarray:
        """The nodule's pixels, bool ``shape``."""
        from ..inpainting.nodule_insertion import disc_mask  # imports torch: not at this package's import

        return disc_mask(shape, self.center_px, self.diameter_px)

    def label_map(self, labels: np.ndarray, nodule_label: int) -> np.ndarray:
        """``labels`` with the nodule painted in as ``nodule_label`` (uint8 copy)."""
        from ..inpainting.nodule_insertion import edit_label_map

        return edit_label_map(np.asarray(labels), self.disc(np.shape(labels)), nodule_label)

    def record(self) -> dict:
        return {
            "diameter_mm": self.diameter_mm,
            "diameter_px": self.diameter_px,
            "center_px": list(self.center_px),
            "position": self.position,
        }


def label_map_digest(labels: np.ndarray) -> str:
    """A short stable id of a label map's content (its shape and values): what cached results are keyed by."""
    labels = np.ascontiguousarray(labels, np.uint8)
    return hashlib.sha256(repr(labels.shape).encode() + labels.tobytes()).hexdigest()[:16]


def place_nodules(
    labels: np.ndarray, diameters_mm: Sequence[float], positions: int, pixel_mm: float | Sequence[float]
) -> list[NodulePlacement]:
    """``positions`` nodules of each diameter in ``diameters_mm``, each wholly inside a lung of ``labels``.

    Args:
        labels: the label map ``(H, W)`` at the size the nodules are drawn.
        diameters_mm: the nodules' diameters.
        positions: centres drawn per diameter (one nodule per image: each placement is its own map).
        pixel_mm: the map's pixel spacing (one value, or rows and columns: their mean converts mm to pixels).

    Raises:
        ValueError: a spacing that is not positive, or a diameter for which no centre lies far enough inside a lung.
    """
    from ..synthesis.mask_plan import nodule_position  # imports torch: not at this package's import

    spacing = float(np.mean(np.atleast_1d(pixel_mm)))
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"pixel_mm must be a positive pixel spacing in mm, got {pixel_mm}")
    if positions < 1:
        raise ValueError(f"positions must be at least 1, got {positions}")
    key = int(label_map_digest(labels), 16)
    placements = []
    for diameter_mm in diameters_mm:
        diameter_px = float(diameter_mm) / spacing
        rng = np.random.default_rng([key, round(float(diameter_mm) * 1000)])
        for position in range(positions):
            center = nodule_position(np.asarray(labels), diameter_px, rng)
            if center is None:
                raise ValueError(
                    f"a {diameter_mm:g}-mm nodule ({diameter_px:.1f} px at {spacing:.3g} mm per pixel) fits nowhere "
                    "inside the lungs of this mask; choose masks with more lung (mid-chest) or smaller diameters"
                )
            placements.append(NodulePlacement(float(diameter_mm), diameter_px, center, position))
    return placements


def drawn_nodules(
    labels: np.ndarray, nodule_classes: Sequence[int], pixel_mm: float | Sequence[float]
) -> list[tuple[np.ndarray, float]]:
    """The nodules drawn in ``labels``: ``(pixels, diameter_mm)`` per connected component (8-connected) of the
    ``nodule_classes``, the diameter that of the circle of the component's area."""
    from scipy import ndimage

    spacing = float(np.mean(np.atleast_1d(pixel_mm)))
    components, count = ndimage.label(np.isin(labels, nodule_classes), structure=np.ones((3, 3), bool))
    nodules = []
    for index in range(1, count + 1):
        pixels = components == index
        nodules.append((pixels, 2.0 * math.sqrt(pixels.sum() / math.pi) * spacing))
    return nodules
