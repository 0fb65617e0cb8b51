"""The main job on the bundled demo checkpoint: synthetic CT slices from example masks.

    python -m lung_diffusers.demo                     # what `make demo` runs
    python -m lung_diffusers.demo --pipeline your-name/your-lung-sdm --masks my_masks/ --output out/

For every example mask it writes a PNG and a NIfTI (both marked synthetic) and a side-by-side picture of
the mask and the result, and prints where they are. The example masks ship with the pipeline folder
(``example_masks/``: label maps of the held-out patient LIDC-IDRI-0001, with an ``examples.json`` giving
their pixel spacing); a folder of your own label-map PNGs works too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image

DEFAULT_PIPELINE = "pipelines/lung-sdm-64"
SCHEDULERS = ("dpm", "ddim", "ddpm", "unipc", "euler")
# Display upscaling of the side-by-side picture: a 64-px slice is tiny on screen.
PREVIEW_SIDE = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lung_diffusers.demo", description="Synthetic lung CT slices from example masks."
    )
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="LungSDMPipeline folder or Hub repo id")
    parser.add_argument("--masks", type=Path, help="folder of label-map PNGs (default: the pipeline's example_masks/)")
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"), help="folder for the results")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="dpm", help="sampler (dpm: DPM-Solver++)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image")
    parser.add_argument("--images-per-mask", type=int, default=2, help="samples per mask")
    return parser.parse_args(argv)


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


def make_scheduler(name: str, config):
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    classes = {
        "dpm": DPMSolverMultistepScheduler,
        "ddim": DDIMScheduler,
        "ddpm": DDPMScheduler,
        "unipc": UniPCMultistepScheduler,
        "euler": EulerDiscreteScheduler,
    }
    return classes[name].from_config(config)


def side_by_side(mask: np.ndarray, images: list[np.ndarray]) -> np.ndarray:
    """Mask in colour next to the synthetic slices (uint8 RGB), upscaled with nearest neighbour for viewing."""
    from .data.contact_sheet import mask_to_rgb

    grey = [np.repeat(image[..., None], 3, axis=2) for image in images]
    row = np.concatenate([mask_to_rgb(mask), *grey], axis=1)
    factor = max(1, PREVIEW_SIDE // mask.shape[0])
    return row.repeat(factor, axis=0).repeat(factor, axis=1)


def main(args: argparse.Namespace) -> list[Path]:
    import torch

    from . import LungSDMPipeline, save_synthetic_nifti, save_synthetic_png

    started = time.perf_counter()
    if args.steps < 1 or args.images_per_mask < 1:
        raise ValueError("--steps and --images-per-mask must be at least 1")
    pipeline_path = Path(args.pipeline)
    if not pipeline_path.exists() and args.pipeline == DEFAULT_PIPELINE:
        raise FileNotFoundError(
            f"{DEFAULT_PIPELINE} not found: run the demo from the repository root (make demo), or pass --pipeline"
        )
    pipe = LungSDMPipeline.from_pretrained(args.pipeline)
    pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
    masks_dir = args.masks or pipeline_path / "example_masks"
    examples = load_example_masks(masks_dir)
    args.output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, mask, facts in examples:
        generators = [torch.Generator().manual_seed(args.seed + i) for i in range(args.images_per_mask)]
        common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, num_images_per_prompt=args.images_per_mask)
        hu = pipe(mask, generator=generators, output_type="hu", **common).images
        low, high = pipe.config.hu_window
        grey = [np.clip((h - low) / (high - low) * 255, 0, 255).round().astype(np.uint8) for h in hu]
        source = facts.get("source", f"{masks_dir}/{name}.png")
        for i, (slice_hu, slice_grey) in enumerate(zip(hu, grey)):
            stem = args.output / f"{name}_seed{args.seed + i}"
            metadata = {"mask": source, "seed": str(args.seed + i), "pipeline": str(args.pipeline), "scheduler": args.scheduler}
            written.append(save_synthetic_png(slice_grey, stem.with_suffix(".png"), metadata))
            pixel_mm = facts.get("pixel_mm", [1.0, 1.0])
            written.append(save_synthetic_nifti(slice_hu, f"{stem}.nii.gz", spacing=(pixel_mm[1], pixel_mm[0])))
        columns = "mask (colour, not an image) | " + " | ".join(f"synthetic seed {args.seed + i}" for i in range(len(grey)))
        written.append(
            save_synthetic_png(side_by_side(mask, grey), args.output / f"{name}_side_by_side.png", {"Columns": columns})
        )
    print(f"{len(examples)} masks x {args.images_per_mask} images in {time.perf_counter() - started:.0f} s "
          f"({args.scheduler}, {args.steps} steps); all files are marked synthetic:")
    for path in written:
        print(f"  {path}")
    return written


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        main(args)
    except (FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
