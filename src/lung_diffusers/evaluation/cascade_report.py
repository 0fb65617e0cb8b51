"""A cascade's figures at full resolution as ``training/evaluate_fidelity.py --upscaler`` reports them (issue 17,
item 6): the fidelity table of :mod:`.fidelity_report`, then placed nodules' contrast, sharpness and agreement with
stage 1, each row with its goal and a plain verdict (``met``, ``missed`` or ``information``); and the figure
real slice | mask | stage 1 | output.

The per-image rules are :mod:`.cascade_metrics`; the nodules are :mod:`.nodule_placement`'s. Here they are
summarised over images and compared with the goals:

* **Nodule contrast**: per diameter, the median over images and the share of images at or above 300 HU; the goal
  pools every image whose nodule is 6 mm or more: at least 90% of them reach 300 HU. The real LUNA16 nodules are
  summarised by the same rule.
* **Sharpness**: the geometric mean over images of the per-image ratio (a ratio's natural average), goal within
  [0.7, 1.3]; stage 2 must also be closer to 1 than bicubic upsampling of stage 1's output, in the mean over images
  of ``|log ratio|``.
* **Agreement with stage 1**: the mean over images of the per-image mean absolute HU difference, goal <= 60 HU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..ct import mask_to_rgb, window_hu

CONTRAST_GOAL_HU = 300.0
CONTRAST_GOAL_SHARE = 0.9
CONTRAST_GOAL_MIN_DIAMETER_MM = 6.0
SHARPNESS_GOAL = (0.7, 1.3)
AGREEMENT_GOAL_HU = 60.0
CASCADE_GRID_FILE = "cascade_nodule_grid.png"
GRID_PANELS = "Real slice | mask with the placed nodule | stage 1 | output"

# The goals of :mod:`.fidelity_report`'s rows, in its order (None: information only).
FIDELITY_ROW_GOALS = ("lung_dice", None, "lungs", "soft_tissue", "background")
GOAL_NAMES = {
    "lung_dice": "lung Dice",
    "lungs": "lung HU",
    "soft_tissue": "soft-tissue HU",
    "background": "background HU",
    "nodule_contrast": "nodule contrast",
    "sharpness": "sharpness",
    "sharpness_vs_bicubic": "sharper than bicubic",
    "stage_agreement": "agreement with stage 1",
}


def contrast_summary(contrasts_hu: Sequence[float]) -> dict:
    """``images`` (with a defined contrast), ``median_hu`` and ``share_at_goal`` (>= 300 HU), and ``undefined``
    (images whose nodule had no lung ring: NaN)."""
    values = np.asarray(contrasts_hu, np.float64)
    defined = values[~np.isnan(values)]
    return {
        "images": int(defined.size),
        "median_hu": float(np.median(defined)) if defined.size else math.nan,
        "share_at_goal": float(np.mean(defined >= CONTRAST_GOAL_HU)) if defined.size else math.nan,
        "undefined": int(values.size - defined.size),
    }


def sharpness_summary(ratios: Sequence[float]) -> dict:
    """``images``, ``geometric_mean`` and ``mean_abs_log`` of the finite, positive ratios."""
    values = np.asarray(ratios, np.float64)
    logs = np.log(values[np.isfinite(values) & (values > 0)])
    return {
        "images": int(logs.size),
        "geometric_mean": float(np.exp(logs.mean())) if logs.size else math.nan,
        "mean_abs_log": float(np.abs(logs).mean()) if logs.size else math.nan,
    }


def summarize_cascade(records: Sequence[dict], real_nodules: Sequence[dict], diameters_mm: Sequence[float]) -> dict:
    """The cascade's summaries.

    Args:
        records: per synthetic image: ``kind`` ``"fidelity"`` (with ``sharpness_ratio``, ``sharpness_ratio_bicubic``)
            or ``"nodule"`` (with ``nodule["diameter_mm"]`` and ``contrast_hu``), and ``stage_agreement_hu``.
        real_nodules: per real nodule: ``diameter_mm`` and ``contrast_hu``.
        diameters_mm: the placed diameters, one summary each.
    """
    nodules = [r for r in records if r["kind"] == "nodule"]
    fidelity = [r for r in records if r["kind"] == "fidelity"]
    goal = CONTRAST_GOAL_MIN_DIAMETER_MM
    agreement = np.array([r["stage_agreement_hu"] for r in records], np.float64)
    agreement = agreement[~np.isnan(agreement)]
    return {
        "nodule_contrast": {
            f"{d:g}": contrast_summary([r["contrast_hu"] for r in nodules if r["nodule"]["diameter_mm"] == d])
            for d in sorted(diameters_mm)
        },
        "nodule_contrast_goal_sizes": contrast_summary(
            [r["contrast_hu"] for r in nodules if r["nodule"]["diameter_mm"] >= goal]
        ),
        "real_nodule_contrast": contrast_summary([n["contrast_hu"] for n in real_nodules]),
        "real_nodule_contrast_goal_sizes": contrast_summary(
            [n["contrast_hu"] for n in real_nodules if n["diameter_mm"] >= goal]
        ),
        "sharpness": sharpness_summary([r["sharpness_ratio"] for r in fidelity]),
        "sharpness_bicubic": sharpness_summary([r["sharpness_ratio_bicubic"] for r in fidelity]),
        "stage_agreement": {
            "images": int(agreement.size),
            "mean_hu": float(agreement.mean()) if agreement.size else math.nan,
            "max_hu": float(agreement.max()) if agreement.size else math.nan,
        },
    }


def cascade_goals(summary: dict) -> dict[str, bool]:
    """Which of the cascade's goals the summary meets (a figure that could not be measured meets none)."""
    low, high = SHARPNESS_GOAL
    sharpness, bicubic = summary["sharpness"], summary["sharpness_bicubic"]
    return {
        "nodule_contrast": bool(summary["nodule_contrast_goal_sizes"]["share_at_goal"] >= CONTRAST_GOAL_SHARE),
        "sharpness": bool(low <= sharpness["geometric_mean"] <= high),
        "sharpness_vs_bicubic": bool(sharpness["mean_abs_log"] < bicubic["mean_abs_log"]),
        "stage_agreement": bool(summary["stage_agreement"]["mean_hu"] <= AGREEMENT_GOAL_HU),
    }


