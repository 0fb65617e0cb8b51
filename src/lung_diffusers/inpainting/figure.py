"""Side-by-side figures of an edit: input | mask | result | difference (| uncertainty).

The figure shows a real slice next to synthetic ones, so it says which is which twice: in the panel titles
("REAL", "SYNTHETIC") and in PNG text chunks (``panels``, ``real_panels``), besides the ``synthetic`` mark every
file written by lung-diffusers carries.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..synthetic_marker import save_synthetic_png

PANEL_KINDS = ("real", "synthetic", "mask", "derived")
_TITLE_HEIGHT = 22
_REGION_COLOUR = np.array([250, 220, 0], np.float32)  # regenerated area: yellow
_NODULE_COLOUR = np.array([230, 30, 30], np.float32)  # nodule: red


@dataclass(frozen=True)
class Panel:
    """One panel: ``rgb`` uint8 ``(H, W, 3)``; ``kind`` says what it shows: ``"real"`` (a patient's slice),
    ``"synthetic"`` (generated), ``"mask"`` or ``"derived"`` (computed from a synthetic image)."""

    title: str
    rgb: np.ndarray
    kind: str

    def __post_init__(self):
        if self.kind not in PANEL_KINDS:
            raise ValueError(f"panel kind must be one of {PANEL_KINDS}, got {self.kind!r}")


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """A window image in [0, 1] as grey RGB uint8."""
    grey = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def region_overlay_rgb(image: np.ndarray, regenerated: np.ndarray, nodule: np.ndarray | None = None) -> np.ndarray:
    """The slice, dimmed, with the regenerated area tinted yellow and the nodule red."""
    rgb = grey_rgb(image).astype(np.float32) * 0.6
    rgb[regenerated > 0] = 0.45 * rgb[regenerated > 0] + 0.55 * _REGION_COLOUR
    if nodule is not None:
        rgb[nodule > 0] = 0.3 * rgb[nodule > 0] + 0.7 * _NODULE_COLOUR
    return np.rint(rgb).astype(np.uint8)


def difference_rgb(difference: np.ndarray, scale: float | None = None) -> np.ndarray:
    """A signed difference map: positive (the lesion is brighter) red, negative blue, 0 black; ``scale`` (default:
    the largest magnitude) maps to full colour."""
    scale = float(np.abs(difference).max()) if scale is None else float(scale)
    level = np.clip(np.asarray(difference, np.float32) / max(scale, 1e-8), -1, 1)
    rgb = np.zeros((*level.shape, 3), np.float32)
    rgb[..., 0] = np.clip(level, 0, 1) * 255
    rgb[..., 2] = np.clip(-level, 0, 1) * 255
    rgb[..., 1] = np.abs(level) * 60  # keeps weak differences visible on black
    return np.rint(rgb).astype(np.uint8)


def magnitude_rgb(values: np.ndarray) -> np.ndarray:
    """A non-negative map (e.g. the uncertainty) in the inferno colour map, scaled to its maximum."""
    values = np.asarray(values, np.float32)
    level = np.rint(values / max(float(values.max()), 1e-8) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(level, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def prediction_rgb(image: np.ndarray, called: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The slice, dimmed: found lesion green, missed red, false alarm yellow."""
    rgb = grey_rgb(image).astype(np.float32) * 0.5
    for where, colour in (
        (called & truth, (40, 220, 40)),
        (~called & truth, (230, 30, 30)),
        (called & ~truth, (250, 220, 0)),
    ):
        rgb[where] = 0.3 * rgb[where] + 0.7 * np.array(colour, np.float32)
    return np.rint(rgb).astype(np.uint8)


def view_box(region: np.ndarray, min_side: int = 64, context: float = 2.0) -> tuple[int, int, int, int]:
    """A square ``(top, left, bottom, right)`` around ``region`` (``context`` times its extent, at least ``min_side``
    pixels), inside the image: where to zoom so that a small nodule is visible."""
    rows, cols = np.nonzero(region)
    height, width = region.shape
    if not len(rows):
        return 0, 0, height, width
    side = int(max(min_side, context * (rows.max() - rows.min() + 1), context * (cols.max() - cols.min() + 1)))
    side = min(side, height, width)
    corner = []
    for low, high, extent in ((rows.min(), rows.max(), height), (cols.min(), cols.max(), width)):
        start = int(round((low + high + 1) / 2 - side / 2))
        corner.append(min(max(start, 0), extent - side))
    return corner[0], corner[1], corner[0] + side, corner[1] + side


def render_figure(
    panels: Sequence[Panel], panel_size: int = 256, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """The panels side by side (optionally zoomed to ``box``), each ``panel_size`` px wide, with its title above."""
    tiles = []
    for panel in panels:
        rgb = panel.rgb if box is None else panel.rgb[box[0] : box[2], box[1] : box[3]]
        scale = panel_size / max(rgb.shape[:2])
        # Nearest neighbour when enlarging, so pixels stay pixels; area averaging when shrinking.
        interpolation = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        body = np.zeros((panel_size, panel_size, 3), np.uint8)
        resized = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=interpolation)
        body[: resized.shape[0], : resized.shape[1]] = resized
        title = np.zeros((_TITLE_HEIGHT, panel_size, 3), np.uint8)
        cv2.putText(title, panel.title, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([title, body]))
        tiles.append(np.full((panel_size + _TITLE_HEIGHT, 4, 3), 64, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def figure_metadata(panels: Sequence[Panel]) -> dict[str, str]:
    """PNG text chunks that say, panel by panel, what is real and what is synthetic."""
    described = {
        "real": "REAL patient CT",
        "synthetic": "SYNTHETIC (generated)",
        "mask": "mask",
        "derived": "derived from a SYNTHETIC image",
    }
    return {
        "panels": " | ".join(f"{i + 1} {p.title}: {described[p.kind]}" for i, p in enumerate(panels)),
        "real_panels": ", ".join(str(i + 1) for i, p in enumerate(panels) if p.kind == "real") or "none",
        "synthetic_panels": ", ".join(str(i + 1) for i, p in enumerate(panels) if p.kind in ("synthetic", "derived")),
    }


def save_figure(
    panels: Sequence[Panel],
    path: str | os.PathLike,
    panel_size: int = 256,
    box: tuple[int, int, int, int] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Render and save the figure as a PNG marked synthetic, with ``panels`` / ``real_panels`` text chunks."""
    return save_synthetic_png(
        render_figure(panels, panel_size, box), path, metadata={**(metadata or {}), **figure_metadata(panels)}
    )
