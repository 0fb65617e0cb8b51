"""Seconds per 256-px slice of the two-stage cascade on this machine (issue 17's time goal: at most 30 s on 2 CPU
cores, batch 1), against the thesis-style baseline: the seed-size 256-px SDM's forward time x 1000 DDPM steps.

Stage 1 is the bundled ``pipelines/lung-sdm-64`` (DPM-Solver++). Stage 2 is ``--upscaler`` (a LungSDMUpscalePipeline
folder; default the bundled ``pipelines/lung-sdm-upscaler-256``), or, with ``--random-upscaler``, a randomly
initialised U-Net of the demo run's shape: its speed does not depend on its weights. Stage 2 runs the last
``--upscaler-strength`` share of its steps (the pipeline's default 0.4: 10 of 25). Both stages run on the 256-px
example map, with mask features reused. Measure with no training running (`benchmarks/README.md`).

    python benchmarks/benchmark_cascade.py [--upscaler FOLDER | --random-upscaler] [--steps 25] [--upscaler-steps 25]
                                           [--upscaler-strength 0.4] [--repeats 3] [--threads 2] [--skip-baseline]
                                           [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE = REPO_ROOT / "pipelines" / "lung-sdm-64"
BUNDLED_UPSCALER = REPO_ROOT / "pipelines" / "lung-sdm-upscaler-256"
# The demo run's stage 2 (../train-runs/launch-upscaler.sh): widths 32/64/128, one layer per block, no attention.
DEMO_UPSCALER = dict(
    sample_size=256, block_out_channels=(32, 64, 128), layers_per_block=1, attention_downsample_factors=(),
    add_attention=False, spade_hidden_channels=32, downsample_type="conv", upsample_type="conv",
    low_res_channels=1, training_crop_size=64,
)  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upscaler", type=Path, help=f"a LungSDMUpscalePipeline folder (default: {BUNDLED_UPSCALER.name})")
    parser.add_argument("--random-upscaler", action="store_true", help="a random U-Net of the demo run's shape instead")
    parser.add_argument("--upscaler-strength", type=float, help="stage 2's share of its steps (default: the pipeline's)")
    parser.add_argument("--steps", type=int, default=25, help="stage 1 steps (DPM-Solver++)")
    parser.add_argument("--upscaler-steps", type=int, default=25, help="stage 2 steps (DPM-Solver++)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (after one warm-up); the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--skip-baseline", action="store_true", help="do not time the seed-size model (slow)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 steps per stage, 1 repeat, no baseline")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.upscaler is None and not args.random_upscaler:
        args.upscaler = BUNDLED_UPSCALER if (BUNDLED_UPSCALER / "model_index.json").is_file() else None
    if args.quick:
        args.steps = args.upscaler_steps = 2
        args.repeats, args.skip_baseline = 1, True
    return args


def build_pipeline(args):
    import torch
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMCombinedPipeline, LungSDMUpscalePipeline, SemanticUNet2DModel, load_pipeline

    base = load_pipeline(BASE, "dpm", device=None)
    if args.upscaler:
        upscaler = load_pipeline(args.upscaler, "dpm", device=None)
    else:
        torch.manual_seed(0)
        schedule = DDPMScheduler.from_config(base.scheduler.config)
        upscaler = LungSDMUpscalePipeline(SemanticUNet2DModel(**DEMO_UPSCALER).eval(), schedule, schedule)
        upscaler.scheduler = type(base.scheduler).from_config(schedule.config)
    pipe = LungSDMCombinedPipeline.from_stages(base, upscaler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def example_map():
    import numpy as np
    import PIL.Image

    from lung_diffusers.ct import resize_label_map

    labels = np.asarray(PIL.Image.open(BASE / "example_masks" / "nodule.png"))
    return resize_label_map(labels, 256) if labels.shape[0] != 256 else labels


def time_stages(pipe, labels, args) -> tuple[float, float]:
    """Seconds of stage 1 and stage 2 for one 256-px image."""
    import torch

    low_labels = pipe.low_res_label_maps(torch.from_numpy(labels)[None].long())
    started = time.perf_counter()
    low = pipe.base(low_labels, num_inference_steps=args.steps, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    middle = time.perf_counter()
    strength = {} if args.upscaler_strength is None else {"strength": args.upscaler_strength}
    pipe.upscaler(low, labels, num_inference_steps=args.upscaler_steps, output_type="np",
                  generator=torch.Generator().manual_seed(0), **strength)  # fmt: skip
    pipe.upscaler_steps_run = pipe.upscaler.num_timesteps
    return middle - started, time.perf_counter() - middle


def baseline_forward_seconds() -> float:
    """One forward pass of the thesis' seed-size SDM (256 px, batch 1), features computed in the pass."""
    import torch

    from lung_diffusers import SemanticUNet2DModel

    model = SemanticUNet2DModel().eval()  # the defaults are the thesis' configuration
    sample, labels = torch.randn(1, 1, 256, 256), torch.randint(0, 6, (1, 256, 256))
    with torch.no_grad():
        started = time.perf_counter()
        model(sample, 500, labels)
        return time.perf_counter() - started


def main(argv=None) -> dict:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe, labels = build_pipeline(args), example_map()
    time_stages(pipe, labels, args)  # warm-up: first calls pick kernels and allocate
    runs = [time_stages(pipe, labels, args) for _ in range(args.repeats)]
    stage1 = statistics.median(r[0] for r in runs)
    stage2 = statistics.median(r[1] for r in runs)
    result = {"stage1_s": stage1, "stage2_s": stage2, "total_s": stage1 + stage2, "upscaler_steps_run": pipe.upscaler_steps_run}
    print(f"{platform.processor() or platform.machine()}, {args.threads} thread(s), batch 1, median of {args.repeats}")
    print(f"stage 1 (64 px, DPM-Solver++ {args.steps}):  {stage1:6.2f} s")
    print(f"stage 2 (256 px, DPM-Solver++ {args.upscaler_steps}, {pipe.upscaler_steps_run} run): {stage2:6.2f} s  "
          f"({'weights of ' + str(args.upscaler) if args.upscaler else 'random weights, demo shape'})")
    print(f"both stages:                    {stage1 + stage2:6.2f} s per 256-px image (goal: <= 30 s)")
    if not args.skip_baseline:
        forward = baseline_forward_seconds()
        result["baseline_forward_s"], result["baseline_1000_steps_s"] = forward, forward * 1000
        print(f"thesis-style baseline: seed-size SDM forward {forward:.1f} s x 1000 DDPM steps = {forward * 1000 / 3600:.1f} h "
              f"({forward * 1000 / (stage1 + stage2):.0f}x the cascade)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
