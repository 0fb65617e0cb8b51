"""Measure a trained LungSDMPipeline on held-out masks: lung Dice and median HU, beside the real slices.

    python training/evaluate_fidelity.py --pipeline ../train-runs/sdm-64/pipeline \\
        --dataset_name ../train-runs/data/luna16-mini-all --output fidelity-sdm-64 --update_card

Every mask of the split (the held-out patients) is resized as in training and sampled once per seed (by
default DPM-Solver++ with 25 steps, the pipeline's default guidance, seeds 0-3, HU output). Each synthetic
slice, and the real slice of the same mask, gets a lung Dice and the median HU of lungs, soft tissue and
background; the rules, the soft-tissue margin and the averaging are those of
:mod:`lung_diffusers.evaluation.fidelity` (the report: :mod:`lung_diffusers.evaluation.fidelity_report`). Writes to ``--output``:

- ``fidelity.json``: the figures as the model card shows them (``description``, ``rows``, ``verdict``),
  which targets are met, the raw means and the settings;
- ``fidelity_per_image.csv``: one line per real and per synthetic slice;
- ``fidelity_grid.png``: rows of real slice | mask | synthetic (first seed) for mid-chest masks, marked
  synthetic.

``--output`` must be new or empty, or hold an earlier evaluation's outputs and ``--overwrite``: then exactly the
files of that run's manifest are replaced (:mod:`lung_diffusers.output_folder`). ``--update_card`` also puts
``fidelity.json`` and the grid in the pipeline folder and re-renders its model card from ``training.json`` and
``fidelity.json`` there. Bad input exits with status 2 and a one-line error. ``training/evaluate_fidelity.py``
runs :func:`cli`.

``--upscaler FOLDER`` evaluates the cascade (this SDM, then that super-resolution stage) at the upscaler's size
instead, with placed nodules' contrast, sharpness and agreement with stage 1 besides, and resumes an interrupted
run (rerun with ``--overwrite``): :mod:`lung_diffusers.training.cascade_evaluation`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import LungSDMPipeline, LungSDMUpscalePipeline, save_synthetic_png
from ..atomic_write import write_bytes_atomically, write_text_atomically
from ..ct import MALIGNANCY_LABEL_NAMES
from ..data.slice_dataset import check_slice_dataset, load_slice_dataset, num_classes_for_configs
from ..evaluation import fidelity
from ..evaluation.fidelity_report import (
    CSV_FILE,
    GRID_FILE,
    build_fidelity_report,
    csv_text,
    fidelity_grid,
    grid_picks,
    summarize_fidelity,
)
from ..evaluation.report_json import json_ready
from ..output_folder import check_output_folder, output_folder
from ..pipelines import load_pipeline as load_sdm_pipeline
from ..pipelines.pipeline_lung_sdm_upscale import DEFAULT_NOISE_LEVEL, DEFAULT_STRENGTH
from ..scheduler_registry import EVALUATION_SCHEDULER, EVALUATION_STEPS, get_entry, scheduler_names
from . import cascade_evaluation
from .cascade_evaluation import MAX_UPSCALER_STEPS, RECORDS_FILE
from .model_card import FIDELITY_FILE, TRAINING_FILE, fidelity_markdown, write_training_card
from .script_cli import run_script
from .slice_data import SliceTrainingData

SCHEDULERS = scheduler_names()  # the registry's SDM samplers
TOOL = "evaluate_fidelity"  # in the output folder's manifest
DEFAULT_GUIDANCE = inspect.signature(LungSDMPipeline.__call__).parameters["guidance_scale"].default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("model and masks")
    data.add_argument("--pipeline", required=True, help="a saved LungSDMPipeline folder (e.g. <output_dir>/pipeline)")
    data.add_argument("--dataset_name", required=True, help="recipe output folder or Hub dataset repo id")
    data.add_argument(
        "--dataset_config",
        nargs="+",
        help="config(s), concatenated (default: healthy nodule; healthy malignancy for 7-class models)",
    )
    data.add_argument("--split", default="test", help="split whose masks are evaluated (the held-out patients)")
    data.add_argument("--cache_dir", help="datasets cache folder")
    data.add_argument("--resolution", type=int, help="side the slices are resized to (default: U-Net sample_size)")
    data.add_argument("--max_masks", type=int, help="evaluate this many masks, spread over the split (default: all)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="one synthetic slice per mask and seed"
    )
    sampling.add_argument(
        "--scheduler", choices=SCHEDULERS, default=EVALUATION_SCHEDULER, help=f"sampler (default {EVALUATION_SCHEDULER})"
    )
    sampling.add_argument(
        "--num_inference_steps", type=int, default=EVALUATION_STEPS, help=f"sampling steps (default {EVALUATION_STEPS})"
    )
    sampling.add_argument(
        "--guidance_scale",
        type=float,
        default=DEFAULT_GUIDANCE,
        help=f"classifier-free guidance (default: the pipeline's, {DEFAULT_GUIDANCE:g})",
    )
    sampling.add_argument("--batch_size", type=int, default=16, help="masks sampled together")
    sampling.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")

    report = parser.add_argument_group("report")
    report.add_argument("--output", required=True, help="folder for fidelity.json, the per-image CSV and the grid")
    report.add_argument(
        "--overwrite", action="store_true", help="replace an earlier evaluation's outputs in --output (only those files)"
    )
    report.add_argument("--grid_rows", type=int, default=4, help="mid-chest masks shown in the grid")
    report.add_argument("--grid_scale", type=int, help="nearest-neighbour upscaling of the grid (default: x3 at 64 px)")
    report.add_argument(
        "--update_card",
        action="store_true",
        help="also put fidelity.json and the grid in the pipeline folder (with --upscaler: the upscaler's folder) "
        "and re-render its model card",
    )

    cascade = parser.add_argument_group(
        "cascade (--upscaler): both stages at the upscaler's size, placed nodules, sharpness, agreement; resumable"
    )
    cascade.add_argument(
        "--upscaler", help="a saved LungSDMUpscalePipeline folder: evaluate --pipeline then it, at its size"
    )
    cascade.add_argument(
        "--upscaler_steps", type=int, default=MAX_UPSCALER_STEPS,
        help=f"stage 2's sampling steps (default and most: {MAX_UPSCALER_STEPS})",
    )  # fmt: skip
    cascade.add_argument(
        "--noise_level", type=int, default=DEFAULT_NOISE_LEVEL,
        help=f"stage 2's augmentation level of the stage-1 image (default {DEFAULT_NOISE_LEVEL})",
    )  # fmt: skip
    cascade.add_argument(
        "--upscaler_strength", type=float, default=DEFAULT_STRENGTH,
        help=f"stage 2's share of its steps, from the stage-1 image noised part-way (default {DEFAULT_STRENGTH}; 1: pure noise)",
    )  # fmt: skip
    cascade.add_argument("--nodule_masks", type=int, default=8, help="nodule-free mid-chest masks that get nodules")
    cascade.add_argument(
        "--nodule_diameters_mm", type=float, nargs="+", default=[4.0, 6.0, 10.0, 20.0], help="placed nodules' diameters"
    )
    cascade.add_argument("--nodule_positions", type=int, default=3, help="positions per diameter and mask")
    cascade.add_argument(
        "--nodule_seeds", type=int, nargs="+", default=[0, 1], help="one image per placed nodule and seed"
    )
    cascade.add_argument(
        "--nodule_malignancy",
        choices=("benign", "malignant"),
        default="malignant",
        help="7-class (malignancy) pipelines: the class of the placed nodules (default malignant)",
    )
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before anything is loaded."""
    for name in ("num_inference_steps", "batch_size", "grid_rows", "resolution", "max_masks", "grid_scale",
                 "upscaler_steps", "nodule_masks", "nodule_positions"):  # fmt: skip
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1, got {value}")
    for name in ("seeds", "nodule_seeds", "nodule_diameters_mm"):
        values = getattr(args, name)
        if len(set(values)) != len(values):
            raise ValueError(f"--{name} must be distinct, got {values}")
    _check_pipeline_folder(args.pipeline, "--pipeline", LungSDMPipeline.__name__, "a mask-conditioned model")
    card_folder = Path(args.pipeline)
    if args.upscaler is not None:
        if args.upscaler_steps > MAX_UPSCALER_STEPS:
            raise ValueError(
                f"--upscaler_steps must be at most {MAX_UPSCALER_STEPS} (the evaluation's setting), got {args.upscaler_steps}"
            )
        if args.noise_level < 0:
            raise ValueError(f"--noise_level must be 0 or more, got {args.noise_level}")
        if not 0 < args.upscaler_strength <= 1:
            raise ValueError(f"--upscaler_strength must be in (0, 1] (1: stage 2 from pure noise), got {args.upscaler_strength}")
        if not all(math.isfinite(d) and d > 0 for d in args.nodule_diameters_mm):
            raise ValueError(f"--nodule_diameters_mm must be positive, got {args.nodule_diameters_mm}")
        _check_pipeline_folder(args.upscaler, "--upscaler", LungSDMUpscalePipeline.__name__, "a super-resolution stage")
        card_folder = Path(args.upscaler)
    if args.update_card and not (card_folder / TRAINING_FILE).is_file():
        raise FileNotFoundError(
            f"--update_card needs {card_folder / TRAINING_FILE} (the run's facts, from train_sdm.py)"
        )
    check_output_folder(args.output, TOOL, args.overwrite)


