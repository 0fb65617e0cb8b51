"""``training/evaluate_fidelity.py --upscaler``: a cascade (the SDM then its super-resolution stage) measured at the
upscaler's size on held-out masks (issue 17, item 6), resumable.

    python training/evaluate_fidelity.py --pipeline pipelines/lung-sdm-64 --upscaler ../train-runs/upscaler-256/pipeline \\
        --dataset_name ../train-runs/data/luna16-mini-all --output fidelity-cascade-256 --update_card

Both stages sample with ``--scheduler`` (default DPM-Solver++), stage 1 with ``--num_inference_steps`` and stage 2
with ``--upscaler_steps`` (at most 25; it runs the last ``--upscaler_strength`` share of them, from the stage-1 image
noised) at ``--noise_level``, guidance ``--guidance_scale`` in both; every image has
its own generator seeded with its seed, which drives both stages. Three sets of images:

- **the held-out masks** (every mask of the split, or ``--max_masks``), once per ``--seeds``: lung Dice and HU
  medians beside the real slices (:mod:`lung_diffusers.evaluation.fidelity`), the sharpness ratio to the real
  slice, and that of bicubic upsampling of the stage-1 image (:mod:`lung_diffusers.evaluation.cascade_metrics`);
- **placed nodules**: ``--nodule_masks`` nodule-free mid-chest masks, nodules of ``--nodule_diameters_mm`` at
  ``--nodule_positions`` positions inside the lungs each (:mod:`lung_diffusers.evaluation.nodule_placement`), once
  per ``--nodule_seeds``: the nodule's contrast against a 3-mm ring of lung;
- **real LUNA16 nodules**: every slice of the recipe's nodule config (all splits) at the same size, their contrast
  by the same rule (no sampling).

Every synthetic image also gets its agreement with stage 1. The summaries and goals are
:mod:`lung_diffusers.evaluation.cascade_report`. Writes to ``--output``:

- ``fidelity.json``: the table with each goal's verdict (``--update_card`` also puts it, with the figure, in the
  upscaler's folder and re-renders its card);
- ``fidelity_per_image.csv``: the held-out masks' real and synthetic slices, as the 64-px evaluation writes it;
- ``cascade_per_image.jsonl``: one JSON line per synthetic image: its key (settings, mask, seed, nodule) and
  figures; the figure's images are kept in their lines;
- ``cascade_nodule_grid.png``: real slice | mask with the placed nodule | stage 1 | output, marked synthetic.

**Resuming.** The folder is claimed (its manifest written) before the first image, and the per-image lines are
rewritten atomically after every batch. Run the same command again with ``--overwrite``: every image whose key
is in ``cascade_per_image.jsonl`` is taken from there, the others are sampled. A key holds a fingerprint of both
stages' weights and configs and the sampling settings, so changed weights or settings sample anew.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import LungSDMCombinedPipeline, LungSDMPipeline, LungSDMUpscalePipeline, save_synthetic_png
from ..atomic_write import write_bytes_atomically, write_text_atomically
from ..cascade import upsample_low_res
from ..ct import (
    MALIGNANCY_LABEL_NAMES,
    hu_from_image,
    hu_from_model_range,
    image_from_hu,
    label_scheme,
    model_range_from_image,
    unwindow_hu,
    window_hu,
)
from ..data.slice_dataset import load_slice_dataset, resized_slice
from ..evaluation import cascade_metrics, fidelity
from ..evaluation.cascade_report import (
    CASCADE_GRID_FILE,
    GRID_PANELS,
    build_cascade_report,
    cascade_grid,
    settings_text,
    summarize_cascade,
)
from ..evaluation.fidelity_report import CSV_FILE, build_fidelity_report, csv_text, grid_picks, summarize_fidelity
from ..evaluation.nodule_placement import NodulePlacement, drawn_nodules, label_map_digest, place_nodules
from ..evaluation.report_json import json_ready
from ..output_folder import output_folder
from ..pipelines import load_pipeline
from ..scheduler_registry import get_entry
from ..synthesis.checkpoint import configs_sha256, weights_sha256
from .model_card import FIDELITY_FILE, write_training_card

RECORDS_FILE = "cascade_per_image.jsonl"
MAX_UPSCALER_STEPS = 25  # issue 17's setting: stage 2 samples with at most 25 steps
RING_MM = 3.0
SHARPNESS_EROSION_PX = 2


@dataclass(frozen=True)
class CascadeImage:
    """One synthetic image to make: of mask ``mask_index`` (unchanged, or with ``nodule`` placed) and ``seed``."""

    kind: str  # "fidelity" (a held-out mask as it is) or "nodule" (with a placed nodule)
    mask_index: int
    seed: int
    nodule: NodulePlacement | None
    key: str


# ---------------------------------------------------------------------------------------------- inputs


def load_cascade(args: argparse.Namespace) -> LungSDMCombinedPipeline:
    """Both stages with ``args.scheduler`` each, on ``args.device``, their progress bars off (ours counts images)."""
    base = load_pipeline(args.pipeline, args.scheduler, None, LungSDMPipeline)
    upscaler = load_pipeline(args.upscaler, args.scheduler, None, LungSDMUpscalePipeline, flag="--upscaler")
    pipe = LungSDMCombinedPipeline.from_stages(base, upscaler)
    pipe.upscaler.check_noise_level(args.noise_level)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(args.device)


def cascade_resolution(pipe: LungSDMCombinedPipeline, args: argparse.Namespace) -> int:
    """The output side: ``--resolution`` or the upscaler's ``sample_size``, a multiple of stage 1's side."""
    resolution = args.resolution or int(pipe.upscaler_unet.config.sample_size)
    low = pipe.low_res_size
    if resolution % low or resolution <= low:
        raise ValueError(
            f"--resolution {resolution} must be a multiple of stage 1's {low} px larger than it (the upscaler makes "
            f"{pipe.upscaler_unet.config.sample_size} px)"
        )
    return resolution


def pipeline_fingerprint(folder: str | Path) -> str:
    """The sha256 of a pipeline folder's weights and configs (synthesize's checkpoint hashes), not of its card,
    figures or examples: refreshing a card does not make earlier images stale."""
    return f"{weights_sha256(folder)}:{configs_sha256(folder)}"


def pixel_mm_at(data: dict, index: int) -> float:
    """The pixel spacing of mask ``index`` at the evaluated size; refuses a dataset without spacing."""
    spacing = float(np.mean(data["pixel_mm"][index]))
    if not math.isfinite(spacing):
        raise ValueError(
            "the masks have no 'spacing' column (pixel size in mm), so nodules in mm cannot be placed; use a dataset "
            "made by the lung-diffusers data recipe"
        )
    return spacing


# ---------------------------------------------------------------------------------------------- the images


def nodule_mask_indices(data: dict, nodule_classes, count: int) -> np.ndarray:
    """Up to ``count`` nodule-free mid-chest masks, spread from most to least lung, in row order."""
    masks = data["masks"]
    free = np.array([not np.isin(mask, nodule_classes).any() for mask in masks])
    lung_pixels = np.array([int(fidelity.lung_mask(mask).sum()) if ok else 0 for mask, ok in zip(masks, free)])
    return grid_picks(fidelity.mid_chest(lung_pixels), lung_pixels, count)


def plan_images(
    args: argparse.Namespace, data: dict, held_out: np.ndarray, nodule_masks: np.ndarray, settings_key: str
) -> list[CascadeImage]:
    """Every image of the evaluation, with its cache key: the ``held_out`` masks as they are, once per ``--seeds``,
    and the ``nodule_masks`` with each placed nodule, once per ``--nodule_seeds``."""
    digests = [label_map_digest(mask) for mask in data["masks"]]

    def key(kind: str, index: int, seed: int, nodule: NodulePlacement | None) -> str:
        where = (
            ""
            if nodule is None
            else f"|{nodule.diameter_mm:g}mm-{nodule.position}-{nodule.center_px[0]},{nodule.center_px[1]}"
        )
        return f"{kind}|{settings_key}|{digests[index]}|{seed}{where}"

    images = [
        CascadeImage("fidelity", index, seed, None, key("fidelity", index, seed, None))
        for seed in args.seeds
        for index in held_out.tolist()
    ]
    for index in nodule_masks:
        placements = place_nodules(
            data["masks"][index], args.nodule_diameters_mm, args.nodule_positions, pixel_mm_at(data, index)
        )
        for nodule in placements:
            for seed in args.nodule_seeds:
                images.append(
                    CascadeImage("nodule", int(index), seed, nodule, key("nodule", int(index), seed, nodule))
                )
    return images


def figure_picks(
    images: list[CascadeImage], nodule_masks: np.ndarray, lung_pixels: np.ndarray, args: argparse.Namespace
) -> list[CascadeImage]:
    """The figure's rows: the ``--grid_rows`` nodule masks with the most lung (whole chests, not the diaphragm),
    each with the next diameter (position 0, the first nodule seed)."""
    diameters = sorted(args.nodule_diameters_mm)
    shown = nodule_masks[np.argsort(-lung_pixels[nodule_masks], kind="stable")][: args.grid_rows]
    picks = []
    for row, index in enumerate(shown):
        diameter = diameters[row % len(diameters)]
        picks += [
            image
            for image in images
            if image.kind == "nodule" and image.mask_index == index and image.seed == args.nodule_seeds[0]
            and image.nodule.diameter_mm == diameter and image.nodule.position == 0
        ]  # fmt: skip
    return picks


def image_label_map(image: CascadeImage, data: dict, nodule_label: int) -> np.ndarray:
    mask = data["masks"][image.mask_index]
    return mask if image.nodule is None else image.nodule.label_map(mask, nodule_label)


def sample_cascade(
    pipe: LungSDMCombinedPipeline, images: list[CascadeImage], data: dict, nodule_label: int, args: argparse.Namespace
) -> Iterator[tuple[list[CascadeImage], np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(images, outputs in HU, stage-1 images in HU, stage-1 label maps)`` per batch of ``--batch_size``.

    Each image has its own generator seeded with its seed (stage 1 draws from it, then stage 2), so it does not
    depend on the batch it is in.
    """
    hu_window = tuple(pipe.config.hu_window)
    guidance = args.guidance_scale
    for start in range(0, len(images), args.batch_size):
        batch = images[start : start + args.batch_size]
        out = pipe(
            np.stack([image_label_map(image, data, nodule_label) for image in batch]),
            num_inference_steps=args.num_inference_steps,
            guidance_scale=guidance,
            upscaler_num_inference_steps=args.upscaler_steps,
            upscaler_guidance_scale=guidance,
            noise_level=args.noise_level,
            upscaler_strength=args.upscaler_strength,
            generator=[torch.Generator().manual_seed(image.seed) for image in batch],
            output_type="hu",
        )
        yield batch, np.asarray(out.images), hu_from_image(out.low_res_images, hu_window), out.low_res_label_maps


