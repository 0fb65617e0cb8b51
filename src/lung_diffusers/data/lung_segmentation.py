"""Left lung, right lung and trachea labels for CT slices.

The thesis read these three structures from LUNA16's ``seg-lungs-LUNA16`` masks (values 3, 4
and 5). Those masks are part of the full LUNA16 download; :func:`lung_labels_from_luna16_mask`
reads them. Where they are absent, :func:`segment_lungs_and_trachea` derives the same three
structures from the HU values alone:

1. Air is everything below ``-320 HU``, a threshold that separates aerated lung and airway lumen
   (about -1000 to -500 HU) from soft tissue (-100 to 100 HU) with a wide margin. Air that is
   connected, within its slice, to the edge of the image is outside the patient and dropped.
2. The remaining air is labelled in 3-D. The lungs and airways form the largest component
   (often with the other lung as the second); bowel and stomach gas are far smaller and dropped.
3. The trachea is found in the upper third of the lungs and airways as a 0.5-6 cm^2 air region
   within 4 cm of the midline, then followed downward slice by slice in its lumen (below -700 HU,
   so a thin wall partial-volumed with air still separates it from the lung) through the carina
   and 25 mm into both main bronchi. A branch stops where its area jumps (it has opened into
   lung); above the carina, a few slices where the wall cannot be seen are bridged.
4. The rest is lung. If the two lungs touch (anterior or posterior junction line), they are
   separated by eroding in-plane until two large cores appear and growing the cores back
   (watershed). The lung whose centroid lies further toward +x (the patient's left, LPS) is the
   left lung.

Steps 1, 2 and 4 run on an in-plane grid of about 2-2.5 mm pixels, where a pixel is air only if
its whole block is; the trachea is tracked at full resolution because its wall is thinner than
that. Labels are transferred to full resolution slice by slice, where the exact boundary comes
from the full-resolution air mask.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from lung_diffusers.ct import CTVolume, read_label_volume
from lung_diffusers.data.masks import LEFT_LUNG, RIGHT_LUNG, TRACHEA

AIR_THRESHOLD_HU = -320.0
# Target in-plane pixel size (mm) of the grid used for the 3-D analysis.
_COARSE_PIXEL_MM = 2.5
_IN_PLANE = ndi.generate_binary_structure(2, 1)
_IN_PLANE_3D = np.stack([np.zeros((3, 3), bool), _IN_PLANE, np.zeros((3, 3), bool)])
# Components smaller than this share of the largest air component are gas, not lung.
_LUNG_MIN_SHARE = 0.1
_MIN_LUNG_VOLUME_ML = 100.0
# The trachea is followed in the lumen (air, about -1000 HU) below this threshold: at -320 HU its
# thin wall, partial-volumed with air, often fails to separate it from the adjacent lung.
_TRACHEA_LUMEN_HU = -700.0
# Trachea cross-sections in adults are roughly 1.5-2.5 cm across (2-5 cm^2); the bounds leave room
# for the larynx above and for children.
_TRACHEA_SEED_AREA_MM2 = (50.0, 600.0)
_TRACHEA_MAX_MIDLINE_OFFSET_MM = 40.0
# A tracked airway branch may grow from slice to slice by this factor plus this many mm^2 before
# it is taken to have opened into lung.
_TRACHEA_GROWTH_FACTOR = 1.5
_TRACHEA_GROWTH_SLACK_MM2 = 50.0
_TRACHEA_MAX_AREA_MM2 = 800.0
# Tracking looks this far (mm) around the previous slice's airway; anything reaching further is lung.
_TRACHEA_SEARCH_MARGIN_MM = 30.0
# Where the tracheal wall is too thin to see for a few slices, its outline is carried down this far.
_TRACHEA_MAX_BRIDGE_MM = 10.0
# Below the carina the main bronchi are followed this far (in z) before they count as lung: the
# right main bronchus is about 2.5 cm long, the left about 5 cm, both running obliquely.
_BRONCHUS_LENGTH_MM = 25.0
# A part of the tracked airway this large is a bronchus (not noise) when counting the carina split.
_BRONCHUS_MIN_AREA_MM2 = 20.0
# Names of the two lung-label sources, as recorded in every dataset row.
OFFICIAL_MASK_SOURCE = "seg-lungs-LUNA16"
HU_SEGMENTATION_SOURCE = "hu-threshold"
# Official seg-lungs-LUNA16 label values (the thesis' Listing 1 reads 3 as left, 4 right, 5 trachea).
LUNA16_LUNG_VALUES = (3, 4)
LUNA16_TRACHEA_VALUE = 5


class LungLabels(Protocol):
    """Anything that gives full-resolution lung/trachea labels for the slices of one CT volume."""

    def slice_labels(self, slice_index: int, hu_slice: np.ndarray, body: np.ndarray) -> np.ndarray:
        """uint8 ``[y, x]`` with 0, ``LEFT_LUNG``, ``RIGHT_LUNG`` and ``TRACHEA``."""
        ...


@dataclass(frozen=True)
class SegmentedLungs:
    """Lung labels on an in-plane subsampled grid plus a full-resolution trachea mask.

    Made by :func:`segment_lungs_and_trachea`.

    Attributes:
        lungs: uint8 ``[z, y // stride, x // stride]`` with 0, ``LEFT_LUNG`` and ``RIGHT_LUNG``;
            ``lungs[z, i, j]`` covers CT pixels ``[z, i*stride:(i+1)*stride, j*stride:(j+1)*stride]``.
        trachea: bool ``[z, y, x]`` trachea and main bronchi at full resolution.
        stride: in-plane subsampling factor of ``lungs``.
    """

    lungs: np.ndarray
    trachea: np.ndarray
    stride: int

    def slice_labels(self, slice_index: int, hu_slice: np.ndarray, body: np.ndarray) -> np.ndarray:
        """Full-resolution lung/trachea labels of one CT slice.

        Args:
            slice_index: index of the slice in the volume.
            hu_slice: the slice in HU, ``[y, x]``.
            body: the slice's body mask (:func:`~lung_diffusers.data.masks.body_mask`); air
                outside it is never lung.

        Returns:
            uint8 ``[y, x]`` with 0, ``LEFT_LUNG``, ``RIGHT_LUNG`` and ``TRACHEA``.
        """
        out = np.zeros(hu_slice.shape, np.uint8)
        trachea = self.trachea[slice_index]
        coarse = self.lungs[slice_index]
        if coarse.any():
            # Every coarse pixel takes the side of its nearest lung pixel, so full-resolution air
            # just outside the coarse boundary still gets the right side.
            nearest = ndi.distance_transform_edt(coarse == 0, return_distances=False, return_indices=True)
            side = self._upsample(coarse[tuple(nearest)], hu_slice.shape)
            support = self._upsample(coarse > 0, hu_slice.shape)
            air = (hu_slice < AIR_THRESHOLD_HU) & body & ~trachea
            components, count = ndi.label(air, _IN_PLANE)
            # Keep the full-resolution air regions that the 3-D analysis called lung; this drops
            # bowel gas, which the coarse labels do not cover.
            kept = np.zeros(count + 1, bool)
            kept[components[support & air]] = True
            kept[0] = False
            in_lung = kept[components]
            out[in_lung] = side[in_lung]
        out[trachea] = TRACHEA
        return out

    def _upsample(self, coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        full = np.repeat(np.repeat(coarse, self.stride, 0), self.stride, 1)
        # The grid drops the last (size % stride) rows and columns; they repeat the edge.
        return np.pad(full, [(0, shape[0] - full.shape[0]), (0, shape[1] - full.shape[1])], mode="edge")


@dataclass(frozen=True)
class Luna16LungMask:
    """Lung/trachea labels read from an official ``seg-lungs-LUNA16`` mask volume.

    Made by :func:`lung_labels_from_luna16_mask`.

    Attributes:
        labels: uint8 ``[z, y, x]`` with 0, ``LEFT_LUNG``, ``RIGHT_LUNG`` and ``TRACHEA``.
    """

    labels: np.ndarray

    def slice_labels(self, slice_index: int, hu_slice: np.ndarray, body: np.ndarray) -> np.ndarray:
        """The mask's labels for one slice (``hu_slice`` and ``body`` are not needed)."""
        return self.labels[slice_index].copy()


def lung_labels_from_luna16_mask(mask_path: str | Path, volume: CTVolume) -> Luna16LungMask:
    """Read an official LUNA16 lung mask (``seg-lungs-LUNA16/<seriesuid>.mhd``) for ``volume``.

    Values 3 and 4 are the two lungs and 5 the trachea (thesis Listing 1). Which of 3 and 4 is the
    patient's left lung is decided from where each lies (the one further toward LPS +x is left),
    so it does not depend on a labelling convention; a warning says when that contradicts the
    thesis' reading of 3 as the left lung.

    Raises:
        FileNotFoundError: no mask file at ``mask_path``.
        ValueError: the mask does not cover the CT volume voxel for voxel.
    """
    mask = read_label_volume(mask_path)
    if mask.array.shape != volume.hu.shape or not np.allclose(mask.origin_mm, volume.origin_mm, atol=0.5):
        raise ValueError(
            f"lung mask {mask_path} (shape {mask.array.shape}, origin {mask.origin_mm}) does not match CT "
            f"{volume.series_uid} (shape {volume.hu.shape}, origin {volume.origin_mm}); "
            "use the seg-lungs-LUNA16 mask made for this series"
        )
    labels = np.zeros(mask.array.shape, np.uint8)
    columns = np.arange(mask.array.shape[2])
    mean_columns = []
    for value in LUNA16_LUNG_VALUES:
        counts = (mask.array == value).sum(axis=(0, 1))
        mean_columns.append((counts * columns).sum() / max(counts.sum(), 1))
    left_value, right_value = LUNA16_LUNG_VALUES if mean_columns[0] >= mean_columns[1] else LUNA16_LUNG_VALUES[::-1]
    if left_value != LUNA16_LUNG_VALUES[0]:
        warnings.warn(
            f"{mask_path}: value {left_value} lies on the patient's left (larger LPS x), although the thesis reads "
            f"{LUNA16_LUNG_VALUES[0]} as the left lung; labelling by position",
            stacklevel=2,
        )
    labels[mask.array == left_value] = LEFT_LUNG
    labels[mask.array == right_value] = RIGHT_LUNG
    labels[mask.array == LUNA16_TRACHEA_VALUE] = TRACHEA
    return Luna16LungMask(labels)


def segment_lungs_and_trachea(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> SegmentedLungs:
    """Segment left lung, right lung and trachea of a chest CT from HU thresholds (see module docstring).

    Args:
        hu: ``[z, y, x]`` volume in HU, LPS-oriented (columns toward the patient's left).
        spacing_mm: voxel size (x, y, z) in mm.

    Returns:
        The labels; use :meth:`SegmentedLungs.slice_labels` for full-resolution slices. Empty
        when no lung-sized air region is found.
    """
    stride = max(1, int(_COARSE_PIXEL_MM // spacing_mm[0]))
    voxel_ml = (spacing_mm[0] * stride) * (spacing_mm[1] * stride) * spacing_mm[2] / 1000.0
    rows, columns = hu.shape[1] // stride, hu.shape[2] // stride
    # A coarse pixel is air only if its whole block is: eroding before subsampling keeps the thin
    # walls (junction lines between the lungs, bronchial walls) that plain subsampling would skip.
    block = np.ones((stride, stride), np.uint8)
    air = np.stack(
        [
            cv2.erode((hu_slice < AIR_THRESHOLD_HU).view(np.uint8), block, anchor=(0, 0))[::stride, ::stride][
                :rows, :columns
            ]
            for hu_slice in hu
        ]
    ).astype(bool)
    lungs = np.zeros(air.shape, np.uint8)
    trachea = np.zeros(hu.shape, bool)

    # Outside air touches the image edge within its own slice. Testing per slice (not in 3-D)
    # keeps lungs that connect to the outside through the airway in scans that include the mouth.
    per_slice, count = ndi.label(air, _IN_PLANE_3D)
    outside = np.zeros(count + 1, bool)
    for edge in (per_slice[:, 0], per_slice[:, -1], per_slice[:, :, 0], per_slice[:, :, -1]):
        outside[edge] = True
    components, count = ndi.label(air & ~outside[per_slice])
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    if count == 0 or sizes.max() * voxel_ml < _MIN_LUNG_VOLUME_ML:
        return SegmentedLungs(lungs, trachea, stride)
    lungs_and_airways = (sizes >= max(_LUNG_MIN_SHARE * sizes.max(), _MIN_LUNG_VOLUME_ML / voxel_ml))[components]

    trachea = _track_trachea(hu, lungs_and_airways, stride, spacing_mm)
    trachea_blocks = trachea[:, : rows * stride, : columns * stride].reshape(hu.shape[0], rows, stride, columns, stride)
    left, right = _split_left_right(lungs_and_airways & ~trachea_blocks.any(axis=(2, 4)))
    lungs[left] = LEFT_LUNG
    lungs[right] = RIGHT_LUNG
    return SegmentedLungs(lungs, trachea, stride)


def _track_trachea(
    hu: np.ndarray, lungs_and_airways: np.ndarray, stride: int, spacing_mm: tuple[float, float, float]
) -> np.ndarray:
    """Trachea and main bronchi at full resolution: seeded near the midline, followed downward.

    Works on full-resolution slices because the tracheal wall (1-3 mm) is often thinner than a
    coarse pixel.
    """
    trachea = np.zeros(hu.shape, bool)
    pixel_mm2 = spacing_mm[0] * spacing_mm[1]
    column_counts = lungs_and_airways.sum(axis=(0, 1))
    midline_column = ((np.arange(column_counts.size) + 0.5) * column_counts).sum() / column_counts.sum() * stride
    occupied = np.flatnonzero(lungs_and_airways.any(axis=(1, 2)))
    top, bottom = occupied[-1], occupied[0]

    start = None
    # The trachea runs through the upper third of the lungs and airways; lower down, small
    # midline air regions are more likely oesophagus or bronchi.
    for z in range(top, top - max(1, (top - bottom) // 3) - 1, -1):
        components, count = ndi.label(hu[z] < _TRACHEA_LUMEN_HU, _IN_PLANE)
        support = np.repeat(np.repeat(lungs_and_airways[z], stride, 0), stride, 1)
        touching = np.unique(components[: support.shape[0], : support.shape[1]][support])
        touching = touching[touching > 0]
        if touching.size == 0:
            continue
        areas = np.bincount(components.ravel(), minlength=count + 1)[touching] * pixel_mm2
        centres = ndi.center_of_mass(np.ones(components.shape), components, touching)
        offsets = np.abs(np.array(centres)[:, 1] - midline_column) * spacing_mm[0]
        candidates = (areas >= _TRACHEA_SEED_AREA_MM2[0]) & (areas <= _TRACHEA_SEED_AREA_MM2[1])
        candidates &= offsets <= _TRACHEA_MAX_MIDLINE_OFFSET_MM
        if candidates.any():
            trachea[z] = components == touching[candidates][np.argmin(offsets[candidates])]
            start = z
            break
    if start is None:
        return trachea

    margin = int(np.ceil(_TRACHEA_SEARCH_MARGIN_MM / spacing_mm[0]))
    carina_z = None
    bridged_mm = 0.0
    for z in range(start - 1, -1, -1):
        if carina_z is not None and (carina_z - z) * spacing_mm[2] > _BRONCHUS_LENGTH_MM:
            break
        # Label only a window around the previous slice's airway; a component that reaches the
        # window's edge is far larger than any airway section and so counts as lung.
        rows, columns = np.nonzero(trachea[z + 1])
        window = (
            slice(max(rows.min() - margin, 0), rows.max() + margin + 1),
            slice(max(columns.min() - margin, 0), columns.max() + margin + 1),
        )
        previous = trachea[z + 1][window]
        components, count = ndi.label(hu[z][window] < _TRACHEA_LUMEN_HU, _IN_PLANE)
        areas = np.bincount(components.ravel(), minlength=count + 1) * pixel_mm2
        for edge in (components[0], components[-1], components[:, 0], components[:, -1]):
            areas[edge] = np.inf
        previous_parts, _ = ndi.label(previous, _IN_PLANE)
        previous_areas = np.bincount(previous_parts.ravel()) * pixel_mm2
        current = np.zeros_like(previous)
        bridged = False
        for label in np.unique(components[previous]):
            if label == 0:
                continue
            component = components == label
            # Compare with the tracked parts this component overlaps: at the carina one trachea
            # section feeds two bronchi, each smaller than it.
            overlapped = np.unique(previous_parts[component & previous])
            parent_area = previous_areas[overlapped[overlapped > 0]].sum()
            limit = min(_TRACHEA_GROWTH_FACTOR * parent_area + _TRACHEA_GROWTH_SLACK_MM2, _TRACHEA_MAX_AREA_MM2)
            if areas[label] <= limit:
                current |= component
            elif carina_z is None and bridged_mm < _TRACHEA_MAX_BRIDGE_MM:
                # Above the carina the trachea is a straight tube: where its wall is too thin to
                # separate it from the lung in a slice or two, carry its outline down.
                current |= component & previous
                bridged = True
        trachea[z][window] = current
        bridged_mm = bridged_mm + spacing_mm[2] if bridged else 0.0
        if not current.any():
            break
        if carina_z is None:
            parts, _ = ndi.label(current, _IN_PLANE)
            if (np.bincount(parts.ravel())[1:] * pixel_mm2 >= _BRONCHUS_MIN_AREA_MM2).sum() >= 2:
                carina_z = z
    # Give back the wall's partial-volume rim that the stricter lumen threshold left out, so the
    # trachea is not ringed by a sliver of "lung".
    box = _bounding_box(trachea, pad=2)
    trachea[box] = ndi.binary_dilation(trachea[box], _IN_PLANE_3D, iterations=2, mask=hu[box] < AIR_THRESHOLD_HU)
    return trachea


def _split_left_right(lungs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the left and right lung (left = larger mean column, toward LPS +x)."""
    components, count = ndi.label(lungs)
    if count == 0:
        return np.zeros_like(lungs), np.zeros_like(lungs)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    if count >= 2 and sizes[order[1]] >= 0.2 * sizes[order[0]]:
        # Small pieces cut off by removing the airways are left out, as in the official masks.
        sides = np.where(components == order[0], 1, 0) + np.where(components == order[1], 2, 0)
    else:
        joined = components == order[0]
        box = _bounding_box(joined, pad=0)
        seeds = _separate_joined_lungs(joined[box])
        if seeds.max() < 2:
            # One lung only (e.g. after pneumonectomy): its side follows from where it lies.
            column = np.nonzero(joined.any(axis=(0, 1)))[0].mean()
            side = joined if column >= lungs.shape[2] / 2 else np.zeros_like(joined)
            return side, joined & ~side
        # Flooding from the two cores over a flat landscape gives each voxel to the core it is
        # geodesically nearest to, so the split follows the narrow junction between the lungs.
        sides = np.zeros(lungs.shape, np.int32)
        sides[box] = watershed(np.zeros(seeds.shape, np.uint8), seeds, mask=joined[box])
    mean_columns = []
    for k in (1, 2):
        counts = (sides == k).sum(axis=(0, 1))
        mean_columns.append((counts * np.arange(counts.size)).sum() / counts.sum())
    left = 1 if mean_columns[0] > mean_columns[1] else 2
    return sides == left, sides == 3 - left


def _separate_joined_lungs(joined: np.ndarray, max_iterations: int = 12) -> np.ndarray:
    """Two seed cores (labels 1 and 2) by in-plane erosion of lungs that touch; label 1 only if none."""
    core = np.ascontiguousarray(joined, dtype=np.uint8)
    cross = _IN_PLANE.astype(np.uint8)
    for _ in range(max_iterations):
        core = np.stack([cv2.erode(core_slice, cross) for core_slice in core])
        components, count = ndi.label(core)
        if count < 2:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        order = np.argsort(sizes)[::-1]
        if sizes[order[1]] >= 0.2 * sizes[order[0]]:
            return np.where(components == order[0], 1, 0) + np.where(components == order[1], 2, 0)
    return joined.astype(np.int32)


def _bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Smallest box holding all True voxels, grown by ``pad`` voxels in-plane (not in z)."""
    box = []
    for axis in range(mask.ndim):
        occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        grow = pad if axis > 0 else 0
        box.append(slice(max(occupied[0] - grow, 0), occupied[-1] + 1 + grow))
    return tuple(box)
