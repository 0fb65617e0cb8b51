"""The report of the anomaly-map evaluation (``training/evaluate_anomaly_maps.py``, run by
:mod:`.anomaly_map_evaluation`): one noise level scored on the train and test sets (threshold chosen on train),
the markdown table, the per-slice CSV and the worst / best slices figure.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from ..ct import BACKGROUND, LEFT_LUNG, NODULE, RIGHT_LUNG
from ..evaluation.anomaly_scores import best_dice_threshold, dice_at_threshold, lesion_prediction, pixel_auroc
from ..evaluation.overlap import dice_score
from .figure import Panel, difference_rgb, grey_rgb, prediction_rgb, region_overlay_rgb, render_figure

REPORT_FILE, TABLE_FILE, CSV_FILE = "anomaly_evaluation.json", "anomaly_evaluation.md", "anomaly_per_slice.csv"
SETS = ("train", "test-synthetic", "test-real")
BASELINE = "intensity"  # the "noise level" key of the model-free baseline
CSV_COLUMNS = (
    "region", "set", "noise_level", "patient_id", "slice_index", "row", "synthetic_input", "nodule_pixels",
    "diameter_mm", "nodule_hu", "auroc", "dice", "called_pixels",
)  # fmt: skip


def scored_region(labels: np.ndarray, region: str) -> np.ndarray:
    """Where pixels are scored: ``"body"`` (all but the air around the patient) or ``"lungs"`` (lungs and nodules,
    which the recipe labels apart from the lung they sit in)."""
    if region == "body":
        return labels != BACKGROUND
    return np.isin(labels, (LEFT_LUNG, RIGHT_LUNG)) | (labels >= NODULE)


def evaluate_level(level_scores: dict[str, list[np.ndarray]], sets: dict[str, list[dict]], region: str) -> dict:
    """One noise level: threshold on train, then AUROC and Dice of every set; per-slice figures alongside."""

    def pooled(name):
        items = sets[name]
        return (
            level_scores[name],
            [item["truth"] for item in items],
            [scored_region(item["labels"], region) for item in items],
        )

    chosen = best_dice_threshold(*pooled("train"))
    result = {"threshold": chosen.threshold, "train_dice_at_threshold": chosen.dice, "sets": {}, "slices": {}}
    for name, items in sets.items():
        if not items:
            continue
        maps, truths, regions = pooled(name)
        summary = {
            "slices": len(items),
            "auroc": pixel_auroc(maps, truths, regions),
            "dice": dice_at_threshold(maps, truths, chosen.threshold, regions),
        }
        per_slice = []
        for score, truth, keep in zip(maps, truths, regions):
            called = lesion_prediction(score, chosen.threshold, keep)
            per_slice.append(
                {
                    "auroc": pixel_auroc(score, truth, keep),
                    "dice": dice_score(called, truth & keep),
                    "called_pixels": int(called.sum()),
                    "nodule_pixels": int((truth & keep).sum()),
                }
            )
        summary["mean_slice_dice"] = float(np.mean([s["dice"] for s in per_slice]))
        if name != "train":
            # What the test set's own best threshold would give: an upper bound, never the result.
            summary["best_possible_dice"] = best_dice_threshold(maps, truths, regions).dice
        result["sets"][name] = summary
        result["slices"][name] = per_slice
    return result


def figure_rows(per_slice: list[dict], count: int) -> list[tuple[str, int]]:
    """The ``count`` worst and ``count`` best slices by Dice (worst first), as (label, index)."""
    order = np.argsort([s["dice"] for s in per_slice], kind="stable")
    worst = [("worst", int(i)) for i in order[:count]]
    best = [("best", int(i)) for i in order[::-1][:count] if int(i) not in {j for _, j in worst}]
    return worst + best[::-1]


def failure_figure(
    items: list[dict], maps: list, recons: list, per_slice: list[dict], threshold: float, level, region: str, rows: int
) -> np.ndarray:
    """Rows of input | truth | reconstruction | anomaly map | prediction for the worst and best slices."""
    lines = []
    for rank, index in figure_rows(per_slice, rows):
        item, stats = items[index], per_slice[index]
        keep = scored_region(item["labels"], region)
        called = lesion_prediction(maps[index], threshold, keep)
        where = f"{item['patient_id']} slice {item['slice_index']}"
        panels = [
            Panel(
                f"{where} " + ("(SYNTHETIC nodule)" if item["synthetic_input"] else "(REAL)"),
                grey_rgb(item["image"]),
                "synthetic" if item["synthetic_input"] else "real",
            ),
            Panel("truth", region_overlay_rgb(item["image"], np.zeros_like(keep), item["truth"]), "mask"),
        ]
        if recons[index] is not None:
            panels.append(Panel(f"reconstruction (SYNTHETIC), noise {level:g}", grey_rgb(recons[index]), "synthetic"))
            panels.append(Panel("anomaly map", difference_rgb(maps[index]), "derived"))
        else:
            panels.append(Panel("score: slice intensity", grey_rgb(maps[index]), "derived"))
        panels.append(
            Panel(
                f"{rank}: Dice {stats['dice']:.2f}, AUROC {stats['auroc']:.2f}",
                prediction_rgb(item["image"], called, item["truth"]),
                "derived",
            )
        )
        lines.append(render_figure(panels))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 6), (0, width - line.shape[1]), (0, 0))) for line in lines]
    return np.concatenate(lines)


def markdown_table(report: dict) -> str:
    """The report as markdown: per region, a row per score; then the real slices one by one."""
    lines = ["# Mask-free anomaly maps (AnoDDPM-style) on held-out patients", "", report["description"]]
    for region, result in report["regions"].items():
        levels = result["levels"]
        lines += [
            "",
            f"## Pixels scored in the {'lungs (and nodule)' if region == 'lungs' else 'body'}",
            "",
            "| score | train AUROC | threshold (train) | train Dice | test AUROC, synthetic | test Dice, synthetic "
            "| test mean slice Dice | real-nodule AUROC | real-nodule Dice "
            "| (upper bound: best test Dice, synthetic) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, level in levels.items():
            sets = level["sets"]
            name = (
                "slice intensity (baseline)"
                if key == BASELINE
                else f"noise level {key} (from t = {level['start_timestep']})"
            )
            real, synthetic = sets.get("test-real", {}), sets.get("test-synthetic", {})
            lines.append(
                f"| {name} | {_f(sets['train']['auroc'])} | {level['threshold']:.4f} | {_f(sets['train']['dice'])} "
                f"| {_f(synthetic.get('auroc'))} | {_f(synthetic.get('dice'))} "
                f"| {_f(synthetic.get('mean_slice_dice'))} | {_f(real.get('auroc'))} | {_f(real.get('dice'))} "
                f"| {_f(synthetic.get('best_possible_dice'))} |"
            )
        if result["real_slices"]:
            lines += ["", "Real reference-nodule slices of the held-out patient, one by one (AUROC / Dice):", ""]
            lines.append("| slice | nodule px | " + " | ".join(_level_name(key) for key in levels) + " |")
            lines.append("|---|---|" + "---|" * len(levels))
            for row in result["real_slices"]:
                cells = [f"{_f(row[key]['auroc'])} / {_f(row[key]['dice'])}" for key in levels]
                lines.append(
                    f"| {row['patient_id']} {row['slice_index']} | {row['nodule_pixels']} | "
                    + " | ".join(cells)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def _level_name(key) -> str:
    return "intensity" if key == BASELINE else f"noise {key}"


def _f(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def csv_text(records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: f"{value:.6g}" if isinstance(value, float) else value for key, value in record.items()})
    return buffer.getvalue()


def figure_name(name: str, key) -> str:
    return f"figure-{name}-{_level_name(key).replace(' ', '-')}.png"
