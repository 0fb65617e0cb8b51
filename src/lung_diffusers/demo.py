"""The main job on the bundled demo checkpoint: synthetic CT slices from example masks.

    python -m lung_diffusers.demo                     # what `make demo` runs
    python -m lung_diffusers.demo --pipeline your-name/your-lung-sdm --masks my_masks/ --output out/

For every example mask it writes a PNG and a NIfTI (both marked synthetic) and a side-by-side picture of
the mask and the results (titled columns under a red SYNTHETIC banner), and prints where they are. The example
masks ship with the pipeline folder (``example_masks/``: label maps of the held-out patient LIDC-IDRI-0001, with an
``examples.json`` giving their pixel spacing); a folder of your own label-map PNGs works too.

``--output`` must be new or empty, or hold an earlier demo's outputs: ``--overwrite`` (which ``make demo`` passes,
so it can be run again) replaces exactly the files listed in that run's manifest; no other file is touched
(:mod:`lung_diffusers.output_folder`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from .command_line import add_debug_argument, run_command
from .output_folder import check_output_folder, output_folder
from .scheduler_registry import (
    CASCADE_SCHEDULER,
    CASCADE_STEPS,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    default_sampling,
    scheduler_names,
)
from .synthesis.settings import DEFAULT_UPSCALER_STRENGTH

DEFAULT_PIPELINE = "pipelines/lung-sdm-64"
# The cascade's second stage: when its folder is there, the demo draws 256-px slices through both stages.
DEFAULT_UPSCALER = "pipelines/lung-sdm-upscaler-256"
SCHEDULERS = scheduler_names()
# Display upscaling of the side-by-side picture: a 64-px slice is tiny on screen.
PREVIEW_SIDE = 256
TOOL = "demo"
# The Space's mark (spaces/lung_space/display.py): white "SYNTHETIC" on a red band above the picture, hiding nothing.
BANNER_TEXT = "SYNTHETIC"
BANNER_RGB = (200, 16, 16)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lung_diffusers.demo", description="Synthetic lung CT slices from example masks."
    )
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="LungSDMPipeline folder or Hub repo id")
    parser.add_argument("--masks", type=Path, help="folder of label-map PNGs (default: the pipeline's example_masks/)")
    parser.add_argument(
        "--output", type=Path, default=Path("outputs/demo"), help="folder for the results: new, empty or an earlier demo's"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier demo's results in --output (only those files)"
    )
    parser.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help=f"sampler (default: {CASCADE_SCHEDULER} through both stages, {DEFAULT_SCHEDULER} with --no-upscaler)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help=f"denoising steps of each stage (default: {CASCADE_STEPS}; {DEFAULT_STEPS} with --no-upscaler)",
    )
    parser.add_argument(
        "--upscaler",
        help=f"a LungSDMUpscalePipeline folder or Hub repo id: draw full-resolution slices through both stages "
        f"(default: {DEFAULT_UPSCALER} when it exists)",
    )
    parser.add_argument("--no-upscaler", action="store_true", help="draw the first stage's 64-px slices only")
    parser.add_argument("--noise-level", type=int, default=100, help="the upscaler's augmentation level (0-999)")
    parser.add_argument(
        "--upscaler-strength",
        type=float,
        default=DEFAULT_UPSCALER_STRENGTH,
        help="the share of the upscaler's steps it runs, from stage 1's image upsampled and noised "
        f"(default {DEFAULT_UPSCALER_STRENGTH}; 1: all, from pure noise)",
    )
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image")
    parser.add_argument("--images-per-mask", type=int, default=2, help="samples per mask")
    args = add_debug_argument(parser).parse_args(argv)
    # The defaults depend on the stages: the cascade's measured settings, or the sampler study's for 64 px alone.
    cascade = not args.no_upscaler and bool(args.upscaler or bundled_upscaler())
    scheduler, steps = default_sampling(cascade)
    args.scheduler = scheduler if args.scheduler is None else args.scheduler
    args.steps = steps if args.steps is None else args.steps
    return args


def load_example_masks(folder: Path) -> list[tuple[str, np.ndarray, dict]]:
    """``(name, label map, facts)`` for every PNG in ``folder``; facts come from its ``examples.json`` if any."""
    if not folder.is_dir():
        raise FileNotFoundError(f"mask folder not found: {folder}")
    facts = json.loads((folder / "examples.json").read_text()) if (folder / "examples.json").is_file() else {}
    masks = []
    for path in sorted(folder.glob("*.png")):
        with PIL.Image.open(path) as image:
            masks.append((path.stem, np.asarray(image), facts.get(path.name, {})))
    if not masks:
        raise FileNotFoundError(f"no label-map PNGs in {folder}")
    return masks


def side_by_side(mask: np.ndarray, images: list[np.ndarray], seeds: list[int]) -> tuple[np.ndarray, dict[str, str]]:
    """Mask in colour next to the synthetic slices (uint8 RGB), each column titled and enlarged with nearest
    neighbour for viewing, under a red SYNTHETIC banner; and the PNG text chunks that say what each column is."""
    from .ct import mask_to_rgb
    from .inpainting.figure import Panel, figure_metadata, render_figure

    panels = [Panel("mask (colour, not an image)", mask_to_rgb(mask), "mask")]
    panels += [Panel(f"SYNTHETIC seed {seed}", np.repeat(image[..., None], 3, axis=2), "synthetic")
               for image, seed in zip(images, seeds)]  # fmt: skip
    row = render_figure(panels, panel_size=max(PREVIEW_SIDE, *mask.shape))
    columns = "mask (colour, not an image) | " + " | ".join(f"synthetic seed {seed}" for seed in seeds)
    return np.concatenate([synthetic_banner(row.shape[1]), row]), {"Columns": columns, **figure_metadata(panels)}


def synthetic_banner(width: int) -> np.ndarray:
    """A red band with "SYNTHETIC" in white, uint8 ``(height, width, 3)``, as the Space stamps its pictures."""
    height = max(14, width // 24)
    banner = np.empty((height, width, 3), np.uint8)
    banner[:] = BANNER_RGB
    scale, thickness = height / 40, max(1, round(height / 14))
    (text_w, text_h), _ = cv2.getTextSize(BANNER_TEXT, cv2.FONT_HERSHEY_DUPLEX, scale, thickness)
    origin = (max(2, (width - text_w) // 2), (height + text_h) // 2)
    cv2.putText(banner, BANNER_TEXT, origin, cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return banner


def main(args: argparse.Namespace) -> list[Path]:
    from . import LungSDMCombinedPipeline, LungSDMPipeline, load_pipeline

    started = time.perf_counter()
    if args.steps < 1 or args.images_per_mask < 1:
        raise ValueError("--steps and --images-per-mask must be at least 1")
    pipeline_path = Path(args.pipeline)
    if not pipeline_path.exists() and args.pipeline == DEFAULT_PIPELINE:
        raise FileNotFoundError(
            f"{DEFAULT_PIPELINE} not found: run the demo from the repository root (make demo), or pass --pipeline"
        )
    if not math.isfinite(args.guidance) or args.guidance < 0:
        raise ValueError(f"--guidance must be a finite number >= 0 (1: off), got {args.guidance:g}")
    if not 0 < args.upscaler_strength <= 1:  # NaN too
        raise ValueError(
            f"--upscaler-strength must be a share of the upscaler's steps in (0, 1] (1: from pure noise), "
            f"got {args.upscaler_strength:g}"
        )
    check_output_folder(args.output, TOOL, args.overwrite)  # before the model loads and samples
    pipe = load_pipeline(args.pipeline, args.scheduler, device=None, pipeline_class=LungSDMPipeline, progress_bar=True)
    train_steps = pipe.scheduler.config.num_train_timesteps
    if args.steps > train_steps:
        raise ValueError(f"--steps must be at most the model's {train_steps} training steps, got {args.steps}")
    upscaler = upscaler_source(args)
    if upscaler is not None:
        pipe = LungSDMCombinedPipeline.from_stages(pipe, load_pipeline(upscaler, args.scheduler, device=None, flag="--upscaler"))
        pipe.set_progress_bar_config(disable=False)
        pipeline_path = Path(upscaler)  # its example masks have its size
    masks_dir = args.masks or pipeline_path / "example_masks"
    examples = load_example_masks(masks_dir)  # every mask read and checked before anything is written
    with output_folder(args.output, TOOL, args.overwrite) as out:
        written = write_examples(pipe, examples, masks_dir, args, out)
    size = examples[0][1].shape[0]
    stages = f" per stage, upscaler strength {args.upscaler_strength:g}" if upscaler else ""
    print(f"{len(examples)} masks x {args.images_per_mask} {size}-px images in {time.perf_counter() - started:.0f} s "
          f"({args.scheduler}, {args.steps} steps{stages}); all files are marked synthetic:")
    for path in written:
        print(f"  {path}")
    if upscaler is None and not args.no_upscaler:
        print(f"(64 px: for 256-px slices pass --upscaler FOLDER, or put the cascade's stage 2 in {DEFAULT_UPSCALER})")
    return written


def upscaler_source(args: argparse.Namespace) -> str | None:
    """The second stage to draw full-resolution slices with, or `None` for the first stage alone."""
    if args.no_upscaler:
        if args.upscaler:
            raise ValueError("--upscaler and --no-upscaler exclude each other")
        return None
    if args.upscaler:
        return args.upscaler
    return bundled_upscaler()


def bundled_upscaler() -> str | None:
    """The repository's demo upscaler folder when it is there (the demo runs from the repository root)."""
    return DEFAULT_UPSCALER if Path(DEFAULT_UPSCALER, "model_index.json").is_file() else None