def _check_pipeline_folder(folder: str, flag: str, class_name: str, what: str) -> None:
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"no saved pipeline at {folder} (expected {folder / 'model_index.json'})")
    pipeline_class = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    if pipeline_class != class_name:
        raise ValueError(f"{flag} {folder} holds a {pipeline_class}, not a {class_name} ({what})")


# ---------------------------------------------------------------------------------------------- inputs


def load_pipeline(args: argparse.Namespace) -> LungSDMPipeline:
    """The pipeline on ``args.device`` with the chosen scheduler, its progress bar off (ours counts images)."""
    return load_sdm_pipeline(args.pipeline, args.scheduler, args.device, LungSDMPipeline)


def check_model(pipe: LungSDMPipeline, args: argparse.Namespace) -> int:
    """Fill in the default configs; returns the resolution. Refuses configs or sizes the model cannot take."""
    unet = pipe.unet
    fill_dataset_configs(args, unet.config.num_classes)
    resolution = args.resolution or unet.config.sample_size
    if resolution % unet.downsample_factor:
        raise ValueError(
            f"masks of {resolution} px cannot be sampled: their side must be a multiple of {unet.downsample_factor} "
            "(the U-Net's downsampling); pass another --resolution"
        )
    return resolution


def fill_dataset_configs(args: argparse.Namespace, num_classes: int) -> None:
    """The default configs for a model of ``num_classes``; refuses configs of another number of classes."""
    if args.dataset_config is None:
        seven = num_classes == len(MALIGNANCY_LABEL_NAMES)
        args.dataset_config = ["healthy", "malignancy" if seven else "nodule"]
    if num_classes_for_configs(args.dataset_config) != num_classes:
        raise ValueError(
            f"the pipeline's U-Net has {num_classes} classes but dataset config(s) {args.dataset_config} have "
            f"{num_classes_for_configs(args.dataset_config)}"
        )


