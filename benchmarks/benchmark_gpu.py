"""The device check of issues 7 and 8, for a CUDA machine (run by ``benchmarks/gpu_check.sh``).

Three measurements at the seed size (``SemanticUNet2DModel()``: 256x256, 652 M parameters), real allocations:

1. **Guided sampling memory**: peak ``torch.cuda.max_memory_allocated`` of one guided denoising step in bf16, batch 1
   and 8 (one mask x 8, and 8 distinct masks), mask features reused or recomputed per block: the figures
   ``benchmark_memory.py`` counts without allocating, measured.
2. **Offload**: ``enable_model_cpu_offload()`` and ``enable_sequential_cpu_offload()`` on a small pipeline give the
   images of the plain GPU pipeline (the mask is encoded inside ``forward``, where the hooks move the weights).
3. **Training**: steps/s and peak memory of seed-size training steps at batch 2 in bf16 autocast (AdamW, hybrid
   loss as ``training/train_sdm.py``), with and without gradient checkpointing, EMA on the GPU or kept on the
   CPU (the goal: <= 12 GB; the thesis needed 23.3 GB at batch 2 in fp16 on an A6000).

    python benchmarks/benchmark_gpu.py --json outputs/gpu.json          # about 3-5 minutes on an H100/H200
    python benchmarks/benchmark_gpu.py --device cpu --tiny              # the plumbing, on any machine
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel
from lung_diffusers.training.diffusion_loss import HybridDiffusionLoss

GIB = 2**30
TINY = dict(sample_size=32, block_out_channels=(32, 64), layers_per_block=1, attention_downsample_factors=(2,),
            attention_head_dim=16)


DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32"}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / GIB


def random_maps(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 6, (count, size, size), generator=generator)


@torch.no_grad()
def sampling_memory(config: dict, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> list[dict]:
    unet = SemanticUNet2DModel(**config).to(device, dtype).eval()
    size = unet.config.sample_size
    pipe = LungSDMPipeline(unet, DDPMScheduler(variance_type="learned_range", clip_sample=True))
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch, masks in ((1, 1), (8, 1), (8, 8)):
        for reuse in (True, False):
            labels = random_maps(masks, size, generator)
            reset_peak(device)
            started = time.perf_counter()
            # Two steps: the first encodes the mask, the second reuses it (the steady state of sampling).
            pipe(labels, num_inference_steps=2, guidance_scale=1.5, num_images_per_prompt=batch // masks,
                 output_type="latent", reuse_mask_features=reuse)
            rows.append({"batch": batch, "masks": masks, "features": "reused" if reuse else "recomputed",
                         "peak_gib": round(peak_gib(device), 2), "seconds_2_steps": round(time.perf_counter() - started, 2)})
            print(f"sampling {DTYPE_NAMES[dtype]} batch {batch} ({masks} mask(s)), features {rows[-1]['features']:10s}: "
                  f"peak {rows[-1]['peak_gib']:6.2f} GiB", flush=True)
    del pipe, unet
    return rows


@torch.no_grad()
def offload_check(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"skipped": "offload needs an accelerator"}
    torch.manual_seed(0)
    labels = random_maps(2, 32, torch.Generator().manual_seed(1))
    results = {}
    for mode in ("plain", "model", "sequential"):
        torch.manual_seed(0)  # the same weights in every mode
        pipe = LungSDMPipeline(SemanticUNet2DModel(**TINY), DDPMScheduler(variance_type="learned_range", clip_sample=True))
        pipe.set_progress_bar_config(disable=True)
        if mode == "plain":
            pipe.to(device)
        elif mode == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
        images = pipe(labels, num_inference_steps=4, guidance_scale=1.5, output_type="np",
                      generator=torch.Generator(device="cpu").manual_seed(0)).images
        results[mode] = images
    diffs = {mode: float(abs(results[mode] - results["plain"]).max()) for mode in ("model", "sequential")}
    print(f"offload: max |difference| to the plain GPU pipeline: {diffs}", flush=True)
    return {"max_abs_difference": diffs}


def training_steps(config: dict, device: torch.device, steps: int, dtype: torch.dtype = torch.bfloat16) -> list[dict]:
    rows = []
    size = config.get("sample_size", 256)
    scheduler = DDPMScheduler(variance_type="learned_range", clip_sample=True, beta_start=1e-4, beta_end=0.02)
    loss_fn = HybridDiffusionLoss(scheduler)
    generator = torch.Generator().manual_seed(0)
    for checkpointing in (False, True):
        for ema_on in ("cpu", "gpu"):
            torch.manual_seed(0)
            unet = SemanticUNet2DModel(**config).to(device)
            if checkpointing:
                unet.enable_gradient_checkpointing()
            optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
            ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, power=0.75)
            ema.to("cpu" if ema_on == "cpu" else device)
            reset_peak(device)
            times = []
            for _ in range(steps):
                clean = torch.rand(2, 1, size, size, generator=generator).mul(2).sub(1).to(device)
                noise = torch.randn(clean.shape, generator=generator).to(device)
                t = torch.randint(0, 1000, (2,), generator=generator).to(device)
                one_hot = F.one_hot(random_maps(2, size, generator), 6).permute(0, 3, 1, 2).float().to(device)
                started = time.perf_counter()
                noisy = scheduler.add_noise(clean.cpu(), noise.cpu(), t.cpu()).to(device)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    output = unet(noisy, t, one_hot).sample
                loss_fn(output, clean, noisy, t, noise).loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema_on == "cpu":
                    ema.to(device)  # diffusers' --offload_ema: on the device only for the update
                    ema.step(unet.parameters())
                    ema.to("cpu")
                else:
                    ema.step(unet.parameters())
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - started)
            steady = times[1:] or times
            rows.append({"gradient_checkpointing": checkpointing, "ema": ema_on,
                         "steps_per_s": round(len(steady) / sum(steady), 3), "peak_gib": round(peak_gib(device), 2)})
            print(f"training {DTYPE_NAMES[dtype]} batch 2, checkpointing {checkpointing!s:5s}, EMA on {ema_on}: "
                  f"{rows[-1]['steps_per_s']:.2f} steps/s, peak {rows[-1]['peak_gib']:.2f} GiB", flush=True)
            del unet, optimizer, ema
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (plumbing only)")
    parser.add_argument("--tiny", action="store_true", help="a 32-px model instead of the seed size (for a CPU run)")
    parser.add_argument("--training-steps", type=int, default=6, help="timed steps per training setting")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    parser.add_argument(
        "--dtype",
        choices=("bf16", "fp32"),
        default="bf16",
        help="precision (bf16, the point on a GPU; fp32 for a quick CPU plumbing run: bf16 convolutions are slow on CPUs "
        "without AMX)",
    )
    args = parser.parse_args(argv)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    device = torch.device(args.device)
    config = TINY if args.tiny else {}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, model: {'tiny' if args.tiny else 'seed size (652 M)'}")
    results = {
        "device": name,
        "dtype": args.dtype,
        "sampling": sampling_memory(config, device, dtype),
        "offload": offload_check(device),
        "training": training_steps(config, device, args.training_steps, dtype),
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
