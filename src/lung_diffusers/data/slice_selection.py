"""Which axial slices of a scan become dataset rows.

Nodule slices (the ``nodule`` config). Following the thesis, each LUNA16 reference nodule
(``annotations.csv``) gives the slice that contains its centre: index ``round((z - origin_z) /
spacing_z)``. Nodules whose centres fall in the same slice share one row. In that slice every
reference nodule whose sphere cuts the slice plane is drawn: nodules centred there with their full
diameter (as in the thesis), others with the diameter of their cross-section,
``2 * sqrt(r^2 - dz^2)``.

Healthy slices (the ``healthy`` config). The thesis samples "every 4 slices in the CT volume
that are nodule free" among slices that contain lung. Here a slice ``k`` is healthy when all of
these hold:

1. ``k % healthy_stride == 0`` (``healthy_stride`` = 4 by default, counted from the most
   inferior slice, in slices rather than mm, as in the thesis);
2. it is nodule free: ``|z_k - z_f| > r_f + t`` for every nodule ``f`` of ``annotations.csv``
   and every finding of ``annotations_excluded.csv`` with a positive diameter, where ``r_f`` is
   the finding's radius and ``t`` the slice spacing. So the slice is more than one radius plus
   one slice away from every nodule of 3 mm or more that any reader marked, including the
   nodules that fewer than three of the four LIDC readers accepted (e.g. the 23 mm nodule of
   LIDC-IDRI-0002). Excluded findings without a diameter (-1: nodules under 3 mm and
   non-nodules) do not count;
3. it contains lung: the left and right lung labels together cover at least
   ``min_lung_area_mm2`` (100 mm^2 by default) at full resolution, which drops slices above the
   apices and below the bases and slices where only a speck of lung is visible.

Rules 1-2 are applied here (:func:`healthy_slice_candidates`); rule 3 needs the lung labels and is
applied when the slice's mask is built (:func:`lung_area_mm2`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from lung_diffusers.data.luna16 import NoduleAnnotation
from lung_diffusers.data.masks import LEFT_LUNG, RIGHT_LUNG

HEALTHY_STRIDE = 4
MIN_LUNG_AREA_MM2 = 100.0


@dataclass(frozen=True)
class NoduleSection:
    """A reference nodule as drawn in one slice.

    Attributes:
        annotation: the LUNA16 annotation.
        diameter_mm: diameter of the disc drawn in this slice (the full diameter in the nodule's
            centre slice, the cross-section elsewhere).
    """

    annotation: NoduleAnnotation
    diameter_mm: float


def nodule_center_slices(
    annotations: Iterable[NoduleAnnotation], origin_z_mm: float, spacing_z_mm: float, num_slices: int
) -> dict[int, list[NoduleAnnotation]]:
    """Slice index of each nodule's centre, grouped by slice (sorted by slice index).

    Raises:
        ValueError: a nodule centre lies outside the volume (annotation and scan do not match).
    """
    slices: dict[int, list[NoduleAnnotation]] = {}
    for annotation in annotations:
        index = int(np.rint((annotation.center_mm[2] - origin_z_mm) / spacing_z_mm))
        if not 0 <= index < num_slices:
            raise ValueError(
                f"nodule at z = {annotation.center_mm[2]:.1f} mm of series {annotation.series_uid} lies outside its "
                f"scan (slices 0..{num_slices - 1}, z from {origin_z_mm:.1f} mm in steps of {spacing_z_mm} mm)"
            )
        slices.setdefault(index, []).append(annotation)
    return dict(sorted(slices.items()))


def nodule_sections(
    slice_index: int, annotations: Iterable[NoduleAnnotation], origin_z_mm: float, spacing_z_mm: float
) -> list[NoduleSection]:
    """The reference nodules drawn in slice ``slice_index`` (see module docstring)."""
    slice_z = origin_z_mm + slice_index * spacing_z_mm
    sections = []
    for annotation in annotations:
        center_slice = int(np.rint((annotation.center_mm[2] - origin_z_mm) / spacing_z_mm))
        dz = abs(annotation.center_mm[2] - slice_z)
        if center_slice == slice_index:
            sections.append(NoduleSection(annotation, annotation.diameter_mm))
        elif dz < annotation.radius_mm:
            sections.append(NoduleSection(annotation, 2.0 * float(np.sqrt(annotation.radius_mm**2 - dz**2))))
    return sections


def healthy_slice_candidates(
    num_slices: int,
    origin_z_mm: float,
    spacing_z_mm: float,
    findings: Sequence[NoduleAnnotation],
    healthy_stride: int = HEALTHY_STRIDE,
) -> np.ndarray:
    """Indices of slices that pass rules 1 and 2 of the healthy-slice rule (module docstring).

    Args:
        num_slices: number of slices in the volume.
        origin_z_mm: world z of slice 0 in mm.
        spacing_z_mm: slice spacing in mm.
        findings: every annotation of the series, reference and excluded (those without a
            positive diameter are ignored).
        healthy_stride: keep every ``healthy_stride``-th slice, counted from slice 0.

    Returns:
        Sorted int array of slice indices.
    """
    if healthy_stride < 1:
        raise ValueError(f"healthy_stride must be at least 1, got {healthy_stride}")
    indices = np.arange(0, num_slices, healthy_stride)
    slice_z = origin_z_mm + indices * spacing_z_mm
    nodule_free = np.ones(indices.size, bool)
    for finding in findings:
        if finding.diameter_mm > 0:
            nodule_free &= np.abs(slice_z - finding.center_mm[2]) > finding.radius_mm + spacing_z_mm
    return indices[nodule_free]


def lung_area_mm2(lung_labels: np.ndarray, pixel_area_mm2: float) -> float:
    """Area in mm^2 of the left and right lung labels of a slice (rule 3 compares it with ``min_lung_area_mm2``)."""
    return float(np.count_nonzero((lung_labels == LEFT_LUNG) | (lung_labels == RIGHT_LUNG)) * pixel_area_mm2)
