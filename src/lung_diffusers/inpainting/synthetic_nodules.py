"""Simple synthetic nodules painted into real healthy slices at known places: ground truth for anomaly maps.

Why not the SDM's :func:`~lung_diffusers.inpainting.insert_nodule`: the 64-px SDM saw whole slices, so its nodule
lives in a 64-px slice, while the healthy prior reconstructs 256-px slices (it was trained on 64-px crops of them).
An SDM nodule pasted back into a 256-px slice comes with a 4x-upsampled, blurred patch around it, and an anomaly map
would be rewarded for finding the blur. Here a nodule is drawn at the slice's own resolution instead: a lobulated
soft-edged blob of solid-nodule density (about -300 to +50 HU), with a little texture, inside the lung, its size
in millimetres from the slice's pixel spacing. It is a cartoon of a nodule (no spiculation, no vessels), so
results on it are an optimistic reference; the real reference nodules must be reported beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..ct import HU_WINDOW, LEFT_LUNG, RIGHT_LUNG, as_window_image, hu_from_image, image_from_hu

# LUNA16's reference nodules are >= 3 mm; most are below 20 mm.
DEFAULT_DIAMETER_MM = (4.0, 20.0)
# Solid to part-solid nodules; lung parenchyma is about -850 HU.
DEFAULT_NODULE_HU = (-300.0, 50.0)
DEFAULT_TEXTURE_HU = 40.0
# Radius of the soft edge, in pixels: the partial-volume blur of a real boundary.
EDGE_PX = 1.0
# Lobulation: two harmonics of the outline, each up to this share of the radius.
LOBULATION = 0.08


@dataclass(frozen=True)
class SyntheticNodule:
    """A healthy slice with a synthetic nodule.

    Attributes:
        image: window image ``(H, W)`` in [0, 1], **synthetic** (a real slice with a painted nodule).
        mask: bool ``(H, W)``, the nodule (where the blend is at least one half).
        center: (row, column) in pixels.
        diameter_mm: the nodule's mean diameter.
        hu: its mean density.
    """

    image: np.ndarray
    mask: np.ndarray
    center: tuple[int, int]
    diameter_mm: float
    hu: float
    synthetic: bool = True


def lung_depth_mm(labels: np.ndarray, pixel_mm: Sequence[float]) -> float:
    """How far (mm) the deepest lung pixel (labels 2, 3) lies from the lung's border: 0 without lung."""
    lung = np.isin(np.asarray(labels), (LEFT_LUNG, RIGHT_LUNG))
    if not lung.any():
        return 0.0
    return float(ndimage.distance_transform_edt(lung, sampling=[float(p) for p in pixel_mm]).max())


def nodule_fits(labels: np.ndarray, pixel_mm: Sequence[float], diameter_mm: float) -> bool:
    """Whether a nodule of ``diameter_mm`` (at its most lobulated) fits inside the lungs with its soft edge, as
    :func:`place_synthetic_nodule` draws it without shrinking it."""
    reach_mm = diameter_mm / 2 * (1 + 2 * LOBULATION) + (EDGE_PX + 1) * max(float(p) for p in pixel_mm)
    return lung_depth_mm(labels, pixel_mm) >= reach_mm


def place_synthetic_nodule(
    image: np.ndarray,
    labels: np.ndarray,
    pixel_mm: Sequence[float],
    rng: np.random.Generator,
    diameter_mm: Sequence[float] = DEFAULT_DIAMETER_MM,
    hu: Sequence[float] = DEFAULT_NODULE_HU,
    texture_hu: float = DEFAULT_TEXTURE_HU,
    hu_window: Sequence[float] = HU_WINDOW,
) -> SyntheticNodule:
    """Paint one nodule into the lungs of a healthy slice, at a random place where it fits.

    Args:
        image: the real slice, uint8 lung window or float window image ``(H, W)``.
        labels: its label map (the recipe's classes); the nodule lies in the lungs (2, 3), a pixel away from
            their border when it fits anywhere.
        pixel_mm: (row, column) size of a pixel in mm (the recipe's ``spacing["pixel_mm"]``).
        rng: the random generator (place, size, density, shape, texture).
        diameter_mm: ``(low, high)``, the diameter is drawn uniformly between them; shrunk when the lungs are too
            thin for it.
        hu: ``(low, high)``, the mean density is drawn uniformly between them.
        texture_hu: standard deviation of a smooth texture added inside the nodule.
    """
    window = as_window_image(image)
    labels = np.asarray(labels)
    if labels.shape != window.shape:
        raise ValueError(f"labels {labels.shape} and image {window.shape} must have one shape")
    row_mm, col_mm = (float(p) for p in pixel_mm)
    if row_mm <= 0 or col_mm <= 0:
        raise ValueError(f"pixel_mm must be positive, got {pixel_mm}")
    low_mm, high_mm = (float(d) for d in diameter_mm)
    if not 0 < low_mm <= high_mm:
        raise ValueError(f"diameter_mm must be (low, high) with 0 < low <= high, got {diameter_mm}")
    lung = np.isin(labels, (LEFT_LUNG, RIGHT_LUNG))
    if not lung.any():
        raise ValueError("the slice has no lung (labels 2, 3) to put a nodule in")

    diameter = rng.uniform(low_mm, high_mm)
    # Lobulation: the radius varies with the angle by up to about 15 %.
    harmonics = rng.uniform(0, LOBULATION, 2)
    phases = rng.uniform(0, 2 * np.pi, 2)
    radius_px = diameter / 2 / np.array([row_mm, col_mm])
    depth = ndimage.distance_transform_edt(lung)
    reach = radius_px.max() * (1 + harmonics.sum()) + EDGE_PX + 1
    if depth.max() < reach:  # thin lungs: the largest nodule that fits
        scale = max(depth.max() - EDGE_PX - 1, 1.0) / (radius_px.max() * (1 + harmonics.sum()))
        diameter, radius_px = diameter * scale, radius_px * scale
        reach = depth.max()
    candidates = np.argwhere(depth >= reach)
    center = candidates[rng.integers(len(candidates))]

    rows, cols = np.indices(window.shape, dtype=np.float64)
    dy, dx = (rows - center[0]) / radius_px[0], (cols - center[1]) / radius_px[1]
    angle = np.arctan2(dy, dx)
    outline = 1 + harmonics[0] * np.cos(2 * angle + phases[0]) + harmonics[1] * np.cos(3 * angle + phases[1])
    rho = np.hypot(dy, dx) / outline  # 1 on the nodule's edge
    blend = np.clip(0.5 + (1 - rho) * radius_px.mean() / (2 * EDGE_PX), 0, 1)

    density = rng.uniform(*(float(h) for h in hu))
    texture = ndimage.gaussian_filter(rng.standard_normal(window.shape), 1.0)
    texture *= texture_hu / max(float(texture.std()), 1e-8)
    nodule = image_from_hu(density + texture, hu_window)
    painted = window + blend * (nodule - window)
    mask = blend >= 0.5
    mean_hu = float(hu_from_image(painted[mask], hu_window).mean()) if mask.any() else density
    return SyntheticNodule(
        painted.astype(np.float32), mask, (int(center[0]), int(center[1])), float(diameter), mean_hu
    )