def settings_text(settings: dict) -> str:
    """The sampling settings of every figure, in one line."""
    strength = settings.get("upscaler_strength", 1.0)  # reports from before strength started from pure noise
    steps = settings["upscaler_steps"]
    run = "" if strength >= 1 else f" (the last {max(1, int(steps * strength))} at strength {strength:g}, from stage 1 noised)"
    return (
        f"stage 1: {settings['scheduler']}, {_count(settings['num_inference_steps'], 'step')} at "
        f"{settings['low_res_size']} px; stage 2: {settings['scheduler']}, {_count(steps, 'step')}{run} "
        f"at {settings['resolution']} px, noise "
        f"level {settings['noise_level']}; guidance {settings['guidance_scale']:g} in both"
    )


def build_cascade_report(fidelity_report: dict, summary: dict, settings: dict) -> dict:
    """The json the model card renders (``description``, ``rows`` with a ``verdict`` each, ``verdict``), the goals
    met, the summaries and the settings.

    Args:
        fidelity_report: :func:`~lung_diffusers.evaluation.fidelity_report.build_fidelity_report` of the cascade's
            images of the held-out masks.
        summary: :func:`summarize_cascade`.
        settings: the fidelity report's settings and the cascade's (``low_res_size``, ``upscaler_steps``,
            ``noise_level``, ``nodule_*``, ``ring_mm``, ``grid_rows``...).
    """
    if len(fidelity_report["rows"]) != len(FIDELITY_ROW_GOALS):
        raise ValueError("the fidelity report's rows changed: update FIDELITY_ROW_GOALS")
    met = {**fidelity_report["targets_met"], **cascade_goals(summary)}

    def verdict(goal: str | None) -> str:
        return "information" if goal is None else ("met" if met[goal] else "missed")

    rows = [{**row, "verdict": verdict(goal)} for row, goal in zip(fidelity_report["rows"], FIDELITY_ROW_GOALS)]
    goal_mm = CONTRAST_GOAL_MIN_DIAMETER_MM
    for diameter, figures in summary["nodule_contrast"].items():
        rows.append(
            _row(f"nodule contrast, placed {diameter}-mm nodules", _contrast(figures), "—", "(reported)", None)
        )
    rows.append(_row(
        f"nodule contrast, placed nodules >= {goal_mm:g} mm (real: LUNA16 nodules >= {goal_mm:g} mm)",
        _contrast(summary["nodule_contrast_goal_sizes"]), _contrast(summary["real_nodule_contrast_goal_sizes"]),
        f">= {CONTRAST_GOAL_HU:.0f} HU in >= {CONTRAST_GOAL_SHARE:.0%} of images", verdict("nodule_contrast"),
    ))  # fmt: skip
    rows.append(_row("nodule contrast, LUNA16 nodules of all sizes", "—", _contrast(summary["real_nodule_contrast"]),
                     "(reference)", None))  # fmt: skip
    sharp, bicubic = summary["sharpness"], summary["sharpness_bicubic"]
    low, high = SHARPNESS_GOAL
    rows.append(_row(
        f"sharpness ratio to the real slice, geometric mean of {_count(sharp['images'], 'image')}",
        _number(sharp["geometric_mean"], "{:.2f}"), "1 (reference)", f"{low:g} to {high:g}", verdict("sharpness"),
    ))  # fmt: skip
    rows.append(_row(
        "sharpness ratio, bicubic upsampling of stage 1's output", _number(bicubic["geometric_mean"], "{:.2f}"),
        "1 (reference)", "stage 2 closer to 1 (mean absolute log ratio "
        f"{_number(sharp['mean_abs_log'], '{:.2f}')} vs {_number(bicubic['mean_abs_log'], '{:.2f}')})",
        verdict("sharpness_vs_bicubic"),
    ))  # fmt: skip
    agreement = summary["stage_agreement"]
    rows.append(_row(
        f"agreement with stage 1: mean absolute HU difference in the body, {_count(agreement['images'], 'image')}",
        _number(agreement["mean_hu"], "{:.0f} HU"), "—", f"<= {AGREEMENT_GOAL_HU:.0f} HU", verdict("stage_agreement"),
    ))  # fmt: skip

    missed = [GOAL_NAMES[key] for key, ok in met.items() if not ok]
    at = f" ({settings_text(settings)})"
    if missed:
        overall = f"**Goals met: {sum(met.values())} of {len(met)}**; missed: {', '.join(missed)}{at}."
    else:
        overall = f"**All {len(met)} goals met**{at}."
    return {
        **fidelity_report,
        "description": _description(settings),
        "rows": rows,
        "verdict": overall,
        "targets_met": met,
        "cascade": summary,
        "settings": settings,
    }


