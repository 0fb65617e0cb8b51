"""``lung-diffusers synthesize``: a labelled synthetic dataset from a checkpoint and a mask dataset.

Runs as one process, or under ``torchrun`` / ``accelerate launch`` as many: see :mod:`.runner`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..scheduler_registry import CASCADE_SCHEDULER, CASCADE_STEPS, DEFAULT_SCHEDULER, DEFAULT_STEPS
from .schedulers import SCHEDULER_CLASSES
from .settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_NOISE_LEVEL,
    DEFAULT_THREADS,
    DEFAULT_UPSCALER_STRENGTH,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synthesize",
        help="pad a dataset: synthetic CT slices from a mask dataset, written as a labelled datasets dataset",
        description=(
            "Sample masks from a datasets mask dataset (default: its train split), optionally place nodules in them, "
            "generate synthetic slices in batches and write a datasets dataset with the mask dataset's columns plus "
            "synthetic=True and everything needed to regenerate each row. Resumable: rerun the same command. Runs on "
            "several processes with `torchrun --nproc_per_node N -m lung_diffusers.cli synthesize ...` (CPU) or "
            "`accelerate launch --multi_gpu --num_processes N -m lung_diffusers.cli synthesize ...` (GPUs); the "
            "rows do not depend on the number of processes."
        ),
    )
    parser.add_argument("--pipeline", required=True, metavar="PATH_OR_REPO", help="LungSDMPipeline folder or Hub repo id")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of --pipeline")
    parser.add_argument(
        "--upscaler",
        metavar="PATH_OR_REPO",
        help="a cascade's second stage (LungSDMUpscalePipeline folder or Hub repo, e.g. pipelines/lung-sdm-upscaler-256): "
        "masks are taken at its size and each image is drawn by --pipeline, then by it (default: --pipeline's size only)",
    )
    parser.add_argument("--upscaler-revision", metavar="REVISION", help="Hub revision of --upscaler")
    parser.add_argument(
        "--upscaler-steps", type=int, metavar="N", help="the second stage's denoising steps (default: --steps)"
    )
    parser.add_argument(
        "--noise-level",
        type=int,
        metavar="LEVEL",
        help=f"the second stage's augmentation level for stage 1's image (default {DEFAULT_NOISE_LEVEL})",
    )
    parser.add_argument(
        "--upscaler-strength",
        type=float,
        metavar="S",
        help="the share of the second stage's steps it runs, from stage 1's image upsampled and noised "
        f"(default {DEFAULT_UPSCALER_STRENGTH}; 1: all of them, from pure noise)",
    )
    parser.add_argument(
        "--masks",
        required=True,
        metavar="DATASET[:config[/split]]",
        help="mask dataset folder or Hub repo, e.g. data/luna16-slices:healthy/train (default config; split train)",
    )
    parser.add_argument("--num-images", type=int, required=True, metavar="N", help="images to generate")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="output dataset folder")
    parser.add_argument(
        "--scheduler",
        metavar="NAME",
        help=f"sampler: {', '.join(SCHEDULER_CLASSES)} (default {DEFAULT_SCHEDULER}, the sampler study's choice; "
        f"{CASCADE_SCHEDULER} with --upscaler, as its 256-px fidelity was measured)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help=f"denoising steps (default {DEFAULT_STEPS}; {CASCADE_STEPS} with --upscaler)",
    )
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default 1: off)")
    parser.add_argument("--seed", type=int, default=0, help="run seed; every image's seed derives from it (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"images per batch and shard (default {DEFAULT_BATCH_SIZE})"
    )
    parser.add_argument(
        "--nodule-fraction",
        type=float,
        metavar="F",
        help="draw nodule-free masks and place a nodule inside a lung in this share of the images (default: masks as they are)",
    )
    parser.add_argument(
        "--malignant-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="7-class models: share of placed nodules that are malignant (default 0.5)",
    )
    parser.add_argument(
        "--nodule-diameter-mm",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="diameter range of placed nodules (default: the range of the mask dataset's nodules)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"torch threads per process (default {DEFAULT_THREADS}); part of the settings, as it changes the float arithmetic",
    )
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the finished dataset to this Hub dataset repo")
    parser.add_argument("--cache-dir", help="datasets / Hub cache folder (default: the usual Hugging Face cache)")
    parser.set_defaults(func=run_synthesize, interrupted="interrupted: run the same command again to resume")


def request_from_args(args: argparse.Namespace):
    from .settings import SynthesisRequest

    return SynthesisRequest(
        pipeline=args.pipeline,
        masks=args.masks,
        num_images=args.num_images,
        output=args.output,
        scheduler=args.scheduler,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        batch_size=args.batch_size,
        nodule_fraction=args.nodule_fraction,
        malignant_fraction=args.malignant_fraction,
        nodule_diameter_mm=tuple(args.nodule_diameter_mm) if args.nodule_diameter_mm else None,
        revision=args.revision,
        threads=args.threads,
        push_to_hub=args.push_to_hub,
        cpu=args.cpu,
        cache_dir=args.cache_dir,
        upscaler=args.upscaler,
        upscaler_revision=args.upscaler_revision,
        upscaler_steps=args.upscaler_steps,
        noise_level=args.noise_level,
        upscaler_strength=args.upscaler_strength,
    )


def run_synthesize(args: argparse.Namespace) -> int:
    from .runner import synthesize

    request = request_from_args(args)
    request.check()  # before torch loads: bad options fail at once
    synthesize(request)
    return 0
