"""Prior-aware nodule segmentation (the thesis' module 3): train a small MONAI U-Net on slice + prior, and the same
U-Net on the slice alone, then compare them on held-out patients with bootstrap confidence intervals.

    accelerate launch training/train_prior_segmentation.py --dataset ../luna16-slices \\
        --prior_pipeline pipelines/lung-ddpm-prior-64 --output_dir prior-segmentation

The prior is module 2's mask-free anomaly map (:func:`lung_diffusers.inpainting.anomaly_map`: the slice noised to
``--noise_level`` of the chain and denoised by the healthy prior; ``slice - reconstruction``), so neither network
needs a nodule mask at test time. Slices (``--dataset``: the recipe's output folder or Hub dataset, e.g. the full
LUNA16 run):

- **train** (``--train_split``): the real nodule slices, plus healthy slices with synthetic nodules painted in
  (``--synthetic_per_slice`` draws each, :func:`~lung_diffusers.inpainting.place_synthetic_nodule`) for volume;
- **test** (``--test_split``, other patients): healthy slices with synthetic nodules (other draws), and the real
  nodule slices, reported apart.

Both U-Nets (:mod:`lung_diffusers.segmentation.prior_net`) start from the same weights and see the same batches:
``--crop_size`` crops, ``--positive_fraction`` of them centred on a nodule pixel, with random flips and quarter
turns (MONAI transforms); Dice + cross-entropy loss. They predict whole slices. Per test image: Dice and IoU of
``probability >= --threshold``; over images: the mean with a percentile bootstrap interval, and the paired
difference (with prior - image only). Writes into ``--output_dir``:

- ``<variant>/checkpoint-<step>/`` (accelerate state, rotated), ``<variant>/model/`` (``model.safetensors`` +
  ``config.json``), ``<variant>/loss.csv``;
- ``priors/``: the anomaly maps, cached (a rerun reuses them);
- ``segmentation_evaluation.json`` / ``.md``, ``segmentation_per_image.csv``, ``figure-<set>.png`` (input | prior
  | truth | each U-Net's prediction, marked synthetic) and ``training_loss.png``.

An interrupted run resumes where it stopped (``--resume_from_checkpoint latest``, the default): cached priors are
loaded, a finished U-Net is not retrained. Bad input exits with status 2 and a one-line error. The comparison is
:mod:`lung_diffusers.segmentation.unet_comparison`; ``training/train_prior_segmentation.py`` runs :func:`cli`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from ..atomic_write import atomic_directory, write_text_atomically
from ..evaluation.report_json import json_ready
from ..inpainting.evaluation_slices import (
    check_patients_apart,
    load_prior_pipeline,
    load_rows,
    with_real_nodules,
    with_synthetic_nodules,
)
from ..inpainting.settings import RECIPE_IMAGE_SIZE
from ..inpainting.synthetic_nodules import DEFAULT_DIAMETER_MM, DEFAULT_NODULE_HU
from ..segmentation.prior_net import (
    DEFAULT_DROPOUT,
    DEFAULT_FEATURES,
    IMAGE_ONLY,
    SIDE_MULTIPLE,
    VARIANTS,
    build_segmentation_unet,
    load_segmentation_unet,
    network_input,
    save_segmentation_unet,
)
from ..segmentation.priors import anomaly_priors
from ..segmentation.unet_comparison import TEST_SETS, compare_unets, comparison_figure, loss_figure, markdown_table
from ..synthetic_marker import save_synthetic_png
from .checkpoints import checkpoint_state, resolve_checkpoint, save_checkpoint
from .script_cli import run_script

logger = get_logger(__name__, log_level="INFO")

REPORT_FILE, TABLE_FILE, CSV_FILE = "segmentation_evaluation.json", "segmentation_evaluation.md", "segmentation_per_image.csv"
LOSS_FILE, LOSS_FIGURE, MODEL_FOLDER, PRIOR_FOLDER = "loss.csv", "training_loss.png", "model", "priors"
# With the demo prior, 0.1 and 0.25 gave chance-level maps and 0.5 the only informative ones (README, module 2).
PRIOR_NOISE_LEVEL = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("slices")
    data.add_argument(
        "--dataset", "--dataset_name", dest="dataset", required=True, help="recipe output folder or Hub dataset id"
    )
    data.add_argument("--healthy_config", default="healthy", help="config of the nodule-free slices")
    data.add_argument("--nodule_config", default="nodule", help="config of the reference-nodule slices")
    data.add_argument("--train_split", default="train", help="split the U-Nets learn from")
    data.add_argument("--test_split", default="test", help="split of the held-out patients")
    data.add_argument("--cache_dir", help="datasets cache folder")
    data.add_argument("--image_size", type=int, default=RECIPE_IMAGE_SIZE, help="side slices are resized to")
    data.add_argument("--max_nodule_train_slices", type=int, help="real nodule train slices (default: all)")
    data.add_argument("--max_nodule_test_slices", type=int, help="real nodule test slices (default: all)")
    data.add_argument(
        "--max_healthy_train_slices", type=int, default=24, help="healthy train slices given synthetic nodules"
    )
    data.add_argument(
        "--max_healthy_test_slices", type=int, default=24, help="healthy test slices given synthetic nodules"
    )
    data.add_argument(
        "--synthetic_per_slice", type=int, default=2, help="synthetic nodules drawn per healthy train slice"
    )
    data.add_argument(
        "--nodule_diameter_mm", type=float, nargs=2, default=list(DEFAULT_DIAMETER_MM), help="(low, high) in mm"
    )
    data.add_argument(
        "--nodule_hu", type=float, nargs=2, default=list(DEFAULT_NODULE_HU), help="(low, high) mean density in HU"
    )

    prior = parser.add_argument_group("prior (mask-free anomaly map)")
    prior.add_argument("--prior_pipeline", required=True, help="the healthy prior: a saved DDPMPipeline folder")
    prior.add_argument(
        "--noise_level",
        type=float,
        default=PRIOR_NOISE_LEVEL,
        help=f"share of the chain (default {PRIOR_NOISE_LEVEL}: the best of evaluate_anomaly_maps.py's levels)",
    )
    prior.add_argument("--prior_steps", type=int, default=25, help="inference steps of the whole chain")
    prior.add_argument("--prior_scheduler", choices=("ddpm", "ddim"), default="ddim", help="the prior's scheduler")
    prior.add_argument("--prior_cache", help=f"folder of cached maps (default: <output_dir>/{PRIOR_FOLDER})")
    prior.add_argument("--device", help="torch device for the prior (default: cuda when available, else cpu)")

    train = parser.add_argument_group("training")
    train.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="U-Nets to train")
    train.add_argument("--features", type=int, nargs=6, default=list(DEFAULT_FEATURES), help="BasicUNet channels")
    train.add_argument("--dropout", type=float, default=DEFAULT_DROPOUT)
    train.add_argument("--crop_size", type=int, default=96, help="training crop side (a multiple of 16)")
    train.add_argument("--positive_fraction", type=float, default=0.5, help="share of crops centred on a nodule")
    train.add_argument("--train_batch_size", type=int, default=16)
    train.add_argument("--max_train_steps", type=int, default=1500)
    train.add_argument("--learning_rate", type=float, default=1e-3)
    train.add_argument("--lr_scheduler", default="cosine", help="diffusers' get_scheduler name")
    train.add_argument("--lr_warmup_steps", type=int, default=50)
    train.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    train.add_argument("--checkpointing_steps", type=int, default=250)
    train.add_argument("--checkpoints_total_limit", type=int, default=2)
    train.add_argument(
        "--resume_from_checkpoint", default="latest", help='"latest", a checkpoint folder, or "none" to start afresh'
    )
    train.add_argument("--seed", type=int, default=0, help="seeds the nodules, the priors, the weights and batches")

    report = parser.add_argument_group("evaluation")
    report.add_argument("--threshold", type=float, default=0.5, help="probability called nodule")
    report.add_argument("--bootstrap_resamples", type=int, default=10_000)
    report.add_argument("--confidence", type=float, default=0.95)
    report.add_argument("--figure_rows", type=int, default=4, help="test slices shown per figure")
    report.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before anything is loaded."""
    for name in ("image_size", "train_batch_size", "max_train_steps", "prior_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in (
        "max_nodule_train_slices", "max_nodule_test_slices", "max_healthy_train_slices", "max_healthy_test_slices",
        "synthetic_per_slice", "figure_rows", "lr_warmup_steps", "bootstrap_resamples",
    ):  # fmt: skip
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name} must be at least 0, got {value}")
    # Four poolings: a 16-px crop reaches 1x1, where batch normalisation has nothing to normalise.
    if args.crop_size < 2 * SIDE_MULTIPLE or args.crop_size % SIDE_MULTIPLE or args.crop_size > args.image_size:
        raise ValueError(
            f"--crop_size must be a multiple of {SIDE_MULTIPLE}, at least {2 * SIDE_MULTIPLE} and at most "
            f"--image_size {args.image_size}, got {args.crop_size}"
        )
    if not 0 < args.noise_level <= 1 or int(args.prior_steps * args.noise_level) < 1:
        raise ValueError(
            f"--noise_level must be in (0, 1] and reach the first of --prior_steps {args.prior_steps}, "
            f"got {args.noise_level:g}"
        )
    for name in ("positive_fraction", "threshold"):
        if not 0 <= getattr(args, name) <= 1:
            raise ValueError(f"--{name} must be in [0, 1], got {getattr(args, name):g}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {args.confidence:g}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError(f"--checkpoints_total_limit must be at least 1, got {args.checkpoints_total_limit}")
    if len(set(args.variants)) != len(args.variants):
        raise ValueError(f"--variants must be distinct, got {args.variants}")
    for name in ("nodule_diameter_mm", "nodule_hu"):
        low, high = getattr(args, name)
        if low > high or (name == "nodule_diameter_mm" and low <= 0):
            raise ValueError(f"--{name} must be (low, high) with low <= high (diameters > 0), got {low:g} {high:g}")
    if args.train_split == args.test_split:
        raise ValueError(f"--train_split and --test_split must differ, both are {args.train_split!r}")
    if args.max_nodule_train_slices == 0 and (args.max_healthy_train_slices == 0 or args.synthetic_per_slice == 0):
        raise ValueError("no training slices: keep the real nodule slices or some synthetic ones")
    folder = Path(args.prior_pipeline)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"no saved pipeline at {folder} (expected {folder / 'model_index.json'})")
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise ValueError(f"--output_dir {args.output_dir} exists and is not a folder")


