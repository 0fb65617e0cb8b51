"""The fidelity figures of a set of masks, as ``training/evaluate_fidelity.py`` writes them: ``fidelity.json``
(the model card's table, :func:`build_fidelity_report`), the per-image CSV and the real | mask | synthetic grid.

The rules per slice are :mod:`.fidelity`; here they are averaged over images and compared with the targets.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from ..ct import mask_to_rgb, window_hu
from . import fidelity

CSV_FILE, GRID_FILE = "fidelity_per_image.csv", "fidelity_grid.png"
CSV_COLUMNS = (
    "source", "row", "config", "seriesuid", "slice_index", "seed", "lung_pixels", "mid_chest",
    "dice", "median_hu_lungs", "median_hu_soft_tissue", "median_hu_background",
)  # fmt: skip


def summarize_fidelity(records: list[dict]) -> dict:
    """Means over images (NaNs skipped) and how many images each has: Dice (all, mid-chest) and the medians."""
    summary = {}
    summary["dice"], summary["dice_images"] = fidelity.mean_over_images([r["dice"] for r in records])
    summary["dice_mid_chest"], summary["dice_mid_chest_images"] = fidelity.mean_over_images(
        [r["dice"] for r in records if r["mid_chest"]]
    )
    for region in fidelity.REGIONS:
        key = f"median_hu_{region}"
        summary[key], summary[f"{key}_images"] = fidelity.mean_over_images([r[key] for r in records])
    return summary


def build_fidelity_report(synthetic: dict, real: dict, settings: dict) -> dict:
    """The json the model card renders (``description``, ``rows``, ``verdict``), plus targets, means and settings."""
    met = fidelity.targets_met(synthetic, real)
    rows = [
        (f"lung Dice, {_count(settings['lung_masks'], 'mask')} with lung", "dice",
         f">= {fidelity.DICE_TARGET} and at most {fidelity.DICE_MAX_GAP_TO_REAL} below real"),
        (f"lung Dice, {_count(settings['mid_chest_masks'], 'mid-chest mask')}", "dice_mid_chest", "(information)"),
        ("median HU, lungs", "median_hu_lungs", f"< {fidelity.LUNG_HU_BELOW:.0f} HU"),
        (f"median HU, soft tissue (body > {settings['soft_tissue_margin_px']} px from lungs)", "median_hu_soft_tissue",
         f"within ±{fidelity.SOFT_TISSUE_HU_WITHIN:.0f} HU"),
        ("median HU, background", "median_hu_background", f"< {fidelity.BACKGROUND_HU_BELOW:.0f} HU"),
    ]  # fmt: skip
    seeds, num_masks = settings["seeds"], settings["num_masks"]
    without_lung = num_masks - settings["lung_masks"]
    description = (
        f"Measured by `training/evaluate_fidelity.py` on {_count(num_masks, 'held-out mask')} (split "
        f"`{settings['split']}` of `{settings['dataset']}`, configs {', '.join(settings['configs'])}) at "
        f"{settings['resolution']} px: {settings['scheduler']}, {_count(settings['num_inference_steps'], 'step')}, "
        f"guidance {settings['guidance_scale']:g}, {_count(len(seeds), 'seed')} ({', '.join(map(str, seeds))}): "
        f"{_count(num_masks * len(seeds), 'synthetic slice')}. *Real* is each mask's own CT slice, scored by the same "
        "rules. Lung Dice: the mask's lungs (labels 2, 3) against air (< -500 HU) inside the mask's body"
        + (f" ({_count(without_lung, 'mask')} without lung left out)" if without_lung else "")
        + "; mid-chest: the half of the masks with the most lung. Medians are taken per slice, then averaged."
    )
    if settings["grid_rows"]:
        description += (
            f"\n\n![real slice | mask | synthetic (seed {seeds[0]})]({GRID_FILE})\n\n"
            f"*Real slice | mask | synthetic (seed {seeds[0]}) for mid-chest held-out masks.*"
        )
    names = {
        "lung_dice": "lung Dice",
        "lungs": "lung HU",
        "soft_tissue": "soft-tissue HU",
        "background": "background HU",
    }
    missed = [names[key] for key, ok in met.items() if not ok]
    if missed:
        verdict = f"**Targets met: {sum(met.values())} of {len(met)}**; missed: {', '.join(missed)}."
    else:
        verdict = f"**All {len(met)} targets met** (lung Dice, lung, soft-tissue and background HU)."
    return {
        "description": description,
        "rows": [
            {"name": name, "synthetic": _figure(synthetic[key], key), "real": _figure(real[key], key), "target": target}
            for name, key, target in rows
        ],
        "verdict": verdict,
        "targets_met": met,
        "synthetic": synthetic,
        "real": real,
        "settings": settings,
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _figure(value: float, key: str) -> str:
    if np.isnan(value):
        return "n/a"
    return f"{value:.3f}" if key.startswith("dice") else f"{value:.0f} HU"


def grid_picks(mid_chest: np.ndarray, lung_pixels: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` mask indices spread over the mid-chest masks (from most to least lung), in row order."""
    chest = np.flatnonzero(mid_chest)
    if not len(chest):
        return chest
    chest = chest[np.argsort(-lung_pixels[chest], kind="stable")]
    return np.unique(chest[np.linspace(0, len(chest) - 1, min(count, len(chest))).round().astype(int)])


def fidelity_grid(
    reals_hu: list[np.ndarray],
    masks: list[np.ndarray],
    synthetics_hu: list[np.ndarray],
    hu_window: tuple[float, float],
    malignancy: bool,
    scale: int,
) -> np.ndarray:
    """Rows of real slice | mask | synthetic as uint8 RGB, upscaled ``scale`` times (nearest neighbour)."""

    def grey(hu: np.ndarray) -> np.ndarray:
        return np.repeat(window_hu(hu, hu_window)[..., None], 3, axis=2)

    rows = [
        np.concatenate([grey(real), mask_to_rgb(mask, malignancy=malignancy), grey(synthetic)], axis=1)
        for real, mask, synthetic in zip(reals_hu, masks, synthetics_hu)
    ]
    return np.concatenate(rows, axis=0).repeat(scale, axis=0).repeat(scale, axis=1)


def csv_text(records: list[dict]) -> str:
    """``fidelity_per_image.csv``: one line per real and per synthetic slice (floats to 6 significant digits)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: f"{value:.6g}" if isinstance(value, float) else value for key, value in record.items()})
    return buffer.getvalue()
