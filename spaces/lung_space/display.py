"""What the Space puts on screen: enlarged slices, mask overlays, difference maps, and the SYNTHETIC stamp.

Every synthetic picture the Space displays goes through :func:`stamp_synthetic`, so a screenshot or a
right-click "save image" can never pass for a scan. Downloads are not stamped (they are data); their files
carry the mark in their metadata instead (``save_synthetic_png`` / ``save_synthetic_nifti``).
"""

from __future__ import annotations

import cv2
import numpy as np

from lung_diffusers.data.contact_sheet import overlay_mask
from lung_diffusers.inpainting.figure import difference_rgb

from .mask_painting import labels_to_rgb

STAMP_TEXT = "SYNTHETIC"
# A red banner with white text, added above the picture (it hides no anatomy). Top, because Gradio's galleries
# lay captions over the bottom of their thumbnails. Opaque, so the banner's pixels are the same on every picture
# of one width (the browser test compares them).
STAMP_RGB = (200, 16, 16)
# Pictures are enlarged to about this side for display: a 64-px slice is tiny on screen.
DISPLAY_SIDE = 512


def display_scale(side_px: int) -> int:
    """Whole-number enlargement that brings a ``side_px`` picture close to :data:`DISPLAY_SIDE` (at least 1)."""
    return max(1, DISPLAY_SIDE // side_px)


def enlarge(picture: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every model pixel stays a visible square, nothing is invented between them."""
    return picture.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else picture


def banner_height(width: int) -> int:
    return max(14, width // 14)


def synthetic_banner(width: int) -> np.ndarray:
    """The red "SYNTHETIC" banner, uint8 ``(banner_height(width), width, 3)``."""
    band = banner_height(width)
    banner = np.empty((band, width, 3), np.uint8)
    banner[:] = STAMP_RGB
    scale = band / 40
    thickness = max(1, round(band / 14))
    (text_w, text_h), _ = cv2.getTextSize(STAMP_TEXT, cv2.FONT_HERSHEY_DUPLEX, scale, thickness)
    origin = (max(2, (width - text_w) // 2), (band + text_h) // 2)
    cv2.putText(banner, STAMP_TEXT, origin, cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return banner


def stamp_synthetic(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (uint8 ``(H, W, 3)``) with the "SYNTHETIC" banner added above it."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    return np.concatenate([synthetic_banner(rgb.shape[1]), rgb], axis=0)


def stamp_region(rgb: np.ndarray) -> np.ndarray:
    """The rows of a displayed picture where the banner belongs (for checks: equal to ``synthetic_banner``)."""
    rgb = np.asarray(rgb)
    return rgb[: banner_height(rgb.shape[1])]


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """A uint8 grey slice, or floats in [0, 1], as uint8 RGB."""
    grey = np.asarray(grey)
    if grey.dtype != np.uint8:
        grey = np.rint(np.clip(grey, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def synthetic_view(grey: np.ndarray) -> np.ndarray:
    """A synthetic slice as displayed: enlarged and stamped."""
    return stamp_synthetic(enlarge(grey_to_rgb(grey), display_scale(grey.shape[0])))


def synthetic_overlay_view(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The label map over a synthetic slice (lungs tinted, body outlined), enlarged and stamped."""
    scale = display_scale(grey.shape[0])
    return stamp_synthetic(overlay_mask(enlarge(grey_to_rgb(grey)[..., 0], scale), enlarge(labels, scale)))


def difference_view(difference: np.ndarray) -> np.ndarray:
    """A difference map between a real slice and its synthetic counterpart: derived from a synthetic image,
    so it is stamped too (red: brighter with the nodule, blue: darker)."""
    return stamp_synthetic(enlarge(difference_rgb(difference), display_scale(difference.shape[0])))


def real_view(grey: np.ndarray) -> np.ndarray:
    """A real slice, enlarged; not stamped (captions say REAL)."""
    return enlarge(grey_to_rgb(grey), display_scale(grey.shape[0]))


def mask_view(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """A label map in its class colours, enlarged as the editor shows it (a colour picture, not an image)."""
    return labels_to_rgb(labels, num_classes, display_scale(labels.shape[0]))


def real_overlay_view(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A real slice with its label map overlaid, enlarged (for clicking where a nodule goes)."""
    scale = display_scale(grey.shape[0])
    return overlay_mask(enlarge(grey_to_rgb(grey)[..., 0], scale), enlarge(labels, scale))