# ---------------------------------------------------------------------------------------------- slices and priors


def build_sets(args: argparse.Namespace) -> dict[str, list[dict]]:
    """``train`` (real nodule slices + synthetic insertions), ``test-synthetic`` and ``test-real``."""

    def rows(config, split, limit, room_mm=None):
        if limit == 0:
            return []
        return load_rows(args.dataset, config, split, limit, args.image_size, args.cache_dir, room_mm)

    # Room for twice the largest nodule, so that lung surrounds it (near the apex a nodule could fill the lung).
    room = 2 * args.nodule_diameter_mm[1]
    nodules = {"diameter_mm": args.nodule_diameter_mm, "hu": args.nodule_hu}
    train_real = with_real_nodules(rows(args.nodule_config, args.train_split, args.max_nodule_train_slices))
    train_synthetic = with_synthetic_nodules(
        rows(args.healthy_config, args.train_split, args.max_healthy_train_slices, room),
        args.seed,
        stream=0,
        per_slice=args.synthetic_per_slice,
        **nodules,
    )
    sets = {
        "train": train_real + train_synthetic,
        "test-synthetic": with_synthetic_nodules(
            rows(args.healthy_config, args.test_split, args.max_healthy_test_slices, room),
            args.seed,
            stream=1,
            **nodules,
        ),
        "test-real": with_real_nodules(rows(args.nodule_config, args.test_split, args.max_nodule_test_slices)),
    }
    if not sets["train"]:
        raise ValueError(f"split {args.train_split!r} gave no training slices")
    if not sets["test-synthetic"] and not sets["test-real"]:
        raise ValueError(f"split {args.test_split!r} gave no test slices")
    empty = [f"{i['patient_id']} slice {i['slice_index']}" for i in sets["train"] + sets["test-real"] if not i["truth"].any()]
    if empty:
        raise ValueError(f"nodule slices without nodule pixels at {args.image_size} px: {', '.join(empty[:5])}")
    check_patients_apart(sets["train"], sets["test-synthetic"] + sets["test-real"])
    return sets


