"""``lung-diffusers evaluate-downstream``: the thesis' downstream tasks, trained on real slices and on real plus
synthetic ones, with the Wilcoxon tests. Writes downstream.json, downstream.md and downstream.png.

    lung-diffusers evaluate-downstream --dataset data/luna16-mini-all --luna16 ../shared/data/lidc-mini \\
        --tasks a c --repetitions 10 --output reports/downstream

Resumable: trained models are cached by content (``--cache-dir``), so rerunning the same command after an
interruption trains only the runs that are missing. Torch and MONAI are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TOOL = "evaluate-downstream"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        TOOL,
        help="downstream utility: nodule classification (a, b) and localisation (c), real vs real + synthetic",
        description=(
            "Train the thesis' downstream tasks on a recipe dataset's real training slices (arm 'real') and, with "
            "--synthetic, on those plus a `lung-diffusers synthesize` dataset (arm 'real+synthetic'), each "
            "--repetitions times from the same seeds; test on the held-out patients (or patient-level --folds). "
            "Reports each metric's mean with a bootstrap interval over test images, the Wilcoxon rank-sum p over "
            "the runs and the signed-rank p over the paired seeds. Resumable: rerun the same command."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="PATH_OR_REPO", help="recipe dataset folder or Hub repo")
    parser.add_argument(
        "--synthetic",
        type=Path,
        metavar="DIR",
        help="a `lung-diffusers synthesize` output folder (default: real arm only)",
    )
    parser.add_argument(
        "--luna16",
        type=Path,
        metavar="DIR",
        help="LUNA16-shaped folder (subset*/ scans, annotations.csv, annotations_excluded.csv, LIDC XML reads), e.g. "
        "../shared/data/lidc-mini: adds the nodules LIDC readers marked that LUNA16 leaves out, and ratings",
    )
    parser.add_argument(
        "--lidc-xml", type=Path, metavar="DIR", help="where the LIDC XML reads are (default: --luna16)"
    )
    parser.add_argument(
        "--tasks", nargs="+", choices=("a", "b", "c"), default=["a", "c"],
        help="a: nodule vs non-nodule patches; b: non-nodule/benign/malignant; c: localisation, AP50 (default a c)",
    )  # fmt: skip
    parser.add_argument(
        "--repetitions", type=int, metavar="N", help="runs per arm, seeds 0..N-1 (default 10; --quick 2)"
    )
    parser.add_argument(
        "--folds", type=int, metavar="K", help="patient-level K-fold over both splits (default: the dataset's split)"
    )
    parser.add_argument("--train-split", default="train", help="training split (default train)")
    parser.add_argument("--test-split", default="test", help="test split (default test)")
    parser.add_argument("--image-size", type=int, default=256, help="slices are taken at this size (default 256)")
    parser.add_argument(
        "--max-healthy-slices",
        type=int,
        metavar="N",
        help="nodule-free slices read per split, spread over it (default: all; e.g. 4000 for full LUNA16)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the data draws (non-nodule patches, slices, folds)")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="report folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in --output")
    parser.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help="trained models (default ~/.cache/lung-diffusers/downstream)"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny models and a few steps: a smoke test, not a result")
    parser.add_argument("--datasets-cache", metavar="DIR", help="datasets cache folder")
    parser.set_defaults(func=run, interrupted="interrupted: run the same command again to resume from the cache")


def settings_from_args(args: argparse.Namespace):
    from .experiment import DownstreamSettings

    changes = {"tasks": tuple(args.tasks), "folds": args.folds, "image_size": args.image_size, "data_seed": args.seed}
    if args.repetitions is not None:
        changes["repetitions"] = args.repetitions
    settings = DownstreamSettings.quick(**changes) if args.quick else DownstreamSettings(**changes)
    settings.check()
    return settings


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse bad input before any slice is read."""
    from ...output_folder import check_output_folder

    if args.train_split == args.test_split and args.folds is None:
        raise ValueError(f"--train-split and --test-split must differ, both are {args.train_split!r}")
    for name in ("synthetic", "luna16", "lidc_xml"):
        folder = getattr(args, name)
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"--{name.replace('_', '-')} {folder} is not a folder")
    if args.lidc_xml is not None and args.luna16 is None:
        raise ValueError("--lidc-xml needs --luna16 (the scans its reads are placed in)")
    if args.max_healthy_slices is not None and args.max_healthy_slices < 1:
        raise ValueError(f"--max-healthy-slices must be at least 1, got {args.max_healthy_slices}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    check_output_folder(args.output, TOOL, args.overwrite)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    check_inputs(args)
    started = time.perf_counter()

    import torch

    from ... import __version__
    from ...atomic_write import write_text_atomically
    from ...output_folder import output_folder
    from ..report_json import json_ready
    from .experiment import honesty, make_folds, run_experiment
    from .lidc_nodules import add_lidc_nodules, describe
    from .model_cache import ModelCache, default_cache_dir
    from .nodule_samples import recipe_slices, synthetic_slices
    from .report import FIGURE_FILE, JSON_FILE, MARKDOWN_FILE, markdown_report, write_figure

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    size = settings.image_size
    read = dict(cache_dir=args.datasets_cache, max_healthy=args.max_healthy_slices)
    train = recipe_slices(args.dataset, args.train_split, size, **read)
    test = recipe_slices(args.dataset, args.test_split, size, **read)
    if not train or not test:
        raise ValueError(
            f"{args.dataset} has no slices in split {args.train_split if not train else args.test_split!r}"
        )
    added = []
    if args.luna16 is not None:
        train, added_train = add_lidc_nodules(train, args.luna16, size, args.lidc_xml)
        test, added_test = add_lidc_nodules(test, args.luna16, size, args.lidc_xml)
        added = added_train + added_test
    synthetic = synthetic_slices(args.synthetic, size) if args.synthetic is not None else []
    folds = make_folds(train, test, synthetic, settings.folds, settings.data_seed)
    cache_dir = args.cache_dir or default_cache_dir()
    tasks = run_experiment(folds, settings, ModelCache(cache_dir), with_synthetic=bool(synthetic))

    runs = [run for summary in tasks.values() for arm in summary["arms"].values() for run in arm["runs"]]
    trained = [run for run in runs if run["trained"]]
    split = (
        f"patient-level {settings.folds}-fold over splits {args.train_split} and {args.test_split}"
        if settings.folds
        else f"split {args.train_split} for training, {args.test_split} for testing"
    )
    description = (
        f"Recipe dataset `{args.dataset}` at {size} px, {split}"
        + (f"; synthetic slices from `{args.synthetic}` ({len(synthetic)} rows)" if synthetic else "; real arm only")
        + (f"; {len(added)} nodule(s) added from the LIDC reads of `{args.luna16}`" if args.luna16 else "")
        + f". {settings.repetitions} run(s) per arm, seeds 0-{settings.repetitions - 1}."
        + (" QUICK MODE: tiny models, a few steps; the numbers mean nothing." if args.quick else "")
    )
    report = {
        "description": description,
        "honesty": honesty(tasks, folds),
        "tasks": tasks,
        "lidc_nodules": describe(added),
        "synthetic": {
            "folder": str(args.synthetic) if args.synthetic else None,
            "rows": len(synthetic),
            "left_out_as_test_patients": [fold.synthetic_left_out for fold in folds],
        },
        "settings": {
            **settings.as_dict(),
            "dataset": str(args.dataset),
            "train_split": args.train_split,
            "test_split": args.test_split,
            "luna16": str(args.luna16) if args.luna16 else None,
            "max_healthy_slices": args.max_healthy_slices,
            "quick": args.quick,
            "cache_dir": str(cache_dir),
        },
        "timing": {
            "seconds": time.perf_counter() - started,
            "trained_runs": len(trained),
            "cached_runs": len(runs) - len(trained),
            "seconds_per_trained_run": sum(r["seconds"] for r in trained) / len(trained) if trained else None,
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {"lung_diffusers": __version__, "torch": torch.__version__, "monai": _version("monai")},
    }
    report = json_ready(report)
    with output_folder(args.output, TOOL, args.overwrite) as out:
        write_text_atomically(out.path(JSON_FILE), json.dumps(report, indent=2) + "\n")
        write_text_atomically(out.path(MARKDOWN_FILE), markdown_report(report))
        write_figure(report, out.path(FIGURE_FILE))
    print(f"{report['honesty']}\nwrote {args.output / MARKDOWN_FILE}")
    return 0


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