def bicubic_hu(low_res_hu: np.ndarray, size: int, hu_window: tuple[float, float]) -> np.ndarray:
    """Stage 1's images upsampled as stage 2 receives them (:func:`lung_diffusers.cascade.upsample_low_res`), in HU."""
    sample = torch.from_numpy(model_range_from_image(image_from_hu(low_res_hu, hu_window)))[:, None]
    return hu_from_model_range(upsample_low_res(sample, size)[:, 0], hu_window)


def sharpness(hu: np.ndarray, real_hu: np.ndarray, mask: np.ndarray) -> float:
    """The sharpness ratio; NaN where it is undefined (no body left after erosion, or a flat real slice)."""
    try:
        return cascade_metrics.sharpness_ratio(hu, real_hu, mask, SHARPNESS_EROSION_PX)
    except (ValueError, ZeroDivisionError):
        return math.nan


def image_figures(
    image: CascadeImage, hu: np.ndarray, low_hu: np.ndarray, low_labels: np.ndarray, bicubic: np.ndarray,
    data: dict, reals_hu: np.ndarray, nodule_label: int, margin: int,
) -> dict:  # fmt: skip
    """The figures of one synthetic image."""
    try:
        figures = {"stage_agreement_hu": cascade_metrics.stage_agreement_hu(hu, low_hu, low_labels)}
    except ValueError:  # a map without body: nothing to compare
        figures = {"stage_agreement_hu": math.nan}
    mask, real = data["masks"][image.mask_index], reals_hu[image.mask_index]
    if image.nodule is None:
        figures.update(fidelity.slice_fidelity(hu, mask, margin))
        figures["sharpness_ratio"] = sharpness(hu, real, mask)
        figures["sharpness_ratio_bicubic"] = sharpness(bicubic, real, mask)
    else:
        labels = image.nodule.label_map(mask, nodule_label)
        figures["contrast_hu"] = cascade_metrics.nodule_contrast_hu(
            hu, image.nodule.disc(mask.shape), labels, pixel_mm_at(data, image.mask_index), RING_MM
        )
    return figures