def spread_rows(count: int, max_masks: int | None) -> np.ndarray:
    """``max_masks`` row indices spread evenly over ``count`` rows (all of them when ``max_masks`` is None)."""
    rows = np.arange(count)
    if max_masks is not None and max_masks < count:
        rows = rows[np.linspace(0, count - 1, max_masks).round().astype(int)]
    return rows


def load_masks(args: argparse.Namespace, num_classes: int, resolution: int, every_mask: bool = False) -> dict:
    """Masks and real slices of the split (``--max_masks`` of them, or all with ``every_mask``), resized as in
    training, with where each comes from.

    Returns:
        ``masks`` (N, H, W) uint8, ``images`` (N, H, W) float32 in [-1, 1], ``pixel_mm`` (N, 2) the pixel spacing
        at ``resolution`` (NaN without a ``spacing`` column), and per-mask lists ``row`` (in the concatenated
        split), ``config``, ``seriesuid`` and ``slice_index``.
    """
    from lung_diffusers.sources import local_or_hub

    with local_or_hub(args.dataset_name, "--dataset_name"):
        # Loaded one config at a time, so that each mask's config is known.
        parts = [load_slice_dataset(args.dataset_name, [c], args.split, args.cache_dir) for c in args.dataset_config]
    for config, part in zip(args.dataset_config, parts):
        check_slice_dataset(part, num_classes, f"{args.split} split of {config!r}")
    configs = [config for config, part in zip(args.dataset_config, parts) for _ in range(len(part))]
    dataset = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    rows = spread_rows(len(dataset), None if every_mask else args.max_masks)
    data = SliceTrainingData(dataset, resolution)
    items = [data[(int(row), 0)] for row in tqdm(rows, desc="loading masks", unit="mask", leave=False)]
    origin = dataset.select(rows.tolist())
    blank = [""] * len(rows)
    pixel_mm = np.full((len(rows), 2), np.nan)
    if "spacing" in origin.column_names:
        for i, row in enumerate(origin.select_columns(["mask", "spacing"])):
            if (row["spacing"] or {}).get("pixel_mm"):  # the recipe's spacing is of the stored pixels
                pixel_mm[i] = np.asarray(row["spacing"]["pixel_mm"], np.float64) * row["mask"].size[0] / resolution
    return {
        "masks": np.stack([item["mask"].numpy().astype(np.uint8) for item in items]),
        "images": np.stack([item["image"][0].numpy() for item in items]),
        "pixel_mm": pixel_mm,
        "row": rows.tolist(),
        "config": [configs[row] for row in rows],
        "seriesuid": origin["seriesuid"] if "seriesuid" in origin.column_names else blank,
        "slice_index": origin["slice_index"] if "slice_index" in origin.column_names else blank,
    }


# ---------------------------------------------------------------------------------------------- sampling


