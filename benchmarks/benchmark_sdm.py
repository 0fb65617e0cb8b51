"""CPU baseline for SemanticUNet2DModel and LungSDMPipeline (a benchmark, not a test).

Prints, with random weights (timing does not depend on training):
* forward time at 64x64 (64 base channels) and at the thesis' 256x256 size (256 channels, attention at
  32/16/8 px with 64 channels per head);
* the per-step speed-up from reusing the mask features (``encode_segmentation`` once, then
  ``segmentation_features=`` at every step) against recomputing them, at both sizes, and the memory
  those features hold per image;
* sampling time per image at 64x64: 20-step DPM-Solver++ against 1000-step DDPM.

    python benchmarks/benchmark_sdm.py [--threads 2] [--skip-seed-size] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel

CONFIGS = {
    "64x64, 64 ch": dict(
        sample_size=64,
        block_out_channels=(64, 128, 128),  # a CPU-trainable size
        layers_per_block=1,
        attention_downsample_factors=(4,),  # 16 px
        attention_head_dim=32,
    ),
    "256x256 seed (256 ch, attn 32/16/8)": dict(
        sample_size=256,
        block_out_channels=(256, 256, 512, 512, 1024, 1024),
        attention_downsample_factors=(8, 16, 32),
        attention_head_dim=64,
    ),
}


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after one warm-up run."""
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


def benchmark_model(name: str, config: dict, repeats: int) -> dict:
    torch.manual_seed(0)
    unet = SemanticUNet2DModel(**config).eval()
    size = config["sample_size"]
    sample = torch.randn(1, 1, size, size)
    labels = torch.from_numpy(lung_like_mask(size))[None]
    with torch.no_grad():
        features = unet.encode_segmentation(labels)
        recompute = timed(lambda: unet(sample, 500, labels), repeats)
        reuse = timed(lambda: unet(sample, 500, segmentation_features=features), repeats)
    feature_bytes = sum(t.numel() * t.element_size() for entry in features for t in entry)
    result = {
        "parameters_millions": sum(p.numel() for p in unet.parameters()) / 1e6,
        "mask_features_mib_per_image": feature_bytes / 2**20,
        "forward_s": recompute,
        "forward_reusing_mask_features_s": reuse,
        "mask_feature_reuse_speedup": recompute / reuse,
    }
    print(
        f"{name:38s} {result['parameters_millions']:8.1f} M params | forward {recompute:8.3f} s | "
        f"reusing mask features {reuse:8.3f} s | speed-up x{recompute / reuse:.2f} | "
        f"features {feature_bytes / 2**20:.0f} MiB per image",
        flush=True,
    )
    return result


def benchmark_sampling(config: dict) -> dict:
    torch.manual_seed(0)
    pipe = LungSDMPipeline(SemanticUNet2DModel(**config).eval(), DDPMScheduler(variance_type="learned_range"))
    pipe.set_progress_bar_config(disable=True)
    mask = lung_like_mask(config["sample_size"])
    results = {}
    for label, scheduler, steps in (
        ("DPM-Solver++ 20 steps", DPMSolverMultistepScheduler.from_config(pipe.scheduler.config), 20),
        ("DDPM 1000 steps", DDPMScheduler.from_config(pipe.scheduler.config), 1000),
    ):
        pipe.scheduler = scheduler
        start = time.perf_counter()
        pipe(mask, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np")
        results[label] = time.perf_counter() - start
        print(f"sampling 64x64, {label:24s} {results[label]:8.2f} s per image", flush=True)
    ratio = results["DDPM 1000 steps"] / results["DPM-Solver++ 20 steps"]
    print(f"DPM-Solver++ (20 steps) is x{ratio:.1f} faster than DDPM (1000 steps)")
    return {"seconds_per_image": results, "dpm_solver_speedup": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards at 64x64 (the seed size runs 1)")
    parser.add_argument("--skip-seed-size", action="store_true", help="skip the 256x256 seed-size model (~20 s a forward)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, float32, batch 1")

    results = {"threads": args.threads, "torch": torch.__version__, "models": {}}
    for name, config in CONFIGS.items():
        if args.skip_seed_size and config["sample_size"] == 256:
            continue
        results["models"][name] = benchmark_model(name, config, args.repeats if config["sample_size"] == 64 else 1)
    results["sampling_64x64"] = benchmark_sampling(CONFIGS["64x64, 64 ch"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