def prior_identity(folder: str) -> str:
    """What names the healthy prior in the cache keys: a hash of its weights (a retrained prior misses the cache)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def add_priors(args: argparse.Namespace, sets: dict[str, list[dict]]) -> None:
    """Every item's ``prior``: its anomaly map (cached in ``--prior_cache``)."""
    pipe = load_prior_pipeline(args.prior_pipeline, args.prior_scheduler, args.device)
    items = [item for name in ("train", *TEST_SETS) for item in sets[name]]
    maps = anomaly_priors(
        pipe,
        [item["image"] for item in items],
        args.noise_level,
        args.prior_steps,
        seed=args.seed,
        cache_dir=args.prior_cache or Path(args.output_dir) / PRIOR_FOLDER,
        model_id=prior_identity(args.prior_pipeline),
    )
    for item, prior in zip(items, maps):
        item["prior"] = prior


# ---------------------------------------------------------------------------------------------- training


def crop_transform(args: argparse.Namespace):
    """MONAI: a crop centred on a nodule pixel (``--positive_fraction`` of the time) or elsewhere, flips, quarter
    turns. Applied to ``{"input": (2, H, W), "label": (1, H, W)}``."""
    from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, RandRotate90d

    keys = ("input", "label")
    positive = args.positive_fraction
    return Compose(
        [
            RandCropByPosNegLabeld(
                keys, "label", (args.crop_size, args.crop_size), pos=positive, neg=1 - positive, num_samples=1
            ),
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandRotate90d(keys, prob=0.5, max_k=3),
        ]
    )