def sample_images(
    pipe: LungSDMPipeline, masks: np.ndarray, args: argparse.Namespace
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(seed, mask index, HU image)`` for every seed and mask.

    Each image has its own generator seeded with its seed, so it does not depend on the batch size or on which
    masks share its batch.
    """
    progress = tqdm(total=len(masks) * len(args.seeds), desc="sampling", unit="image")
    for seed in args.seeds:
        for start in range(0, len(masks), args.batch_size):
            batch = masks[start : start + args.batch_size]
            hu = pipe(
                batch,
                num_inference_steps=args.num_inference_steps,
                guidance_scale=args.guidance_scale,
                generator=[torch.Generator().manual_seed(seed) for _ in batch],
                output_type="hu",
            ).images
            for offset, image in enumerate(hu):
                yield seed, start + offset, image
            progress.update(len(batch))
    progress.close()


# ---------------------------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> dict:
    """Evaluate and write the report, the per-image CSV and the grid; returns the report."""
    if args.upscaler is not None:
        report = cascade_evaluation.main(args)
        tqdm.write(fidelity_markdown(report))
        return report
    pipe = load_pipeline(args)
    resolution = check_model(pipe, args)
    num_classes = pipe.unet.config.num_classes
    hu_window = tuple(pipe.config.hu_window)
    margin = fidelity.soft_tissue_margin_px(resolution)

    data = load_masks(args, num_classes, resolution)
    masks = data["masks"]
    lung_pixels = np.array([int(fidelity.lung_mask(mask).sum()) for mask in masks])
    mid_chest = fidelity.mid_chest(lung_pixels)
    reals_hu = fidelity.hu_from_model_range(data["images"], hu_window)

    def record(source: str, index: int, seed: int | str, hu: np.ndarray) -> dict:
        origin = {key: data[key][index] for key in ("row", "config", "seriesuid", "slice_index")}
        return {
            "source": source,
            **origin,
            "seed": seed,
            "lung_pixels": int(lung_pixels[index]),
            "mid_chest": bool(mid_chest[index]),
            **fidelity.slice_fidelity(hu, masks[index], margin),
        }

    real_records = [record("real", index, "", hu) for index, hu in enumerate(reals_hu)]
    picks = grid_picks(mid_chest, lung_pixels, args.grid_rows)
    synthetic_records, grid_samples = [], {}
    for seed, index, hu in sample_images(pipe, masks, args):
        synthetic_records.append(record("synthetic", index, seed, hu))
        if seed == args.seeds[0] and index in picks:
            grid_samples[index] = hu

    settings = {
        "pipeline": str(args.pipeline),
        "dataset": args.dataset_name,
        "configs": list(args.dataset_config),
        "split": args.split,
        "resolution": resolution,
        "num_masks": len(masks),
        "lung_masks": int((lung_pixels > 0).sum()),
        "mid_chest_masks": int(mid_chest.sum()),
        "scheduler": get_entry(args.scheduler).display_name,
        "num_inference_steps": args.num_inference_steps,
        "guidance_scale": args.guidance_scale,
        "seeds": list(args.seeds),
        "air_threshold_hu": fidelity.AIR_THRESHOLD_HU,
        "soft_tissue_margin_px": margin,
        "hu_window": list(hu_window),
        "grid_rows": len(picks),
    }
    report = build_fidelity_report(summarize_fidelity(synthetic_records), summarize_fidelity(real_records), settings)

    output = Path(args.output)
    report_text = json.dumps(json_ready(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with output_folder(output, TOOL, args.overwrite) as out:
        write_text_atomically(out.path(FIDELITY_FILE), report_text)
        write_text_atomically(out.path(CSV_FILE), csv_text(real_records + synthetic_records))
        if len(picks):
            grid = fidelity_grid(
                [reals_hu[i] for i in picks],
                [masks[i] for i in picks],
                [grid_samples[i] for i in picks],
                hu_window,
                malignancy=num_classes == len(MALIGNANCY_LABEL_NAMES),
                scale=args.grid_scale or max(1, 192 // resolution),
            )
            save_synthetic_png(grid, out.path(GRID_FILE), metadata={"Title": "real slice | mask | synthetic"})
    if args.update_card:
        folder = Path(args.pipeline)
        write_text_atomically(folder / FIDELITY_FILE, report_text)
        if len(picks):
            write_bytes_atomically(folder / GRID_FILE, (output / GRID_FILE).read_bytes())
        else:
            (folder / GRID_FILE).unlink(missing_ok=True)  # a grid from an earlier run would not match
        tqdm.write(f"model card updated: {write_training_card(folder)}")
    tqdm.write(fidelity_markdown(report))
    return report


def cli(argv: list[str] | None = None) -> int:
    return run_script(
        lambda: main(parse_args(argv)),
        interrupted="interrupted: with --upscaler, run the same command with --overwrite to continue (finished images "
        f"are kept in --output's {RECORDS_FILE})",
    )
