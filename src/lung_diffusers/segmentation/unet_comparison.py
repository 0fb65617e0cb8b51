"""The comparison of the two segmentation U-Nets on held-out patients (``training/train_prior_segmentation.py``):
Dice and IoU per test image with bootstrap intervals over images, the markdown table, the figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..evaluation.bootstrap import bootstrap_interval, paired_bootstrap_interval
from ..evaluation.overlap import dice_and_iou
from ..inpainting.figure import Panel, difference_rgb, grey_rgb, prediction_rgb, render_figure, view_box
from .prior_net import IMAGE_ONLY, WITH_PRIOR, predict_nodule_mask

TEST_SETS = ("test-synthetic", "test-real")


def compare_unets(
    models: dict[str, torch.nn.Module],
    sets: dict[str, list[dict]],
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict:
    """Per test image, each U-Net's Dice and IoU of ``probability >= threshold``; per set, means with bootstrap
    intervals and the paired difference (with prior - image only).

    Args:
        models: U-Nets by variant (:data:`~.prior_net.WITH_PRIOR`, :data:`~.prior_net.IMAGE_ONLY`).
        sets: items (``image``, ``prior``, ``truth``) of the sets named in :data:`TEST_SETS`.

    Returns:
        ``{"sets": {set: summary}, "per_image": {set: [{variant: {"dice", "iou", "called_pixels", "mask"}}]}}``.
    """

    def interval(values):
        return bootstrap_interval(values, confidence, n_resamples, seed).as_dict()

    per_image, results = {}, {}
    for name in TEST_SETS:
        items = sets[name]
        if not items:
            continue
        per_image[name] = []
        for item in items:
            row = {}
            for variant, model in models.items():
                probability, called = predict_nodule_mask(
                    model, item["image"], item["prior"] if variant == WITH_PRIOR else None, threshold
                )
                dice, iou = dice_and_iou(called, item["truth"])
                row[variant] = {"dice": dice, "iou": iou, "called_pixels": int(called.sum()), "mask": called}
            per_image[name].append(row)
        summary = {"images": len(items)}
        for variant in models:
            summary[variant] = {
                metric: interval([row[variant][metric] for row in per_image[name]]) for metric in ("dice", "iou")
            }
        if WITH_PRIOR in models and IMAGE_ONLY in models:
            summary["with-prior minus image-only"] = {
                metric: paired_bootstrap_interval(
                    [row[WITH_PRIOR][metric] for row in per_image[name]],
                    [row[IMAGE_ONLY][metric] for row in per_image[name]],
                    confidence,
                    n_resamples,
                    seed,
                ).as_dict()
                for metric in ("dice", "iou")
            }
        results[name] = summary
    return {"sets": results, "per_image": per_image}


def comparison_figure(items: list[dict], rows: list[dict], variants: list[str], count: int) -> np.ndarray:
    """``count`` test slices spread over the set, zoomed on the nodule: input | prior | truth | each prediction."""
    lines = []
    for index in np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int):
        item, row = items[index], rows[index]
        top, left, bottom, right = view_box(item["truth"], min_side=96)
        crop = (slice(top, bottom), slice(left, right))
        truth = item["truth"][crop]
        image = item["image"][crop]
        where = f"{item['patient_id']} slice {item['slice_index']}"
        panels = [
            Panel(
                f"{where} " + ("(SYNTHETIC nodule)" if item["synthetic_input"] else "(REAL)"),
                grey_rgb(image),
                "synthetic" if item["synthetic_input"] else "real",
            ),
            Panel("prior: anomaly map", difference_rgb(item["prior"][crop]), "derived"),
            Panel("truth", prediction_rgb(image, truth, truth), "mask"),
        ]
        for variant in variants:
            stats = row[variant]
            panels.append(
                Panel(
                    f"{variant}: Dice {stats['dice']:.2f}, IoU {stats['iou']:.2f}",
                    prediction_rgb(image, stats["mask"][crop], truth),
                    "derived",
                )
            )
        lines.append(render_figure(panels))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 6), (0, width - line.shape[1]), (0, 0))) for line in lines]
    return np.concatenate(lines)


def loss_figure(losses: dict[str, list[float]], path: Path) -> None:
    """Training loss over steps (a moving average of 25 steps) for each U-Net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=120)
    for variant, values in losses.items():
        if values:
            window = min(25, len(values))
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axes.plot(np.arange(window, len(values) + 1), smooth, label=variant)
    axes.set_xlabel("step")
    axes.set_ylabel("Dice + cross-entropy loss")
    axes.set_title("Segmentation U-Nets: training loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def markdown_table(report: dict) -> str:
    lines = ["# Prior-aware nodule segmentation on held-out patients", "", report["description"], ""]
    lines += ["| test set | images | U-Net | Dice [95% CI] | IoU [95% CI] |", "|---|---|---|---|---|"]
    for name, summary in report["sets"].items():
        for key, value in summary.items():
            if key == "images":
                continue
            label = f"**{key}**" if "minus" in key else key
            lines.append(f"| {name} | {summary['images']} | {label} | {format_interval(value['dice'])} | {format_interval(value['iou'])} |")
    return "\n".join(lines) + "\n"


def format_interval(value: dict) -> str:
    """``mean [low, high]`` of an interval (:meth:`Interval.as_dict`); the mean alone without bounds."""
    mean, low, high = value["mean"], value["low"], value["high"]
    if low is None or not np.isfinite(low):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"
