"""Counts of a synthetic dataset for its card: classes per image, nodules (placed or from the source), sizes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..ct import NODULE, label_names
from .mask_source import decode_mask


@dataclass
class DatasetSummary:
    """What the card reports.

    Attributes:
        images: rows.
        images_with_class: per class name, images whose mask has that class.
        pixel_share: per class name, its share of all mask pixels.
        placed: per nodule class name, nodules placed by the sampler.
        images_with_nodules: images whose mask has a nodule (either kind).
        images_with_source_nodules: images whose nodule came with the source mask (no edit).
        placed_diameters_mm, placed_diameters_px: the placed nodules' diameters.
        source_rows, source_series: distinct source masks and scans used.
    """

    images: int = 0
    images_with_class: dict[str, int] = field(default_factory=dict)
    pixel_share: dict[str, float] = field(default_factory=dict)
    placed: dict[str, int] = field(default_factory=dict)
    images_with_source_nodules: int = 0
    placed_diameters_mm: list[float] = field(default_factory=list)
    placed_diameters_px: list[float] = field(default_factory=list)
    images_with_nodules: int = 0
    source_rows: int = 0
    source_series: int = 0


def summarize(files: list[Path], num_classes: int) -> DatasetSummary:
    """Read the masks, edits and source ids of the data files (not the images) and count."""
    names = label_names(num_classes)
    with_class, pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    placed, source_nodules, diameters_mm, diameters_px = Counter(), 0, [], []
    rows, series, images, any_nodule = set(), set(), 0, 0
    for path in files:
        table = pq.read_table(path, columns=["mask", "edit", "source_mask"]).to_pylist()
        for row in table:
            mask = decode_mask(row["mask"])
            counts = np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
            with_class += counts > 0
            pixels += counts
            images += 1
            has_nodule = bool((mask >= NODULE).any())
            any_nodule += has_nodule
            edit = row["edit"] or {}
            if edit.get("kind") == "add_nodule":
                placed[names[edit["label"]]] += 1
                diameters_mm.append(float(edit["diameter_mm"]))
                diameters_px.append(float(edit["diameter_px"]))
            elif has_nodule:
                source_nodules += 1
            source = row["source_mask"] or {}
            rows.add((source.get("config"), source.get("split"), source.get("row")))
            series.add(source.get("seriesuid"))
    total = max(int(pixels.sum()), 1)
    return DatasetSummary(
        images=images,
        images_with_class={n: int(c) for n, c in zip(names, with_class)},
        pixel_share={n: float(p) / total for n, p in zip(names, pixels)},
        placed=dict(sorted(placed.items())),
        images_with_source_nodules=source_nodules,
        placed_diameters_mm=diameters_mm,
        placed_diameters_px=diameters_px,
        images_with_nodules=any_nodule,
        source_rows=len(rows),
        source_series=len(series - {None}),
    )


def size_table(diameters_mm: list[float], diameters_px: list[float], bins: int = 5) -> str:
    """Markdown: the placed nodules' diameters (min, median, max) and a histogram in mm."""
    if not diameters_mm:
        return "No nodules were placed."
    mm, px = np.array(diameters_mm), np.array(diameters_px)
    lines = [
        "| | min | median | max |",
        "|---|---|---|---|",
        f"| diameter (mm) | {mm.min():.1f} | {np.median(mm):.1f} | {mm.max():.1f} |",
        f"| diameter (pixels of the synthetic slice) | {px.min():.2f} | {np.median(px):.2f} | {px.max():.2f} |",
        "",
        "| diameter (mm) | nodules |",
        "|---|---|",
    ]
    low, high = float(mm.min()), float(mm.max())
    if high > low:
        counts, edges = np.histogram(mm, bins=bins, range=(low, high))
    else:
        counts, edges = [len(mm)], [low, high]
    lines += [f"| {a:.1f}-{b:.1f} | {c} |" for a, b, c in zip(edges[:-1], edges[1:], counts)]
    return "\n".join(lines)
