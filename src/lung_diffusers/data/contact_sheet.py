"""A contact sheet: a few CT slices of a prepared dataset above the same slices with their masks overlaid.

Colours are the label schemes' (:func:`lung_diffusers.ct.mask_to_rgb`): the thesis' Figure 3.2 (black background,
blue body, orange left lung, green right lung, cyan trachea), with nodules in red.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from lung_diffusers.atomic_write import write_bytes_atomically

from .._moved_names import moved_names
from ..ct import ALL_NODULE_CLASSES, BODY, MALIGNANCY_SCHEME, NODULE_SCHEME, label_schemes

# mask_to_rgb and MASK_COLORS_RGB are not names of this module, so their old import path here warns.
__getattr__, __dir__ = moved_names(__name__, "lung_diffusers.ct", ("mask_to_rgb", "MASK_COLORS_RGB"), globals())


def overlay_mask(image: np.ndarray, mask: np.ndarray, opacity: float = 0.45, malignancy: bool = False) -> np.ndarray:
    """RGB view of a grey CT slice with its label map blended in (``malignancy``: a 7-class map, benign in yellow).

    Lungs and trachea are tinted and nodules filled in; the body, which covers most of the slice,
    is shown by its outline only, so the CT stays readable (and the PNG small).
    """
    grey = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    coloured = label_schemes.mask_to_rgb(mask, malignancy=malignancy).astype(np.float32)
    # Nodules are small: nearly opaque, so they stand out at thumbnail size.
    alpha = np.where(np.isin(mask, ALL_NODULE_CLASSES), max(opacity, 0.85), opacity)[..., None]
    blended = np.where((mask > BODY)[..., None], (1 - alpha) * grey + alpha * coloured, grey)
    outline = cv2.morphologyEx((mask > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    blended[outline] = NODULE_SCHEME.colours[BODY]
    return np.rint(blended).astype(np.uint8)


def contact_sheet(
    nodule_examples: list[tuple[np.ndarray, np.ndarray]],
    healthy_examples: list[tuple[np.ndarray, np.ndarray]],
    tile_size: int = 128,
    malignancy: bool = False,
) -> np.ndarray:
    """Arrange (image, mask) pairs: nodule slices, their overlays, healthy slices, their overlays, a legend
    (``malignancy``: 7-class maps, whose 5 is a benign and 6 a malignant nodule).

    Returns:
        uint8 RGB ``[height, width, 3]``.
    """
    columns = max(len(nodule_examples), len(healthy_examples), 1)
    blank = np.zeros((tile_size, tile_size, 3), np.uint8)

    def tile(rgb: np.ndarray) -> np.ndarray:
        return cv2.resize(rgb, (tile_size, tile_size), interpolation=cv2.INTER_AREA)

    bands = []
    for examples in (nodule_examples, healthy_examples):
        if not examples:
            continue
        padding = [blank] * (columns - len(examples))
        images = [tile(np.repeat(image[..., None], 3, axis=2)) for image, _ in examples] + padding
        overlays = [tile(overlay_mask(image, mask, malignancy=malignancy)) for image, mask in examples] + padding
        bands += [np.concatenate(images, axis=1), np.concatenate(overlays, axis=1)]
    bands.append(_legend(columns * tile_size, scheme=MALIGNANCY_SCHEME if malignancy else NODULE_SCHEME))
    return np.concatenate(bands, axis=0)


def write_contact_sheet(dataset_dir: str | Path, path: str | Path, examples_per_config: int = 4) -> Path | None:
    """Write a contact sheet PNG of a prepared dataset folder (atomically); None if it has no rows.

    Examples come from shards spread evenly over each config, a few rows spread evenly within
    each, so the sheet reads only a handful of shards however large the dataset.
    """
    dataset_dir = Path(dataset_dir)
    picked = {
        config: _pick_examples(sorted((dataset_dir / "data" / config).glob("*.parquet")), examples_per_config)
        for config in ("nodule", "healthy")
    }
    if not picked["nodule"] and not picked["healthy"]:
        return None
    sheet = contact_sheet(picked["nodule"], picked["healthy"])
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("PNG encoding of the contact sheet failed")
    write_bytes_atomically(path, encoded.tobytes())
    return Path(path)


def _pick_examples(shards: list[Path], count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    chosen = [shards[i] for i in _spread(len(shards), min(count, len(shards)))]
    examples = []
    for position, shard in enumerate(chosen):
        rows = pq.read_table(shard, columns=["image", "mask"]).to_pylist()
        wanted = -(-(count - len(examples)) // (len(chosen) - position))  # share of what is still missing, rounded up
        for index in _spread(len(rows), min(wanted, len(rows))):
            examples.append((_decode(rows[index]["image"]["bytes"]), _decode(rows[index]["mask"]["bytes"])))
    return examples


def _spread(length: int, count: int) -> np.ndarray:
    """``count`` indices into ``range(length)``, evenly spaced and centred (one index: the middle)."""
    return ((np.arange(count) + 0.5) * length / max(count, 1)).astype(int)


def _decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


def _legend(width: int, height: int = 24, scheme=NODULE_SCHEME) -> np.ndarray:
    legend = np.zeros((height, width, 3), np.uint8)
    names, colours = scheme.display_names(), scheme.colours
    step = width // len(names)
    # Smaller type where the longest name would run into the next swatch (7 classes on a narrow sheet).
    widest = max(cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.38, 1)[0][0] for name in names)
    font_scale = 0.38 * min(1.0, (step - 19) / widest)
    for value, name in enumerate(names):
        x = value * step + 4
        cv2.rectangle(legend, (x, 6), (x + 11, 17), colours[value].tolist() if value else [90, 90, 90], -1)
        cv2.putText(
            legend,
            name,
            (x + 15, 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (230, 230, 230),
            1,
            cv2.LINE_AA,
        )
    return legend
