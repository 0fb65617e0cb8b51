"""Throughput of ``lung-diffusers synthesize`` with the demo checkpoint on CPU, at 1 and 2 processes (a benchmark).

Each process count is one real run, started with ``torchrun --standalone --nproc_per_node P`` into a fresh
folder. Prints images/s of the generation (from the run's launch log: first batch to last shard, all processes,
start-up excluded) and the wall time with start-up, and checks that all runs wrote the same rows.

Masks: the demo checkpoint's two example label maps (``example_masks/``) as a tiny mask dataset, unless
``--masks`` names one (e.g. a folder made by ``dataset_scripts/prepare_luna16.py``). The masks do not change
the speed.

    python benchmarks/benchmark_synthesis.py [--processes 1,2] [--num-images 32] [--steps 25] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_PIPELINE = REPO_ROOT / "pipelines" / "lung-sdm-64"


def example_mask_dataset(pipeline: Path, folder: Path) -> Path:
    """The checkpoint's example label maps as a one-split ``datasets`` folder (``data/train-0.parquet``)."""
    import datasets
    import PIL.Image

    paths = sorted((pipeline / "example_masks").glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"{pipeline}/example_masks has no PNGs; pass --masks")
    (folder / "data").mkdir(parents=True)
    masks = [PIL.Image.open(p).convert("L") for p in paths]
    datasets.Dataset.from_dict({"mask": masks}, features=datasets.Features({"mask": datasets.Image()})).to_parquet(
        str(folder / "data" / "train-0.parquet")
    )
    return folder


def run(processes: int, args: argparse.Namespace, masks: str, output: Path, cache: Path) -> dict:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "lung_diffusers.cli", "synthesize", "--pipeline", str(args.pipeline), "--masks", masks,
        "--num-images", str(args.num_images), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
        "--scheduler", args.scheduler, "--threads", str(args.threads), "--output", str(output), "--cache-dir", str(cache),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    launch = next(
        json.loads(p.read_text()) for p in sorted((output / "logs").glob("launch-*.json")) if "-process-" not in p.name
    )
    assert launch["num_processes"] == processes, launch
    return {"processes": processes, "images": launch["images"], "generation_s": launch["seconds"],
            "images_per_s": launch["images_per_second"], "wall_s": round(wall, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", type=Path, default=DEMO_PIPELINE, help="LungSDMPipeline folder (default: the demo)")
    parser.add_argument("--masks", help="mask dataset DATASET[:config[/split]] (default: the demo's example masks)")
    parser.add_argument("--processes", default="1,2", help="process counts to run (default: %(default)s)")
    parser.add_argument("--num-images", type=int, default=32, help="images per run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (default: %(default)s, as the demo)")
    parser.add_argument("--scheduler", default="dpm", help="sampler (default: %(default)s, DPM-Solver++)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="4 images, 2 steps: a smoke test of the plumbing")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_images, args.steps, args.batch_size = 4, 2, 2
    counts = [int(p) for p in args.processes.split(",")]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.2f}")
    print(f"{args.pipeline.name}: {args.num_images} images, batches of {args.batch_size}, {args.scheduler} "
          f"{args.steps} steps, {args.threads} torch thread(s) per process")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        masks = args.masks or str(example_mask_dataset(args.pipeline, tmp / "masks"))
        for processes in counts:
            rows.append(run(processes, args, masks, tmp / f"out-{processes}", tmp / "cache"))
        tables = [sorted((tmp / f"out-{p}" / "data").glob("*.parquet")) for p in counts]
        import pyarrow.parquet as pq

        contents = [[pq.read_table(f).to_pylist() for f in files] for files in tables]
        same_rows = all(c == contents[0] for c in contents)
    base = rows[0]["images_per_s"]
    print("\n| processes | images/s (generation) | speed-up | generation | wall with start-up |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['processes']} | {row['images_per_s']:.2f} | x{row['images_per_s'] / base:.2f} | "
              f"{row['generation_s']:.1f} s | {row['wall_s']:.1f} s |")  # fmt: skip
    print(f"\nsame rows at every process count: {same_rows}")
    results = {"load_average": load, "settings": {k: str(v) for k, v in vars(args).items()}, "runs": rows,
               "same_rows": same_rows}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