# ---------------------------------------------------------------------------------------------- the cache


def read_records(path: Path) -> dict[str, dict]:
    """The per-image lines of an earlier run, by key (none when the file is absent)."""
    if not path.is_file():
        return {}
    records = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            records[record["key"]] = record
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"line {number} of {path} is not a per-image record of this evaluation; remove the file (its images "
                "are sampled again) or choose another --output"
            ) from None
    return records


def write_records(path: Path, records: dict[str, dict]) -> None:
    text = "".join(json.dumps(json_ready(record), allow_nan=False) + "\n" for record in records.values())
    write_text_atomically(path, text)


def png_text(grey: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(grey, np.uint8))
    if not ok:
        raise RuntimeError("could not encode a figure image as PNG")
    return base64.b64encode(data.tobytes()).decode("ascii")


def grey_from_png_text(text: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_UNCHANGED)


# ---------------------------------------------------------------------------------------------- real nodules


def real_nodule_contrasts(
    args: argparse.Namespace, num_classes: int, resolution: int, hu_window
) -> tuple[str, list, list]:
    """``(config, splits, nodules)``: every nodule of the recipe's nodule config, all splits, at ``resolution``
    (one per component and slice: ``seriesuid``, ``slice_index``, ``split``, ``diameter_mm``, ``contrast_hu``)."""
    import datasets

    from ..sources import local_or_hub

    config = "malignancy" if num_classes == len(MALIGNANCY_LABEL_NAMES) else "nodule"
    nodule_classes = label_scheme(num_classes).nodule_classes
    with local_or_hub(args.dataset_name, "--dataset_name"):
        try:
            builder = datasets.load_dataset_builder(args.dataset_name, config, cache_dir=args.cache_dir)
        except ValueError:  # the dataset has no such config: no real nodules to report
            return config, [], []
        splits = sorted(builder.config.data_files or {})
        parts = {split: load_slice_dataset(args.dataset_name, [config], split, args.cache_dir) for split in splits}
    nodules = []
    for split, dataset in parts.items():
        if "spacing" not in dataset.column_names:
            continue
        for row in tqdm(dataset, desc=f"real nodules ({split})", unit="slice", leave=False):
            grey, labels = resized_slice(row, resolution)
            pixel_mm = np.mean(row["spacing"]["pixel_mm"]) * np.asarray(row["mask"]).shape[0] / resolution
            hu = unwindow_hu(grey, hu_window)
            for pixels, diameter_mm in drawn_nodules(labels, nodule_classes, pixel_mm):
                nodules.append({
                    "seriesuid": row.get("seriesuid", ""), "slice_index": row.get("slice_index", ""), "split": split,
                    "diameter_mm": diameter_mm,
                    "contrast_hu": cascade_metrics.nodule_contrast_hu(hu, pixels, labels, pixel_mm, RING_MM),
                })  # fmt: skip
    return config, splits, nodules


