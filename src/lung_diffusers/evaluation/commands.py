"""``lung-diffusers evaluate``: realism, anatomy, diversity, memorisation (and a sampler study) of one or more
models against a recipe dataset's held-out patients, written as a report folder.

Output folder::

    report.md        the tables, each with its N and settings, and the figures
    metrics.json     every figure with its N, the package versions, the Inception file's sha256
    *.png            diversity, closest training pairs, sampler study (all marked synthetic)
    cache/           generated images and features by content: a rerun with --overwrite resumes from them

Example:
    ```sh
    lung-diffusers evaluate --pipeline pipelines/lung-sdm-64 --dataset ../train-runs/data/luna16-mini-all \\
        --output reports/lung-sdm-64
    ```
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TOOL = "evaluate"
CACHE_DIR = "cache"
QUICK = {"max_masks": 4, "diversity_masks": 3, "diversity_seeds": 2, "study_masks": 3, "study_seeds": (0,)}


def register(subparsers) -> None:
    from ..scheduler_registry import EVALUATION_SCHEDULER, EVALUATION_STEPS, scheduler_names

    parser = subparsers.add_parser(
        "evaluate",
        help="measure models: realism (FRD, FID), anatomy, diversity, memorisation, samplers; writes a report",
        description=(
            "Draw synthetic slices from the held-out masks of a recipe dataset with each --pipeline (or read "
            "--synthetic folders made by `lung-diffusers synthesize`) and measure them against the real slices: "
            "Fréchet Radiomics Distance (and FID/KID with --fid) beside the real-vs-real floor, lung Dice, diversity "
            "between seeds, memorisation of training slices, and with --sampler-study the samplers' quality against "
            "time. Several models are compared side by side. Resumable: images and features are cached by content; "
            "rerun with --overwrite."
        ),
    )
    parser.add_argument("--pipeline", action="append", default=[], metavar="FOLDER",
                        help="LungSDMPipeline folder (repeat to compare models)")  # fmt: skip
    parser.add_argument("--upscaler", metavar="FOLDER", help="LungSDMUpscalePipeline folder: evaluate the 256-px cascade")
    parser.add_argument("--synthetic", action="append", default=[], metavar="FOLDER",
                        help="output folder of `lung-diffusers synthesize` (repeatable)")  # fmt: skip
    parser.add_argument("--dataset", required=True, metavar="PATH_OR_REPO", help="recipe dataset (prepare_luna16.py)")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="report folder")
    parser.add_argument("--test-split", default="test", help="held-out patients' split (default test)")
    parser.add_argument("--train-split", default="train", help="training patients' split (default train)")
    parser.add_argument("--scheduler", default=EVALUATION_SCHEDULER, choices=scheduler_names(),
                        help=f"sampler (default {EVALUATION_SCHEDULER})")  # fmt: skip
    parser.add_argument("--steps", type=int, default=EVALUATION_STEPS, help=f"sampling steps (default {EVALUATION_STEPS})")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default 1)")
    parser.add_argument("--upscaler-steps", type=int, default=25, help="the cascade's second-stage steps (default 25)")
    parser.add_argument("--noise-level", type=int, default=None, help="the cascade's noise level (default: the pipeline's)")
    parser.add_argument("--upscaler-strength", type=float, default=None,
                        help="the share of the second stage's steps it runs, from stage 1 noised (default: the pipeline's)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per held-out mask (default 0)")
    parser.add_argument("--max-masks", type=int, help="held-out masks to draw, spread over the split (default all)")
    parser.add_argument("--diversity-masks", type=int, default=16, help="masks for diversity (default 16)")
    parser.add_argument("--diversity-seeds", type=int, default=4, help="seeds per mask for diversity (default 4)")
    parser.add_argument("--sampler-study", action="store_true", help="also compare the registry's samplers")
    parser.add_argument("--study-masks", type=int, default=16, help="masks of the sampler study (default 16)")
    parser.add_argument("--study-seeds", type=int, nargs="+", default=[0, 1], help="seeds of the study (default 0 1)")
    parser.add_argument("--fid", action="store_true", help="also FID and KID (needs the fid extra)")
    parser.add_argument("--quick", action="store_true", help="a few masks and seeds: checks the tool, not a model")
    parser.add_argument("--batch-size", type=int, default=16, help="images per pipeline call (default 16)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--cache-dir", type=Path, help=f"images and features cache (default: OUTPUT/{CACHE_DIR})")
    parser.add_argument("--datasets-cache-dir", help="datasets cache folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in --output (resumes)")
    parser.add_argument("--update-card", action="store_true",
                        help="put the headline figures into the model card of the --pipeline (or --upscaler) folder")  # fmt: skip
    parser.set_defaults(func=run_evaluate, interrupted="interrupted: run the same command with --overwrite to resume")


def settings_from_args(args: argparse.Namespace):
    from .evidence import EvaluationSettings
    from .generated_slices import SamplerSettings

    quick = QUICK if args.quick else {}
    cascade = args.upscaler is not None
    sampler = SamplerSettings(
        args.scheduler, args.steps, args.guidance,
        upscaler_steps=args.upscaler_steps if cascade else None, noise_level=args.noise_level if cascade else None,
        upscaler_strength=args.upscaler_strength if cascade else None,
    )  # fmt: skip
    if args.steps < 1 or (cascade and args.upscaler_steps < 1):
        raise ValueError("--steps and --upscaler-steps must be at least 1")
    if args.upscaler_strength is not None and not (cascade and 0 < args.upscaler_strength <= 1):
        raise ValueError("--upscaler-strength must be in (0, 1] (1: pure noise) and needs --upscaler")
    return EvaluationSettings(
        dataset=args.dataset,
        pipelines=args.pipeline,
        synthetic=args.synthetic,
        upscaler=args.upscaler,
        test_split=args.test_split,
        train_split=args.train_split,
        sampler=sampler,
        seeds=args.seeds,
        max_masks=quick.get("max_masks", args.max_masks),
        diversity_masks=quick.get("diversity_masks", args.diversity_masks),
        diversity_seeds=quick.get("diversity_seeds", args.diversity_seeds),
        sampler_study=args.sampler_study,
        study_masks=quick.get("study_masks", args.study_masks),
        study_seeds=quick.get("study_seeds", args.study_seeds),
        fid=args.fid,
        quick=args.quick,
        batch_size=args.batch_size,
        device=args.device,
        datasets_cache_dir=args.datasets_cache_dir,
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from ..output_folder import check_output_folder

    settings = settings_from_args(args)  # bad options fail before any model loads
    for folder in [*args.pipeline, *args.synthetic, *([args.upscaler] if args.upscaler else [])]:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder} does not exist; give a pipeline or synthesize output folder")
    card_folder = None
    if args.update_card:
        if len(args.pipeline) != 1 or args.synthetic:
            raise ValueError("--update-card needs exactly one --pipeline (and no --synthetic): whose card to update")
        card_folder = Path(args.upscaler or args.pipeline[0])
    check_output_folder(args.output, TOOL, args.overwrite)
    report = evaluate(settings, args.output, args.cache_dir, args.overwrite)
    if card_folder is not None:
        from ..atomic_write import write_text_atomically
        from ..hub import EVALUATION_FILE, refresh_evaluation_section
        from .evidence_report import headline_markdown

        write_text_atomically(card_folder / EVALUATION_FILE, headline_markdown(report))
        refresh_evaluation_section(card_folder)
        print(f"model card updated: {card_folder / 'README.md'}")
    print(f"report: {args.output / 'report.md'}")
    return 0


def evaluate(settings, output: Path, cache_dir: Path | None = None, overwrite: bool = False) -> dict:
    """Run the evaluation and write the report folder; returns the figures (``metrics.json``)."""
    from ..atomic_write import write_text_atomically
    from ..output_folder import check_output_folder, output_folder
    from .evidence import Evaluation
    from .evidence_report import evidence_markdown
    from .report_json import json_ready

    output = Path(output)
    check_output_folder(output, TOOL, overwrite)
    evaluation = Evaluation(settings, cache_dir or output / CACHE_DIR)
    with output_folder(output, TOOL, overwrite) as out:
        # Listed before they are written, so a killed run's files are the rerun's to replace.
        out.claim([*evaluation.figure_names(), "metrics.json", "report.md"])
        report = evaluation.run(out.path)
        write_text_atomically(out.path("metrics.json"), json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")
        write_text_atomically(out.path("report.md"), evidence_markdown(report))
    return report
