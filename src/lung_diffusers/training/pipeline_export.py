"""Export a training checkpoint's EMA weights as a hub-ready pipeline folder (how ``pipelines/`` is made).

    python training/export_pipeline.py --run ../train-runs/sdm-64 --output pipelines/lung-sdm-64 \\
        --example_masks ../train-runs/data/luna16-mini-all

Takes the newest (or a given) checkpoint of a run made by ``train_sdm.py`` / ``train_ddpm.py``, builds the
final pipeline from its EMA weights exactly as the end of training does (same scheduler, same model card
with the data, command, steps and wall time; the run's options come from its ``training_args.json``), stores
the weights in float16 by default, and, for mask models, adds example masks from the held-out split
(``example_masks/``, used by ``make demo`` and the Space). So the best checkpoint so far can be shipped while
training goes on, and a later session can resume.

The U-Net's ``pixel_spacing_mm`` is the run's own where its checkpoint records it; for a run started before
training recorded it, ``--pixel_spacing_mm`` sets it, and without the flag it is found from the training rows
by training's rule (:func:`~.sdm_model.training_pixel_spacing_mm`).
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DModel
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from PIL import Image
from safetensors.torch import load_file

from .. import SemanticUNet2DModel
from ..ct import LEFT_LUNG, RIGHT_LUNG, label_scheme
from ..data.slice_dataset import load_slice_dataset
from .checkpoints import checkpoint_state, resolve_checkpoint
from .pipeline_folder import write_pipeline_folder
from .script_cli import run_script
from .sdm_model import record_pixel_spacing, training_pixel_spacing_mm
from .sdm_options import parse_args as parse_training_args
from .slice_data import SliceTrainingData

DESCRIPTION = "Export a training checkpoint's EMA weights as a hub-ready pipeline folder (how ``pipelines/`` is made)."
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def load_model(model_cls, folder: Path) -> torch.nn.Module:
    """A checkpoint's model with a clean config: ``EMAModel.save_pretrained`` adds its own settings (decay, power,
    optimization_step, ...) to ``config.json``, and a shipped folder carrying them would warn on every load."""
    config = model_cls.load_config(folder)
    accepted = set(inspect.signature(model_cls.__init__).parameters) - {"self"}
    model = model_cls.from_config({key: value for key, value in config.items() if key in accepted})
    model.load_state_dict(load_file(folder / SAFETENSORS_WEIGHTS_NAME))
    return model.eval()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--run", type=Path, required=True, help="output folder of the training run")
    parser.add_argument("--checkpoint", default="latest", help="'latest' or a checkpoint folder of the run")
    parser.add_argument("--output", type=Path, required=True, help="pipeline folder to write (replaced if it exists)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="precision of the stored weights")
    parser.add_argument(
        "--example_masks",
        help="recipe dataset to take example masks from (its held-out split); mask models only",
    )
    parser.add_argument("--example_split", default="test", help="split of the example masks")
    parser.add_argument(
        "--pixel_spacing_mm",
        type=float,
        help="in-plane pixel spacing of the model's slices at its sample size, in mm, for a run whose checkpoint "
        "does not record it (default: the median of its training rows, as training now records it); mask models only",
    )
    return parser.parse_args(argv)


def example_masks(dataset_name: str, split: str, resolution: int, folder: Path, num_classes: int = 6) -> list[Path]:
    """A mid-chest healthy mask and the held-out nodule slice with the largest nodule, at the model's size; for a
    7-class model the nodule slice comes from the ``malignancy`` config (its 5 means benign, 6 malignant)."""
    written = []
    facts = {}
    scheme = label_scheme(num_classes)
    nodule_config = "malignancy" if scheme.tells_malignancy else "nodule"
    for config, pick in (("healthy", "most lung"), (nodule_config, "largest nodule")):
        dataset = load_slice_dataset(dataset_name, [config], split)
        data = SliceTrainingData(dataset, resolution)
        masks = [data[(row, 0)]["mask"].numpy() for row in range(len(data))]
        if config == "healthy":
            score = [np.isin(m, (LEFT_LUNG, RIGHT_LUNG)).sum() for m in masks]
        else:
            score = [np.isin(m, scheme.nodule_classes).sum() for m in masks]
        row = int(np.argmax(score))
        record = dataset[row]
        name = "healthy.png" if config == "healthy" else "nodule.png"
        Image.fromarray(masks[row].astype(np.uint8), mode="L").save(folder / name)
        pixel_mm = [float(v) * record["mask"].size[0] / resolution for v in record["spacing"]["pixel_mm"]]
        facts[name] = {
            "source": f"{record['patient_id']} slice {record['slice_index']} ({config} config, {split} split; "
            f"LIDC-IDRI, CC BY 3.0), label map resized to {resolution} px ({pick})",
            "pixel_mm": pixel_mm,
        }
        written.append(folder / name)
    (folder / "examples.json").write_text(json.dumps(facts, indent=2) + "\n")
    return written


def main(args: argparse.Namespace) -> Path:
    if args.pixel_spacing_mm is not None and not args.pixel_spacing_mm > 0:
        raise ValueError(f"--pixel_spacing_mm must be a positive spacing in mm, got {args.pixel_spacing_mm}")
    run_args_path = args.run / "training_args.json"
    if not run_args_path.is_file():
        raise FileNotFoundError(f"{run_args_path} not found: --run must be the output folder of a training run")
    recorded = json.loads(run_args_path.read_text())
    training_args = parse_training_args(recorded_argv(recorded), model=recorded["model"])
    training_args.command = recorded["command"]
    if training_args.model == "ddpm" and args.pixel_spacing_mm is not None:
        raise ValueError("--pixel_spacing_mm applies to sdm and upscaler runs: a ddpm prior's UNet2DModel has no pixel spacing")
    checkpoint = resolve_checkpoint(args.run, args.checkpoint)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {args.run}")
    state = checkpoint_state(checkpoint)
    model_cls = UNet2DModel if training_args.model == "ddpm" else SemanticUNet2DModel
    weights = checkpoint / ("unet" if training_args.no_ema else "unet_ema")
    unet = load_model(model_cls, weights)
    train_dataset = load_slice_dataset(training_args.dataset_name, training_args.dataset_config, training_args.train_split)
    spacing = ""
    if training_args.model != "ddpm":
        record_pixel_spacing(unet, export_pixel_spacing_mm(unet.config, args.pixel_spacing_mm, train_dataset))
        if unet.config.pixel_spacing_mm is not None:
            spacing = f", {unet.config.pixel_spacing_mm:g} mm per pixel"
    folder = write_pipeline_folder(
        training_args,
        unet,
        args.output,
        steps=state["global_step"],
        wall_time_s=state.get("wall_time_s") or 0.0,
        num_slices=len(train_dataset),
        batch_size=training_args.train_batch_size * training_args.gradient_accumulation_steps,
        dtype=DTYPES[args.dtype],
        repo_id=args.output.name,
    )
    if training_args.model != "ddpm" and args.example_masks:
        masks = folder / "example_masks"
        masks.mkdir(exist_ok=True)
        example_masks(args.example_masks, args.example_split, training_args.resolution, masks, unet.config.num_classes)
    print(f"{folder}: {training_args.model} pipeline from {checkpoint} (step {state['global_step']}, {args.dtype}{spacing})")
    return folder


def export_pixel_spacing_mm(config, requested: float | None, train_dataset) -> float | None:
    """The spacing the checkpoint records; else ``requested``; else the training rows' (training's rule)."""
    recorded = config.pixel_spacing_mm
    if recorded is not None:
        if requested is not None and abs(requested - recorded) > 1e-4:
            raise ValueError(
                f"the run recorded a pixel spacing of {recorded:g} mm; --pixel_spacing_mm {requested:g} disagrees, "
                "leave it out"
            )
        return recorded
    if requested is not None:
        return requested
    return training_pixel_spacing_mm(train_dataset, config.sample_size)


def recorded_argv(recorded: dict) -> list[str]:
    """Rebuild the training command line from its recorded options."""
    argv = ["--dataset_name", recorded["dataset_name"], "--output_dir", recorded["output_dir"]]
    skip = {"dataset_name", "output_dir", "command", "model"}
    for key, value in recorded.items():
        if key in skip or value is None or value is False:
            continue
        if value is True:
            argv.append(f"--{key}")
        elif isinstance(value, list):
            argv += (
                [f"--{key}", *map(str, value)] if key == "dataset_config" else [f"--{key}", ",".join(map(str, value))]
            )
        else:
            argv += [f"--{key}", str(value)]
    return argv


def cli(argv: list[str] | None = None) -> int:
    return run_script(lambda: main(parse_args(argv)))
