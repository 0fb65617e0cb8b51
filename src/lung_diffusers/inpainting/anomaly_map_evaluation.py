"""Evaluate mask-free anomaly maps (AnoDDPM-style, healthy prior) on held-out patients: pixel AUROC and Dice.

    python training/evaluate_anomaly_maps.py --pipeline pipelines/lung-ddpm-prior-64 \\
        --dataset_name ../train-runs/data/luna16-mini-all --noise_levels 0.1 0.25 0.5 --output anomaly-eval

Each slice is noised to a share of the diffusion chain (``--noise_levels``) and denoised by the healthy prior
(:func:`lung_diffusers.inpainting.anomaly_map`, the slice's own 256-px size); the anomaly score of a pixel is the
thesis' quantile-clipped difference slice - reconstruction (a bright lesion is positive). Three sets of slices:

- **train** (``--train_split``, LIDC-IDRI-0002/0003 in the recipe): healthy slices with one synthetic nodule each
  (:func:`~lung_diffusers.inpainting.place_synthetic_nodule`). Only here is the Dice threshold chosen: the one with
  the best pooled Dice, per noise level.
- **test, synthetic** (``--test_split``, the held-out LIDC-IDRI-0001): its healthy slices with synthetic nodules,
  placed by other random draws. Pixel AUROC, and Dice at the train threshold.
- **test, real**: the held-out patient's reference-nodule slices (``--nodule_config``), the recipe's nodule mask as
  truth, reported slice by slice.

Healthy slices are taken, spread over the split, among those whose lungs have room for twice the largest nodule
(near the apex and base a nodule would fill the lung). A baseline that needs no model is scored the same way: the
slice's own intensity as the anomaly score (nodules are bright). Pixels count inside each of ``--regions``, reported
apart: the lungs (with the nodules), and the body (the air around the patient is trivially normal and is left out).
Why synthetic nodules rather than the SDM's insertion, and what that costs: see
:mod:`lung_diffusers.inpainting.synthetic_nodules`. Writes into ``--output``, all at once when done:

- ``anomaly_evaluation.json`` / ``.md``: per region and noise level, the train threshold, AUROC and Dice of each
  set (and the best Dice the test set itself would allow, an upper bound, not a result), the real slices one by
  one, the settings;
- ``anomaly_per_slice.csv``: one line per region, noise level and slice;
- ``figure-<set>-noise-<level>.png``: the worst and best slices by Dice (input | truth | reconstruction | anomaly
  map | prediction at the train threshold, in the first region), marked synthetic.

Bad input exits with status 2 and a one-line error. The scores are :mod:`lung_diffusers.evaluation.anomaly_scores`,
the report :mod:`.anomaly_map_report`; ``training/evaluate_anomaly_maps.py`` runs :func:`cli`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy import ndimage
from tqdm.auto import tqdm

from ..atomic_write import atomic_directory, write_text_atomically
from ..command_line import run_command
from ..evaluation.report_json import json_ready
from ..scheduler_registry import scheduler_names
from ..synthetic_marker import save_synthetic_png
from . import evaluation_slices
from .anomaly_map_report import (
    BASELINE,
    CSV_FILE,
    REPORT_FILE,
    TABLE_FILE,
    csv_text,
    evaluate_level,
    failure_figure,
    figure_name,
    markdown_table,
    scored_region,
)
from .anomaly_maps import anomaly_map
from .evaluation_slices import check_patients_apart, load_prior_pipeline, with_real_nodules
from .settings import RECIPE_IMAGE_SIZE
from .synthetic_nodules import DEFAULT_DIAMETER_MM, DEFAULT_NODULE_HU


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("model and slices")
    data.add_argument("--pipeline", required=True, help="the healthy prior: a saved DDPMPipeline folder")
    data.add_argument("--dataset_name", required=True, help="recipe output folder or Hub dataset repo id")
    data.add_argument("--healthy_config", default="healthy", help="config of the nodule-free slices")
    data.add_argument("--nodule_config", default="nodule", help="config of the reference-nodule slices")
    data.add_argument("--train_split", default="train", help="split of the patients the threshold is chosen on")
    data.add_argument("--test_split", default="test", help="split of the held-out patients")
    data.add_argument("--cache_dir", help="datasets cache folder")
    data.add_argument(
        "--image_size",
        type=int,
        default=RECIPE_IMAGE_SIZE,
        help=f"side the slices are resized to (default {RECIPE_IMAGE_SIZE}, the recipe's and the prior's scale)",
    )
    data.add_argument(
        "--max_train_slices",
        type=int,
        help="healthy train slices used (default: all with room for the nodule), spread over the split",
    )
    data.add_argument(
        "--max_test_slices",
        type=int,
        help="healthy test slices used (default: all with room for the nodule), spread over the split",
    )
    data.add_argument("--max_nodule_slices", type=int, help="reference-nodule test slices used (default: all)")

    nodules = parser.add_argument_group("synthetic nodules")
    nodules.add_argument(
        "--nodule_diameter_mm", type=float, nargs=2, default=list(DEFAULT_DIAMETER_MM), help="(low, high) in mm"
    )
    nodules.add_argument(
        "--nodule_hu", type=float, nargs=2, default=list(DEFAULT_NODULE_HU), help="(low, high) mean density in HU"
    )

    recon = parser.add_argument_group("reconstruction")
    recon.add_argument(
        "--noise_levels", type=float, nargs="+", default=[0.1, 0.25, 0.5], help="shares of the chain, in (0, 1]"
    )
    recon.add_argument("--num_inference_steps", type=int, default=50, help="steps of the whole chain")
    recon.add_argument(
        "--scheduler", choices=scheduler_names(image_to_image=True), help="swap the pipeline's scheduler (default: keep)"
    )
    recon.add_argument("--num_samples", type=int, default=1, help="reconstructions averaged per slice")
    recon.add_argument("--eta", type=float, default=0.0, help="DDIM noise weight")
    recon.add_argument("--seed", type=int, default=0, help="seeds the nodules and the reconstructions")
    recon.add_argument(
        "--smoothing_px",
        type=float,
        default=0.0,
        help="Gaussian sigma (px) applied to each anomaly map before scoring (default 0: the raw map)",
    )
    recon.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")

    report = parser.add_argument_group("report")
    report.add_argument("--output", required=True, help="folder for the report, the per-slice CSV and the figures")
    report.add_argument(
        "--regions",
        nargs="+",
        choices=("lungs", "body"),
        default=["lungs", "body"],
        help="where pixels are scored, each reported apart: lungs (+ nodule), the body (figures: the first)",
    )
    report.add_argument("--figure_rows", type=int, default=3, help="worst and best slices shown per figure (each)")
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before anything is loaded."""
    for name in ("num_inference_steps", "num_samples", "image_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("max_train_slices", "max_test_slices", "max_nodule_slices", "figure_rows"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name} must be at least 0, got {value}")
    if args.smoothing_px < 0:
        raise ValueError(f"--smoothing_px must be at least 0, got {args.smoothing_px:g}")
    if len(set(args.regions)) != len(args.regions):
        raise ValueError(f"--regions must be distinct, got {args.regions}")
    if args.max_train_slices == 0:
        raise ValueError("--max_train_slices must be at least 1: the Dice threshold is chosen on the train slices")
    levels = args.noise_levels
    if any(not 0 < level <= 1 for level in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"--noise_levels must be distinct shares of the chain in (0, 1], got {levels}")
    for level in levels:
        if int(args.num_inference_steps * level) < 1:
            raise ValueError(
                f"noise level {level:g} is below the first of {args.num_inference_steps} steps; raise "
                "--num_inference_steps"
            )
    for name in ("nodule_diameter_mm", "nodule_hu"):
        low, high = getattr(args, name)
        if low > high or (name == "nodule_diameter_mm" and low <= 0):
            raise ValueError(f"--{name} must be (low, high) with low <= high (diameters > 0), got {low:g} {high:g}")
    if args.train_split == args.test_split:
        raise ValueError(f"--train_split and --test_split must differ, both are {args.train_split!r}")
    folder = Path(args.pipeline)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"no saved pipeline at {folder} (expected {folder / 'model_index.json'})")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise ValueError(f"--output {args.output} exists and is not a folder")



