"""CPU baseline for SemanticUNet2DModel and LungSDMPipeline (a benchmark, not a test).

Prints, with random weights (timing does not depend on training):
* forward time at 64x64 (64 base channels) and at the thesis' 256x256 size (256 channels, attention at
  32/16/8 px with 64 channels per head);
* the per-step speed-up from reusing the mask features (``encode_segmentation`` once, then
  ``segmentation_features=`` at every step) against recomputing them, at both sizes, and the memory
  those features hold per label map;
* sampling time per image at 64x64: 20-step DPM-Solver++ against 1000-step DDPM (with ``--quick``, DDPM runs
  20 steps and its 1000-step time is extrapolated from the per-step cost, and labelled so);
* with ``--compile``: torch.compile (inductor) of the 64x64 model, fed a label map and fed precomputed
  features: compile time and speed-up (several minutes of compiling on a 2-core CPU).

    python benchmarks/benchmark_sdm.py [--threads 2] [--repeats 5] [--quick] [--skip-seed-size] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel

SMALL = "64x64, 64 ch"
SEED = "256x256 seed (256 ch, attn 32/16/8)"
CONFIGS = {
    SMALL: dict(
        sample_size=64,
        block_out_channels=(64, 128, 128),  # a CPU-trainable size
        layers_per_block=1,
        attention_downsample_factors=(4,),  # 16 px
        attention_head_dim=32,
    ),
    SEED: dict(
        sample_size=256,
        block_out_channels=(256, 256, 512, 512, 1024, 1024),
        attention_downsample_factors=(8, 16, 32),
        attention_head_dim=64,
    ),
}
DDPM_STEPS = 1000  # SDM's (guided-diffusion's) sampler
QUICK_DDPM_STEPS = 20


def timed(fn, repeats: int, warmup: bool = True) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after one warm-up run."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lung_like_mask(size: int) -> np.ndarray:
    """A body ellipse with two lungs, a trachea and a nodule, so every class is present."""
    yy, xx = np.mgrid[:size, :size] / size
    mask = np.zeros((size, size), np.int64)
    mask[((yy - 0.5) / 0.42) ** 2 + ((xx - 0.5) / 0.48) ** 2 < 1] = 1
    mask[((yy - 0.5) / 0.3) ** 2 + ((xx - 0.3) / 0.14) ** 2 < 1] = 3
    mask[((yy - 0.5) / 0.3) ** 2 + ((xx - 0.7) / 0.14) ** 2 < 1] = 2
    mask[((yy - 0.3) / 0.04) ** 2 + ((xx - 0.5) / 0.04) ** 2 < 1] = 4
    mask[((yy - 0.55) / 0.03) ** 2 + ((xx - 0.72) / 0.03) ** 2 < 1] = 5
    return mask


def model_inputs(config: dict):
    size = config["sample_size"]
    return torch.randn(1, 1, size, size), torch.from_numpy(lung_like_mask(size))[None]


def benchmark_model(name: str, config: dict, repeats: int, warmup: bool) -> dict:
    torch.manual_seed(0)
    unet = SemanticUNet2DModel(**config).eval()
    sample, labels = model_inputs(config)
    with torch.no_grad():
        features = unet.encode_segmentation(labels)
        recompute = timed(lambda: unet(sample, 500, labels), repeats, warmup)
        reuse = timed(lambda: unet(sample, 500, segmentation_features=features), repeats, warmup)
    result = {
        "parameters_millions": sum(p.numel() for p in unet.parameters()) / 1e6,
        "mask_features_mib_per_map": features.nbytes / 2**20,
        "forward_s": recompute,
        "forward_reusing_mask_features_s": reuse,
        "mask_feature_reuse_speedup": recompute / reuse,
    }
    print(
        f"{name:38s} {result['parameters_millions']:8.1f} M params | forward {recompute:8.3f} s | "
        f"reusing mask features {reuse:8.3f} s | speed-up x{recompute / reuse:.2f} | "
        f"features {features.nbytes / 2**20:.0f} MiB per map",
        flush=True,
    )
    return result


def benchmark_sampling(config: dict, solver_steps: int, ddpm_steps: int) -> dict:
    torch.manual_seed(0)
    pipe = LungSDMPipeline(SemanticUNet2DModel(**config).eval(), DDPMScheduler(variance_type="learned_range"))
    pipe.set_progress_bar_config(disable=True)
    mask = lung_like_mask(config["sample_size"])
    runs = {}
    for label, scheduler, steps in (
        ("DPM-Solver++", DPMSolverMultistepScheduler.from_config(pipe.scheduler.config), solver_steps),
        ("DDPM", DDPMScheduler.from_config(pipe.scheduler.config), ddpm_steps),
    ):
        pipe.scheduler = scheduler
        start = time.perf_counter()
        pipe(mask, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np")
        runs[label] = (steps, time.perf_counter() - start)
    solver_s = runs["DPM-Solver++"][1]
    steps, ddpm_s = runs["DDPM"]
    extrapolated = steps != DDPM_STEPS
    ddpm_1000_s = ddpm_s / steps * DDPM_STEPS
    size = config["sample_size"]
    print(f"sampling {size}x{size}, DPM-Solver++ {solver_steps} steps   {solver_s:8.2f} s per image", flush=True)
    if extrapolated:
        print(
            f"sampling {size}x{size}, DDPM {DDPM_STEPS} steps         {ddpm_1000_s:8.2f} s per image, EXTRAPOLATED "
            f"from {steps} steps ({ddpm_s / steps:.3f} s per step; DPM-Solver++: {solver_s / solver_steps:.3f} s per step)"
        )
    else:
        print(f"sampling {size}x{size}, DDPM {DDPM_STEPS} steps         {ddpm_s:8.2f} s per image")
    ratio = ddpm_1000_s / solver_s
    print(
        f"DPM-Solver++ ({solver_steps} steps) is x{ratio:.1f} faster than DDPM ({DDPM_STEPS} steps)"
        + (" (extrapolated)" if extrapolated else "")
    )
    return {
        "dpm_solver_steps": solver_steps,
        "dpm_solver_s": solver_s,
        "ddpm_steps_run": steps,
        "ddpm_steps_run_s": ddpm_s,
        "ddpm_1000_steps_s": ddpm_1000_s,
        "ddpm_1000_extrapolated": extrapolated,
        "dpm_solver_speedup": ratio,
    }


def benchmark_compile(config: dict, repeats: int) -> dict:
    """Eager against inductor, fed a label map (graph breaks allowed) and fed precomputed features."""
    torch.manual_seed(0)
    unet = SemanticUNet2DModel(**config).eval()
    sample, labels = model_inputs(config)
    results = {}
    with torch.no_grad():
        features = unet.encode_segmentation(labels)
        for label, kwargs in (
            ("label map", dict(segmentation=labels)),
            ("precomputed features", dict(segmentation_features=features)),
        ):
            eager = timed(lambda kw=kwargs: unet(sample, 500, **kw), repeats)
            torch._dynamo.reset()
            compiled = torch.compile(unet, fullgraph=False)
            start = time.perf_counter()
            compiled(sample, 500, **kwargs)
            compile_s = time.perf_counter() - start
            fast = timed(lambda f=compiled, kw=kwargs: f(sample, 500, **kw), repeats)
            results[label] = {"eager_s": eager, "compiled_s": fast, "compile_s": compile_s, "speedup": eager / fast}
            print(
                f"torch.compile, {label:21s}: compile {compile_s:7.1f} s | eager {eager:.3f} s | compiled {fast:.3f} s "
                f"| speed-up x{eager / fast:.2f}",
                flush=True,
            )
    torch._dynamo.reset()
    print("(compile times: the first includes inductor's start-up; later ones reuse its kernel cache in /tmp)")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed forwards per figure at 64x64, after one warm-up; the seed size runs 1 (default: 5; --quick: 2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"2 repeats, no warm-up at the seed size, DDPM run for {QUICK_DDPM_STEPS} steps and its "
        f"{DDPM_STEPS}-step time extrapolated from the per-step cost",
    )
    parser.add_argument(
        "--skip-seed-size", action="store_true", help="skip the 256x256 seed-size model (20-40 s a forward on 2 cores)"
    )
    parser.add_argument(
        "--sampling-steps", type=int, default=20, help="DPM-Solver++ steps per image (default: %(default)s)"
    )
    parser.add_argument(
        "--ddpm-steps",
        type=int,
        help=f"DDPM steps actually run; fewer than {DDPM_STEPS} are extrapolated to {DDPM_STEPS} "
        f"(default: {DDPM_STEPS}; --quick: {QUICK_DDPM_STEPS})",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile (inductor) of the 64x64 model; compiling takes minutes per variant",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    ddpm_steps = args.ddpm_steps or (QUICK_DDPM_STEPS if args.quick else DDPM_STEPS)
    if not 1 <= ddpm_steps <= DDPM_STEPS or args.sampling_steps < 1 or repeats < 1:
        parser.error(f"--ddpm-steps must be in [1, {DDPM_STEPS}]; --sampling-steps and --repeats at least 1")
    torch.set_num_threads(args.threads)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, float32, "
        f"batch 1; load average {load} ({os.cpu_count()} CPUs)"
    )

    results = {"threads": args.threads, "torch": torch.__version__, "load_average": load, "models": {}}
    for name, config in CONFIGS.items():
        is_seed = config["sample_size"] == 256
        if args.skip_seed_size and is_seed:
            continue
        results["models"][name] = benchmark_model(
            name, config, 1 if is_seed else repeats, warmup=not (is_seed and args.quick)
        )
    results["sampling_64x64"] = benchmark_sampling(CONFIGS[SMALL], args.sampling_steps, ddpm_steps)
    if args.compile:
        results["compile_64x64"] = benchmark_compile(CONFIGS[SMALL], repeats)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
