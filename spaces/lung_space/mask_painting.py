"""Label maps as the user paints them: a fixed colour per class, colours back to class ids, nodules in mm.

The editor works on colour pictures, the model on class ids, so the two conversions here must be exact for
the palette's own colours. The browser anti-aliases brush edges (a pixel half orange, half black), so a colour
that is not in the palette is read as a blend of two palette colours and goes to the class it has more of.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lung_diffusers.ct import BACKGROUND, LABEL_SCHEMES, label_names

# Pixel spacing of a blank mask, which has no scan behind it: a 360 mm field of view across the slice, the
# example masks' own (LIDC-IDRI scans span 350-420 mm). 5.625 mm per pixel at 64 px.
DEFAULT_FIELD_OF_VIEW_MM = 360.0
SUPPORTED_CLASS_COUNTS = tuple(LABEL_SCHEMES)


def palette(num_classes: int) -> np.ndarray:
    """uint8 ``(num_classes, 3)`` RGB, one colour per class: the project's mask colours (contact sheet).

    7-class models show benign nodules in yellow and malignant ones in red; 6-class models their nodule in red.
    """
    if num_classes not in SUPPORTED_CLASS_COUNTS:
        raise ValueError(f"the Space paints 6- or 7-class label maps, this model has {num_classes} classes")
    return LABEL_SCHEMES[num_classes].colours


def class_names(num_classes: int) -> list[str]:
    """Display names per class id ("left lung", ...)."""
    return [name.replace("_", " ") for name in label_names(num_classes)]


def css_colour(rgb) -> str:
    """The ``rgb(r, g, b)`` string gr.Brush takes (and the browser reports back unchanged)."""
    return "rgb({}, {}, {})".format(*(int(v) for v in rgb))


def labels_to_rgb(labels: np.ndarray, num_classes: int, scale: int = 1) -> np.ndarray:
    """Colour a label map for the editor, each pixel a ``scale x scale`` block (nearest neighbour, no blending)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"label values must lie in 0-{num_classes - 1}, got {labels.min()}-{labels.max()}")
    rgb = palette(num_classes)[labels]
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else rgb