# ---------------------------------------------------------------------------------------------- inputs


def load_rows(args: argparse.Namespace, config: str, split: str, limit: int | None, room_mm: float | None = None):
    """Rows of one config and split at ``--image_size`` (see :func:`~lung_diffusers.inpainting.evaluation_slices.load_rows`)."""
    return evaluation_slices.load_rows(args.dataset_name, config, split, limit, args.image_size, args.cache_dir, room_mm)


def with_synthetic_nodules(rows: list[dict], args: argparse.Namespace, stream: int) -> list[dict]:
    """One synthetic nodule per healthy slice; each slice's draw depends on the seed, the set and its row only."""
    return evaluation_slices.with_synthetic_nodules(rows, args.seed, stream, args.nodule_diameter_mm, args.nodule_hu)



# ---------------------------------------------------------------------------------------------- scoring


def score_maps(pipe, sets: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    """``scores[level][set]``: the anomaly map of every slice, and ``recon[level][set]``: its first reconstruction.

    The baseline (``BASELINE``) scores each pixel by the slice's own intensity and has no reconstruction.
    """
    scores = {BASELINE: {name: [item["image"] for item in items] for name, items in sets.items()}}
    recon = {BASELINE: {name: [None] * len(items) for name, items in sets.items()}}
    total = len(args.noise_levels) * sum(len(items) for items in sets.values())
    progress = tqdm(total=total, desc="anomaly maps", unit="slice")
    for level in args.noise_levels:
        scores[level], recon[level] = {}, {}
        for name, items in sets.items():
            scores[level][name], recon[level][name] = [], []
            for item in items:
                result = anomaly_map(
                    pipe, item["image"], level, args.num_inference_steps, args.num_samples, args.seed, args.eta
                )
                difference = result.difference
                if args.smoothing_px:
                    difference = ndimage.gaussian_filter(difference, args.smoothing_px)
                scores[level][name].append(difference)
                recon[level][name].append(result.reconstructions[0])
                progress.update()
    progress.close()
    return {"scores": scores, "reconstructions": recon}


def start_timestep(pipe, noise_level: float, num_inference_steps: int) -> int:
    """The training timestep a noise level starts from (as :func:`reconstruct_from_noise_level` picks it)."""
    pipe.scheduler.set_timesteps(num_inference_steps)
    kept = min(int(num_inference_steps * noise_level), num_inference_steps)
    return int(pipe.scheduler.timesteps[num_inference_steps - kept])



# ---------------------------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> dict:
    """Build the three sets, map, score and write the report; returns it."""
    # Room for twice the largest nodule, so that lung surrounds it (near the apex a nodule could fill the lung).
    room = 2 * args.nodule_diameter_mm[1]
    train_rows = load_rows(args, args.healthy_config, args.train_split, args.max_train_slices, room)
    test_rows = load_rows(args, args.healthy_config, args.test_split, args.max_test_slices, room)
    real_rows = (
        []
        if args.max_nodule_slices == 0
        else load_rows(args, args.nodule_config, args.test_split, args.max_nodule_slices)
    )
    check_patients_apart(train_rows, test_rows + real_rows)
    sets = {
        "train": with_synthetic_nodules(train_rows, args, stream=0),
        "test-synthetic": with_synthetic_nodules(test_rows, args, stream=1),
        "test-real": with_real_nodules(real_rows),
    }
    pipe = load_prior_pipeline(args.pipeline, args.scheduler, args.device)
    maps = score_maps(pipe, sets, args)
    keys = [BASELINE, *args.noise_levels]
    results = {
        region: {key: evaluate_level(maps["scores"][key], sets, region) for key in keys} for region in args.regions
    }

    records = []
    for region, levels in results.items():
        for key, level in levels.items():
            for name, per_slice in level["slices"].items():
                for item, stats in zip(sets[name], per_slice):
                    records.append(
                        {
                            "region": region,
                            "set": name,
                            "noise_level": key,
                            **{k: item.get(k, "") for k in ("patient_id", "slice_index", "row", "synthetic_input")},
                            "diameter_mm": item.get("diameter_mm", ""),
                            "nodule_hu": item.get("nodule_hu", ""),
                            **stats,
                        }
                    )
    start_timesteps = {level: start_timestep(pipe, level, args.num_inference_steps) for level in args.noise_levels}
    patients = {name: sorted({item["patient_id"] for item in items}) for name, items in sets.items()}
    settings = {
        "pipeline": str(args.pipeline),
        "dataset": args.dataset_name,
        "healthy_config": args.healthy_config,
        "nodule_config": args.nodule_config,
        "train_split": args.train_split,
        "test_split": args.test_split,
        "patients": patients,
        "slices": {
            name: [[item["patient_id"], item["slice_index"]] for item in items] for name, items in sets.items()
        },
        "image_size": args.image_size,
        "regions": list(args.regions),
        "noise_levels": list(args.noise_levels),
        "scheduler": type(pipe.scheduler).__name__,
        "num_inference_steps": args.num_inference_steps,
        "num_samples": args.num_samples,
        "eta": args.eta,
        "smoothing_px": args.smoothing_px,
        "seed": args.seed,
        "nodule_diameter_mm": list(args.nodule_diameter_mm),
        "nodule_hu": list(args.nodule_hu),
    }
    counts = {name: len(items) for name, items in sets.items()}
    description = (
        f"Healthy prior `{args.pipeline}`, {settings['scheduler']} with {args.num_inference_steps} steps over the "
        f"whole chain, {args.num_samples} reconstruction(s) per slice"
        + (f", maps smoothed (Gaussian, {args.smoothing_px:g} px)" if args.smoothing_px else "")
        + f", {args.image_size}-px slices. Threshold: best pooled Dice on {counts['train']} train slices (patients "
        f"{', '.join(patients['train'])}) with one synthetic nodule each. Test: {counts['test-synthetic']} healthy "
        f"slices of {', '.join(patients['test-synthetic']) or '-'} with one synthetic nodule each "
        f"({args.nodule_diameter_mm[0]:g}-{args.nodule_diameter_mm[1]:g} mm, {args.nodule_hu[0]:g} to "
        f"{args.nodule_hu[1]:g} HU), and {counts['test-real']} real reference-nodule slices of "
        f"{', '.join(patients['test-real']) or '-'}. AUROC and Dice are pooled over the slices of a set. The last "
        "column uses the test set's own best threshold: an upper bound, not a result."
    )
    report = {
        "description": description,
        "regions": {
            region: {
                "levels": {
                    str(key): {
                        "threshold": v["threshold"],
                        "start_timestep": start_timesteps.get(key),
                        "sets": v["sets"],
                    }
                    for key, v in levels.items()
                },
                "real_slices": [
                    {
                        "patient_id": item["patient_id"],
                        "slice_index": item["slice_index"],
                        "nodule_pixels": int((item["truth"] & scored_region(item["labels"], region)).sum()),
                        **{str(key): levels[key]["slices"]["test-real"][i] for key in levels},
                    }
                    for i, item in enumerate(sets["test-real"])
                ],
            }
            for region, levels in results.items()
        },
        "settings": settings,
        "synthetic": True,  # the figures show synthetic images
    }
    report = json_ready(report)
    table = markdown_table(report)

    region = args.regions[0]
    with atomic_directory(Path(args.output), overwrite=True) as staging:
        write_text_atomically(staging / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        write_text_atomically(staging / TABLE_FILE, table)
        write_text_atomically(staging / CSV_FILE, csv_text(records))
        for key, level in results[region].items():
            for name in ("test-synthetic", "test-real"):
                if not sets[name] or not args.figure_rows:
                    continue
                figure = failure_figure(
                    sets[name],
                    maps["scores"][key][name],
                    maps["reconstructions"][key][name],
                    level["slices"][name],
                    level["threshold"],
                    key,
                    region,
                    args.figure_rows,
                )
                save_synthetic_png(
                    figure,
                    staging / figure_name(name, key),
                    metadata={
                        "Title": "worst and best slices: input | truth | reconstruction | anomaly map | prediction",
                        "real_input": "no (synthetic nodules)" if name == "test-synthetic" else "yes",
                        "region": region,
                        "threshold": f"{level['threshold']:.6g} (chosen on the train patients)",
                    },
                )
    tqdm.write(table)
    return report


def cli(argv: list[str] | None = None) -> int:
    def work() -> None:
        main(parse_args(argv))

    return run_command(work, ())