def _description(settings: dict) -> str:
    seeds, nodule_seeds = settings["seeds"], settings["nodule_seeds"]
    num_masks, without_lung = settings["num_masks"], settings["num_masks"] - settings["lung_masks"]
    diameters = ", ".join(f"{d:g}" for d in settings["nodule_diameters_mm"])
    text = (
        f"Measured by `training/evaluate_fidelity.py --upscaler` at {settings['resolution']} px through both stages of "
        f"the cascade ({settings_text(settings)}), on the held-out masks of split `{settings['split']}` of "
        f"`{settings['dataset']}` (configs {', '.join(settings['configs'])}).\n\n"
        f"- **Lung Dice and HU medians**: {_count(num_masks, 'mask')}, {_count(len(seeds), 'seed')} "
        f"({', '.join(map(str, seeds))}); *real* is each mask's own CT slice at the same size, scored by the same rules"
        + (f" ({_count(without_lung, 'mask')} without lung left out of the Dice)" if without_lung else "")
        + "; mid-chest: the half of the masks with the most lung.\n"
        f"- **Nodules**: {_count(settings['nodule_masks'], 'nodule-free mid-chest mask')}, nodules of {diameters} mm "
        f"(converted with each slice's pixel spacing) at {_count(settings['nodule_positions'], 'position')} inside the "
        f"lungs each, one nodule per image, {_count(len(nodule_seeds), 'seed')} ({', '.join(map(str, nodule_seeds))}): "
        f"{_count(settings['nodule_images'], 'image')}. Contrast: the median HU inside the nodule minus that of a "
        f"{settings['ring_mm']:g}-mm ring of lung around it. *Real*: the LUNA16 nodules of the recipe's "
        f"`{settings['real_nodule_config']}` rows of every split ({', '.join(settings['real_nodule_splits']) or 'none'}), "
        "one per nodule and slice, at the same size.\n"
        f"- **Sharpness**: the mean absolute Laplacian (HU) inside the body eroded by {settings['sharpness_erosion_px']} "
        "px, over the real slice's; of the held-out masks' images.\n"
        f"- **Agreement with stage 1**: the output area-averaged to {settings['low_res_size']} px against the stage-1 "
        "image it started from, inside the body; of every image."
    )
    if settings["grid_rows"]:
        text += (
            f"\n\n![{GRID_PANELS}]({CASCADE_GRID_FILE})\n\n"
            f"*{GRID_PANELS} (stage 1 at {settings['low_res_size']} px, shown enlarged) for held-out "
            f"masks with placed nodules; {settings_text(settings)}, seed {nodule_seeds[0]}.*"
        )
    return text


def _row(name: str, synthetic: str, real: str, target: str, verdict: str | None) -> dict:
    return {"name": name, "synthetic": synthetic, "real": real, "target": target, "verdict": verdict or "information"}


def _contrast(figures: dict) -> str:
    if not figures["images"]:
        return "n/a"
    return (
        f"median {figures['median_hu']:.0f} HU, {figures['share_at_goal']:.0%} >= {CONTRAST_GOAL_HU:.0f} HU "
        f"({_count(figures['images'], 'image')})"
    )


def _number(value: float, pattern: str) -> str:
    return "n/a" if value is None or math.isnan(value) else pattern.format(value)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def cascade_grid(
    reals_hu: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    low_res_hu: Sequence[np.ndarray],
    outputs_hu: Sequence[np.ndarray],
    hu_window: tuple[float, float],
    malignancy: bool,
    scale: int = 1,
) -> np.ndarray:
    """Rows of real slice | mask | stage 1 (enlarged by pixel repetition to the output's size) | output, uint8 RGB,
    upscaled ``scale`` times (nearest neighbour)."""

    def grey(hu: np.ndarray) -> np.ndarray:
        return np.repeat(window_hu(hu, hu_window)[..., None], 3, axis=2)

    rows = []
    for real, mask, low, out in zip(reals_hu, masks, low_res_hu, outputs_hu):
        factor = out.shape[0] // low.shape[0]
        enlarged = np.asarray(low).repeat(factor, axis=0).repeat(factor, axis=1)
        rows.append(
            np.concatenate([grey(real), mask_to_rgb(mask, malignancy=malignancy), grey(enlarged), grey(out)], 1)
        )
    return np.concatenate(rows, axis=0).repeat(scale, axis=0).repeat(scale, axis=1)