def training_batch(
    items: list[dict], transform, seed: int, step: int, batch_size: int, process_index: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of one step from ``items`` (:func:`network_examples`): inputs ``(B, 2, c, c)``, labels
    ``(B, 1, c, c)``. It depends on the seed and the step only, so both variants see the same crops and a resumed
    run the batches the uninterrupted one would."""
    rng = np.random.default_rng([seed, step, process_index])
    transform.set_random_state(seed=int(rng.integers(2**31)))
    inputs, labels = [], []
    for index in rng.integers(len(items), size=batch_size):
        crop = transform(dict(items[index]))[0]
        inputs.append(torch.as_tensor(np.asarray(crop["input"])))
        labels.append(torch.as_tensor(np.asarray(crop["label"])))
    return torch.stack(inputs).float(), torch.stack(labels).float()


def network_examples(items: list[dict]) -> list[dict]:
    """Each slice as the transform takes it, built once: ``input`` (slice and prior, ``(2, H, W)``) and ``label``."""
    return [
        {
            "input": network_input(item["image"], item["prior"])[0].numpy(),
            "label": item["truth"][None].astype(np.float32),
        }
        for item in items
    ]


def train_variant(args: argparse.Namespace, variant: str, items: list[dict]) -> torch.nn.Module:
    """Train one U-Net (resuming from its checkpoints); returns it, saved in ``<variant>/model``."""
    from monai.losses import DiceCELoss

    folder = Path(args.output_dir) / variant
    config = {"variant": variant, "features": list(args.features), "dropout": args.dropout}
    saved = folder / MODEL_FOLDER
    if (saved / "config.json").is_file():
        model, done = load_segmentation_unet(saved)
        if done.get("trained_steps") == args.max_train_steps and all(done[k] == v for k, v in config.items()):
            logger.info(f"{variant}: trained already ({saved}), not training again")
            return model
    resume = None if args.resume_from_checkpoint == "none" else args.resume_from_checkpoint
    checkpoint = resolve_checkpoint(folder, resume)

    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(folder)),
    )
    set_seed(args.seed)  # the same initial weights for both variants
    model = build_segmentation_unet(variant, tuple(args.features), args.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)  # Dice over the batch: many crops hold no nodule
    transform = crop_transform(args)
    examples = network_examples(items)

    step, losses, started, earlier = 0, [], time.time(), 0.0
    if checkpoint is not None:
        accelerator.print(f"{variant}: resuming from {checkpoint}")
        accelerator.load_state(str(checkpoint))
        state = checkpoint_state(checkpoint)
        step, earlier = state["global_step"], state.get("wall_time_s", 0.0)
        losses = read_losses(folder / LOSS_FILE)[:step]
    elif args.resume_from_checkpoint not in ("none", None):
        accelerator.print(f"{variant}: no checkpoint in {folder}, starting afresh")

    progress = tqdm(
        total=args.max_train_steps, initial=step, desc=f"{variant} U-Net", disable=not accelerator.is_main_process
    )
    model.train()
    while step < args.max_train_steps:
        inputs, labels = training_batch(
            examples, transform, args.seed, step, args.train_batch_size, accelerator.process_index
        )
        if variant == IMAGE_ONLY:
            inputs = inputs[:, :1]
        with accelerator.autocast():
            loss = loss_fn(model(inputs.to(accelerator.device)), labels.to(accelerator.device))
        accelerator.backward(loss)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(float(accelerator.gather(loss.detach()).mean()))
        progress.update()
        progress.set_postfix(loss=f"{losses[-1]:.4f}")
        if step % args.checkpointing_steps == 0 or step == args.max_train_steps:
            save_checkpoint(
                accelerator, folder, step, args.checkpoints_total_limit, wall_time_s=earlier + time.time() - started
            )
            if accelerator.is_main_process:
                write_text_atomically(folder / LOSS_FILE, "step,loss\n" + "".join(f"{i + 1},{v:.6g}\n" for i, v in enumerate(losses)))
    progress.close()
    model = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        save_segmentation_unet(
            model,
            saved,
            {**config, "trained_steps": step, "wall_time_s": round(earlier + time.time() - started, 1), "synthetic_training_data": True},
        )
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    return model.eval()


def read_losses(path: Path) -> list[float]:
    if not path.is_file():
        return []
    with open(path) as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


# ---------------------------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> dict:
    """Slices, priors, both U-Nets, the comparison; returns the report."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    output = Path(args.output_dir)
    sets = build_sets(args)
    output.mkdir(parents=True, exist_ok=True)
    state = PartialState()
    with state.main_process_first():  # the others then load the maps from the cache
        add_priors(args, sets)
    models = {variant: train_variant(args, variant, sets["train"]) for variant in args.variants}
    if not state.is_main_process:
        return {}
    evaluation = compare_unets(
        models, sets, args.threshold, args.confidence, args.bootstrap_resamples, args.seed
    )

    counts = {name: len(items) for name, items in sets.items()}
    real_train = sum(not item["synthetic_input"] for item in sets["train"])
    patients = {name: sorted({item["patient_id"] for item in items}) for name, items in sets.items()}
    description = (
        f"MONAI BasicUNet (features {tuple(args.features)}, dropout {args.dropout:g}) on the slice + prior and on the "
        f"slice alone, {args.max_train_steps} steps of batch {args.train_batch_size} ({args.crop_size}-px crops), "
        f"same initial weights and batches. Prior: the healthy prior's anomaly map, noise level {args.noise_level:g}, "
        f"{args.prior_scheduler.upper()} {args.prior_steps} steps, no nodule mask. Train: {real_train} real nodule "
        f"slices and {counts['train'] - real_train} synthetic insertions (patients {', '.join(patients['train'])}). "
        f"Test: {counts['test-synthetic']} held-out slices with synthetic nodules and {counts['test-real']} real "
        f"nodule slices (patients {', '.join(sorted(set(patients['test-synthetic'] + patients['test-real'])))}). "
        f"Dice and IoU of probability >= {args.threshold:g} per image; mean and {args.confidence:.0%} percentile "
        f"bootstrap interval over images ({args.bootstrap_resamples} resamples); the difference row is paired. "
        "On a few patients these numbers are a demonstration, not a claim."
    )
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
    settings["patients"] = patients
    settings["slices"] = {n: [[i["patient_id"], i["slice_index"], bool(i["synthetic_input"])] for i in items] for n, items in sets.items()}
    report = json_ready({"description": description, "sets": evaluation["sets"], "settings": settings, "synthetic": True})

    records = []
    for name, rows in evaluation["per_image"].items():
        for item, row in zip(sets[name], rows):
            for variant in models:
                records.append(
                    [name, item["patient_id"], item["slice_index"], int(item["synthetic_input"]), variant,
                     int(item["truth"].sum()), row[variant]["called_pixels"], f"{row[variant]['dice']:.6g}",
                     f"{row[variant]['iou']:.6g}"]
                )  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["set", "patient_id", "slice_index", "synthetic_input", "variant", "nodule_pixels", "called_pixels", "dice", "iou"])
    writer.writerows(records)

    table = markdown_table(report)
    with atomic_directory(output, overwrite=True) as staging:
        write_text_atomically(staging / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        write_text_atomically(staging / TABLE_FILE, table)
        write_text_atomically(staging / CSV_FILE, buffer.getvalue())
        for name, rows in evaluation["per_image"].items():
            if args.figure_rows:
                save_synthetic_png(
                    comparison_figure(sets[name], rows, list(models), args.figure_rows),
                    staging / f"figure-{name}.png",
                    metadata={
                        "Title": "input | prior | truth | predictions (green found, red missed, yellow false alarm)",
                        "real_input": "no (synthetic nodules)" if name == "test-synthetic" else "yes",
                    },
                )
        loss_figure({v: read_losses(output / v / LOSS_FILE) for v in models}, staging / LOSS_FIGURE)
    tqdm.write(table)
    return report


def cli(argv: list[str] | None = None) -> int:
    return run_script(
        lambda: main(parse_args(argv)), interrupted="interrupted: run the same command again to resume"
    )