def write_examples(pipe, examples, masks_dir: Path, args: argparse.Namespace, out) -> list[Path]:
    """Sample every example mask and write its PNGs, NIfTIs and side-by-side picture into ``out``."""
    import torch

    from . import save_synthetic_nifti, save_synthetic_png
    from .ct import window_hu

    written = []
    for name, mask, facts in examples:
        generators = [torch.Generator().manual_seed(args.seed + i) for i in range(args.images_per_mask)]
        common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, num_images_per_prompt=args.images_per_mask)
        if hasattr(pipe, "upscaler"):  # both stages: the same steps and guidance for each
            common.update(upscaler_num_inference_steps=args.steps, upscaler_guidance_scale=args.guidance,
                          noise_level=args.noise_level, upscaler_strength=args.upscaler_strength)  # fmt: skip
        hu = pipe(mask, generator=generators, output_type="hu", **common).images
        grey = [window_hu(h, pipe.config.hu_window) for h in hu]
        source = facts.get("source", f"{masks_dir}/{name}.png")
        for i, (slice_hu, slice_grey) in enumerate(zip(hu, grey)):
            stem = f"{name}_seed{args.seed + i}"
            metadata = {"mask": source, "seed": str(args.seed + i), "pipeline": str(args.pipeline), "scheduler": args.scheduler}
            written.append(save_synthetic_png(slice_grey, out.path(f"{stem}.png"), metadata))
            pixel_mm = facts.get("pixel_mm", [1.0, 1.0])
            written.append(save_synthetic_nifti(slice_hu, out.path(f"{stem}.nii.gz"), spacing=(pixel_mm[1], pixel_mm[0])))
        picture, text = side_by_side(mask, grey, [args.seed + i for i in range(len(grey))])
        written.append(save_synthetic_png(picture, out.path(f"{name}_side_by_side.png"), text))
    return written


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, 2 (bad input), 1 (another error) or 130 (Ctrl-C)."""
    args = parse_args(argv)

    def work() -> None:  # main returns the files it wrote, not an exit status
        main(args)

    return run_command(work, argv)


if __name__ == "__main__":
    sys.exit(cli())