def rgb_to_classes(rgb: np.ndarray, num_classes: int) -> np.ndarray:
    """Class id per pixel of a painted picture ``(H, W, 3)`` (alpha, if any, is dropped).

    Palette colours map to their class exactly. Any other colour is modelled as a blend ``t * a + (1 - t) * b``
    of two palette colours (the pair that explains it best, least squares) and goes to ``a`` when ``t >= 0.5``:
    an anti-aliased edge pixel goes to the nearer of the two classes it lies between, never to a third class
    whose colour happens to be close (the midpoint of orange and black is nearer red than either).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise ValueError(f"expected a colour picture (H, W, 3), got shape {rgb.shape}")
    colours = palette(num_classes).astype(np.float32)
    pixels = rgb[..., :3].reshape(-1, 3).astype(np.float32)
    best_residual = np.full(len(pixels), np.inf, np.float32)
    classes = np.zeros(len(pixels), np.uint8)
    for a, b in itertools.combinations(range(num_classes), 2):
        edge = colours[a] - colours[b]
        t = np.clip((pixels - colours[b]) @ edge / float(edge @ edge), 0.0, 1.0)
        residual = np.linalg.norm(pixels - (colours[b] + t[:, None] * edge), axis=1)
        better = residual < best_residual
        best_residual[better] = residual[better]
        classes[better] = np.where(t[better] >= 0.5, a, b)
    # Exact palette colours win outright (a palette colour could lie on the line between two others).
    exact = (pixels[:, None, :] == colours[None]).all(axis=2)
    hit = exact.any(axis=1)
    classes[hit] = exact[hit].argmax(axis=1)
    return classes.reshape(rgb.shape[:2])


def block_majority(classes: np.ndarray, scale: int, num_classes: int) -> np.ndarray:
    """Shrink a class map by an integer ``scale``: each output pixel takes the most common class of its block
    (ties go to the lower class id)."""
    height, width = classes.shape
    if scale == 1:
        return classes.astype(np.uint8)
    blocks = classes.reshape(height // scale, scale, width // scale, scale)
    counts = np.stack([(blocks == k).sum(axis=(1, 3)) for k in range(num_classes)])
    return counts.argmax(axis=0).astype(np.uint8)


def painted_labels(rgb: np.ndarray, num_classes: int, size: int) -> np.ndarray:
    """The ``size x size`` label map of an editor picture shown at an integer multiple of ``size``.

    Raises:
        ValueError: the picture is not square, or not a whole multiple of ``size`` (e.g. it was cropped).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[0] != rgb.shape[1] or rgb.shape[0] % size:
        raise ValueError(
            f"the painted mask is {rgb.shape[1]}x{rgb.shape[0]} px; it must be a square {size} px picture "
            f"or a whole multiple of it (the editor shows {size}-px masks enlarged)"
        )
    return block_majority(rgb_to_classes(rgb, num_classes), rgb.shape[0] // size, num_classes)


def default_pixel_mm(side_px: int) -> float:
    """Pixel spacing (mm) assumed for a mask without a scan: :data:`DEFAULT_FIELD_OF_VIEW_MM` across ``side_px``."""
    return DEFAULT_FIELD_OF_VIEW_MM / side_px


def display_to_mask(xy: tuple[float, float], scale: float) -> tuple[float, float]:
    """A click at pixel ``(x, y)`` of a picture shown ``scale`` times enlarged -> (row, column) in mask pixels,
    pixel centres at whole numbers (the middle of display pixel x is at mask column ``(x + 0.5) / scale - 0.5``)."""
    x, y = xy
    return (y + 0.5) / scale - 0.5, (x + 0.5) / scale - 0.5


def nodule_disc(
    shape: tuple[int, int], center_rc: tuple[float, float], diameter_mm: float, pixel_mm: tuple[float, float]
) -> np.ndarray:
    """Pixels of a round nodule of ``diameter_mm`` centred at ``center_rc`` (row, column; pixel centres at whole
    numbers), with ``pixel_mm`` (row, column) spacing. The pixel under the centre is always in it, so a nodule
    smaller than a pixel still has one pixel."""
    if not (isinstance(diameter_mm, (int, float)) and math.isfinite(diameter_mm) and diameter_mm > 0):
        raise ValueError(f"the nodule diameter must be a positive number of mm, got {diameter_mm!r}")
    row_mm, col_mm = (float(v) for v in pixel_mm)
    if not (math.isfinite(row_mm) and math.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise ValueError(f"pixel spacing must be positive mm, got {pixel_mm!r}")
    row, col = (float(v) for v in center_rc)
    centre_pixel = (int(round(row)), int(round(col)))
    if not (0 <= centre_pixel[0] < shape[0] and 0 <= centre_pixel[1] < shape[1]):
        raise ValueError(f"the nodule centre ({row:.1f}, {col:.1f}) lies outside the {shape[0]}x{shape[1]} mask")
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    disc = ((rows - row) * row_mm) ** 2 + ((cols - col) * col_mm) ** 2 <= (diameter_mm / 2) ** 2
    disc[centre_pixel] = True
    return disc


def place_nodule(
    labels: np.ndarray,
    center_rc: tuple[float, float],
    diameter_mm: float,
    pixel_mm: tuple[float, float],
    nodule_label: int,
) -> np.ndarray:
    """The label map with a round nodule painted in (inside the body only: a nodule has no meaning in the air
    around the patient).

    Raises:
        ValueError: the centre is outside the mask or on background, or the size/spacing is not positive.
    """
    labels = np.asarray(labels)
    disc = nodule_disc(labels.shape, center_rc, diameter_mm, pixel_mm)
    centre = tuple(int(round(v)) for v in center_rc)
    if labels[centre] == BACKGROUND:
        raise ValueError("that point is background (outside the body): click inside the patient to place a nodule")
    edited = labels.astype(np.uint8, copy=True)
    edited[disc & (labels != BACKGROUND)] = nodule_label
    return edited