# ---------------------------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> dict:
    """Evaluate the cascade (resuming from ``--output``'s per-image lines) and write the report; returns it."""
    from .fidelity_evaluation import TOOL, fill_dataset_configs, load_masks, spread_rows

    pipe = load_cascade(args)
    num_classes = pipe.unet.config.num_classes
    fill_dataset_configs(args, num_classes)
    resolution = cascade_resolution(pipe, args)
    hu_window = tuple(pipe.config.hu_window)
    margin = fidelity.soft_tissue_margin_px(resolution)
    scheme = label_scheme(num_classes)
    nodule_label = scheme.nodule_class(args.nodule_malignancy if scheme.tells_malignancy else None)

    # Every mask of the split: --max_masks spreads the held-out set over them, the nodule masks come from all.
    data = load_masks(args, num_classes, resolution, every_mask=True)
    masks = data["masks"]
    held_out = spread_rows(len(masks), args.max_masks)
    lung_pixels = np.array([int(fidelity.lung_mask(mask).sum()) for mask in masks])
    mid_chest = dict(zip(held_out.tolist(), fidelity.mid_chest(lung_pixels[held_out]).tolist()))
    reals_hu = fidelity.hu_from_model_range(data["images"], hu_window)
    nodule_masks = nodule_mask_indices(data, scheme.nodule_classes, args.nodule_masks)
    if len(nodule_masks) < args.nodule_masks:
        raise ValueError(
            f"the split has {len(nodule_masks)} nodule-free mid-chest mask(s), fewer than --nodule_masks "
            f"{args.nodule_masks}; pass a smaller --nodule_masks"
        )

    key_settings = {
        "pipeline": pipeline_fingerprint(args.pipeline),
        "upscaler": pipeline_fingerprint(args.upscaler),
        "scheduler": get_entry(args.scheduler).display_name,
        "num_inference_steps": args.num_inference_steps,
        "upscaler_steps": args.upscaler_steps,
        "guidance_scale": args.guidance_scale,
        "noise_level": args.noise_level,
        "upscaler_strength": args.upscaler_strength,
        **({"nodule_label": int(nodule_label)} if scheme.tells_malignancy else {}),  # 6-class caches stay valid
        "resolution": resolution,
        "hu_window": list(hu_window),
    }
    settings_key = hashlib.sha256(json.dumps(key_settings, sort_keys=True).encode()).hexdigest()[:16]
    images = plan_images(args, data, held_out, nodule_masks, settings_key)
    picks = figure_picks(images, nodule_masks, lung_pixels, args)
    pick_keys = {image.key for image in picks}

    output = Path(args.output)
    earlier = read_records(output / RECORDS_FILE)
    records = {
        image.key: earlier[image.key]
        for image in images
        if image.key in earlier and (image.key not in pick_keys or "grid" in earlier[image.key])
    }
    # Claim the folder before the first image: a run killed later leaves a manifest that lists its lines.
    with output_folder(output, TOOL, args.overwrite) as out:
        write_records(out.path(RECORDS_FILE), records)
    todo = [image for image in images if image.key not in records]
    tqdm.write(f"{len(images) - len(todo)} of {len(images)} images from {output / RECORDS_FILE}; sampling {len(todo)}")

    progress = tqdm(total=len(todo), desc="sampling both stages", unit="image")
    for batch, outputs, lows, low_labels in sample_cascade(pipe, todo, data, nodule_label, args):
        bicubic = bicubic_hu(lows, resolution, hu_window)
        for i, image in enumerate(batch):
            record = {
                "key": image.key,
                "kind": image.kind,
                "seed": image.seed,
                "mask_digest": image.key.split("|")[2],
                "nodule": None if image.nodule is None else image.nodule.record(),
                "figures": image_figures(
                    image, outputs[i], lows[i], low_labels[i], bicubic[i], data, reals_hu, nodule_label, margin
                ),
            }
            if image.key in pick_keys:
                record["grid"] = {"stage_1": png_text(window_hu(lows[i], hu_window)),
                                  "output": png_text(window_hu(outputs[i], hu_window))}  # fmt: skip
            records[image.key] = record
        write_records(output / RECORDS_FILE, records)
        progress.update(len(batch))
    progress.close()

    real_config, real_splits, real_nodules = real_nodule_contrasts(args, num_classes, resolution, hu_window)

    def origin(index: int) -> dict:
        return {
            **{key: data[key][index] for key in ("row", "config", "seriesuid", "slice_index")},
            "lung_pixels": int(lung_pixels[index]),
            "mid_chest": mid_chest.get(index, False),  # among the held-out set (what the fidelity rows average)
        }

    synthetic = [{**origin(im.mask_index), **records[im.key], **records[im.key]["figures"]} for im in images]
    fidelity_synthetic = [{"source": "synthetic", **r} for r in synthetic if r["kind"] == "fidelity"]
    fidelity_real = [
        {
            "source": "real",
            **origin(index),
            "seed": "",
            **fidelity.slice_fidelity(reals_hu[index], masks[index], margin),
        }
        for index in held_out.tolist()
    ]
    settings = {
        "pipeline": str(args.pipeline),
        "upscaler": str(args.upscaler),
        "dataset": args.dataset_name,
        "configs": list(args.dataset_config),
        "split": args.split,
        "resolution": resolution,
        "low_res_size": pipe.low_res_size,
        "num_masks": len(held_out),
        "lung_masks": int((lung_pixels[held_out] > 0).sum()),
        "mid_chest_masks": sum(mid_chest.values()),
        **{key: key_settings[key] for key in ("scheduler", "num_inference_steps", "upscaler_steps", "guidance_scale")},
        "noise_level": args.noise_level,
        "upscaler_strength": args.upscaler_strength,
        "seeds": list(args.seeds),
        "air_threshold_hu": fidelity.AIR_THRESHOLD_HU,
        "soft_tissue_margin_px": margin,
        "hu_window": list(hu_window),
        "nodule_masks": len(nodule_masks),
        "nodule_diameters_mm": sorted(args.nodule_diameters_mm),
        "nodule_positions": args.nodule_positions,
        "nodule_seeds": list(args.nodule_seeds),
        "nodule_images": sum(image.kind == "nodule" for image in images),
        "nodule_label": int(nodule_label),
        "ring_mm": RING_MM,
        "sharpness_erosion_px": SHARPNESS_EROSION_PX,
        "real_nodule_config": real_config,
        "real_nodule_splits": real_splits,
        "real_nodules": len(real_nodules),
        "grid_rows": len(picks),
        "settings_key": settings_key,
    }
    fidelity_part = build_fidelity_report(
        summarize_fidelity(fidelity_synthetic), summarize_fidelity(fidelity_real), settings
    )
    summary = summarize_cascade(synthetic, real_nodules, args.nodule_diameters_mm)
    report = build_cascade_report(fidelity_part, summary, settings)
    report["real_nodules"] = real_nodules

    report_text = json.dumps(json_ready(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with output_folder(output, TOOL, overwrite=True) as out:  # the folder this run claimed above
        write_records(out.path(RECORDS_FILE), records)
        write_text_atomically(out.path(FIDELITY_FILE), report_text)
        write_text_atomically(out.path(CSV_FILE), csv_text(fidelity_real + fidelity_synthetic))
        if picks:
            write_figure(out.path(CASCADE_GRID_FILE), picks, records, data, reals_hu, num_classes, settings, args)
    if args.update_card:
        folder = Path(args.upscaler)
        write_text_atomically(folder / FIDELITY_FILE, report_text)
        if picks:
            write_bytes_atomically(folder / CASCADE_GRID_FILE, (output / CASCADE_GRID_FILE).read_bytes())
        else:
            (folder / CASCADE_GRID_FILE).unlink(missing_ok=True)  # a figure from an earlier run would not match
        tqdm.write(f"model card updated: {write_training_card(folder)}")
    return report


def write_figure(path, picks, records, data, reals_hu, num_classes, settings, args) -> None:
    """The figure real slice | mask with the placed nodule | stage 1 | output, marked synthetic, its panels, rows
    and settings in its text chunks."""
    hu_window = tuple(settings["hu_window"])
    nodule_label = settings["nodule_label"]  # the class the run placed (benign or malignant in 7 classes)
    masks = [image_label_map(image, data, nodule_label) for image in picks]
    lows = [unwindow_hu(grey_from_png_text(records[image.key]["grid"]["stage_1"]), hu_window) for image in picks]
    outputs = [unwindow_hu(grey_from_png_text(records[image.key]["grid"]["output"]), hu_window) for image in picks]
    grid = cascade_grid(
        [reals_hu[image.mask_index] for image in picks],
        masks,
        lows,
        outputs,
        hu_window,
        malignancy=label_scheme(num_classes).tells_malignancy,
        scale=args.grid_scale or max(1, 192 // masks[0].shape[0]),
    )
    rows = "; ".join(
        f"{data['seriesuid'][image.mask_index] or 'row ' + str(data['row'][image.mask_index])} slice "
        f"{data['slice_index'][image.mask_index]}: {image.nodule.diameter_mm:g}-mm nodule, seed {image.seed}"
        for image in picks
    )
    save_synthetic_png(grid, path, metadata={"Title": GRID_PANELS, "Rows": rows, "Settings": settings_text(settings)})
