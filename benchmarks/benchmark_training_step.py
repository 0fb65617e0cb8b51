"""Training-step speed of SemanticUNet2DModel against a diffusers UNet2DModel of the same shape (issue 8).

One interleaved run on the CPU (a benchmark, not a test): each round times one training step (forward, MSE loss,
backward, AdamW step) of every model, so a load change on the machine hits all of them alike. It reports the
median step time and the median of the per-round SDM / UNet2DModel ratios, per precision (the project's goal:
at most 1.5).

Shape (the demo config of ``training/train_sdm.py``): 64x64, batch 8, widths 32/64/128, one res block per level,
attention at 16 px (downsample factor 4) with 32 channels per head, learned variance (2 output channels); SDM with
``spade_hidden_channels=32``. SDM rows: ``"conv"`` resampling (the demo config) and SDM's own ``"resnet"``
resampling; UNet2DModel: ``DownBlock2D`` / ``AttnDownBlock2D`` with ``resnet_time_scale_shift="scale_shift"``.
Then it counts where the SDM's extra work goes (FLOPs per module: the SPADE label-map convs) and times that
branch (``encode_segmentation`` forward + backward) inside the same rounds.

    python benchmarks/benchmark_training_step.py [--threads 2] [--repeats 5] [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch.utils.flop_counter import FlopCounterMode

from lung_diffusers import SemanticUNet2DModel

NUM_CLASSES = 6
GOAL_RATIO = 1.5
SPADE_CONVS = ("mlp_shared", "mlp_gamma", "mlp_beta")


def sdm(size: int, resample: str) -> SemanticUNet2DModel:
    return SemanticUNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=2,
        num_classes=NUM_CLASSES,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        attention_downsample_factors=(4,),
        attention_head_dim=32,
        spade_hidden_channels=32,
        downsample_type=resample,
        upsample_type=resample,
    )


def unet2d(size: int) -> UNet2DModel:
    return UNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=2,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
        resnet_time_scale_shift="scale_shift",
        norm_eps=1e-5,  # SDM's (guided-diffusion's) epsilon
    )


MODELS = {
    "SDM, conv resampling": lambda size: sdm(size, "conv"),
    "SDM, resnet resampling": lambda size: sdm(size, "resnet"),
    "UNet2DModel": unet2d,
}
BASELINE = "UNet2DModel"


@dataclass
class Batch:
    sample: torch.Tensor
    timesteps: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor

    def to(self, memory_format: torch.memory_format) -> Batch:
        return Batch(
            self.sample.contiguous(memory_format=memory_format),
            self.timesteps,
            self.labels,
            self.target.contiguous(memory_format=memory_format),
        )


def make_batch(batch_size: int, size: int) -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(
        sample=torch.randn(batch_size, 1, size, size, generator=generator),
        timesteps=torch.randint(0, 1000, (batch_size,), generator=generator),
        labels=torch.randint(0, NUM_CLASSES, (batch_size, size, size), generator=generator),
        target=torch.randn(batch_size, 2, size, size, generator=generator),
    )


def forward(model, batch: Batch) -> torch.Tensor:
    if isinstance(model, SemanticUNet2DModel):
        return model(batch.sample, batch.timesteps, segmentation=batch.labels).sample
    return model(batch.sample, batch.timesteps).sample


class TrainingStep:
    """One model with its own AdamW, in one precision and memory format; calling it runs one step."""

    def __init__(self, model, batch: Batch, bf16: bool, channels_last: bool):
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=memory_format).train()
        self.batch = batch.to(memory_format)
        self.bf16 = bf16
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)

    def __call__(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            prediction = forward(self.model, self.batch)
        F.mse_loss(prediction.float(), self.batch.target).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class SpadeBranchStep:
    """Forward and backward of the SDM's label-map branch alone (``encode_segmentation``): its share of a step."""

    def __init__(self, model: SemanticUNet2DModel, batch: Batch, bf16: bool):
        self.model, self.batch, self.bf16 = model.train(), batch, bf16

    def __call__(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            features = self.model.encode_segmentation(self.batch.labels)
        outputs = [t for entry in features.modulations for t in entry]
        torch.autograd.backward(outputs, [torch.ones_like(t) for t in outputs])
        self.model.zero_grad(set_to_none=True)


def cpu_features() -> str:
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    have = [f for f in wanted if f in flags]
    missing = [f for f in wanted if f not in flags]
    note = (
        "bf16 matrix work can use AMX"
        if "amx_bf16" in flags
        else "bf16 has AVX512-BF16 dot products"
        if "avx512_bf16" in flags
        else "no bf16 instructions: bf16 autocast falls back to slow kernels"
    )
    return (
        f"{cpu_model_name()}; flags: {' '.join(have) or 'none of ' + ', '.join(wanted)}"
        f"{' (lacks ' + ', '.join(missing) + ')' if missing else ''}; torch CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}: {note}"
    )


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def interleaved_times(steps: dict, warmup: int, repeats: int) -> dict:
    """Seconds per call of each entry, timed round-robin so that load changes hit all entries alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict = {name: [] for name in steps}
    for round_ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
        print(f"round {round_ + 1}/{repeats} done", file=sys.stderr, flush=True)
    return times


def count_flops(model, size: int) -> dict[str, int]:
    """FLOPs of one image: ``step`` (forward + backward), ``forward``, and each SPADE conv kind's forward share.

    Counted by torch's FlopCounterMode (convolutions and matrix products; elementwise work is not counted, nor is
    the CPU flash-attention kernel, under 1% here). Per-module shares come from the forward alone: the counter
    cannot attribute backward work to modules reliably.
    """
    model = copy.deepcopy(model).train()
    batch = make_batch(1, size)
    with FlopCounterMode(display=False) as counter:
        forward(model, batch).float().square().mean().backward()
    step = sum(counter.get_flop_counts()["Global"].values())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward(model, batch)
    counts = counter.get_flop_counts()
    flops = {"step": step, "forward": sum(counts["Global"].values())}
    for conv in SPADE_CONVS:
        flops[conv] = sum(sum(ops.values()) for name, ops in counts.items() if name.endswith("." + conv))
    return flops


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, help="timed rounds, each timing one step of every model (default: 5; --quick: 2)"
    )
    parser.add_argument("--warmup", type=int, help="untimed rounds before them (default: 2; --quick: 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default: %(default)s)")
    parser.add_argument(
        "--resolution", type=int, default=64, help="image height and width, a multiple of 4 (default: %(default)s)"
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=("fp32", "bf16"),
        default=["fp32", "bf16"],
        help="fp32 and/or bf16 autocast (default: fp32 bf16)",
    )
    parser.add_argument(
        "--skip-channels-last", action="store_true", help="time the default memory format only (halves the run)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds and no channels_last: a rough figure in about a minute",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.warmup = (1 if args.quick else 2) if args.warmup is None else args.warmup
    args.skip_channels_last = args.skip_channels_last or args.quick
    if args.repeats < 1 or args.warmup < 0 or args.batch_size < 1 or args.resolution % 4:
        parser.error(
            "--repeats and --batch-size must be at least 1, --warmup at least 0, --resolution a multiple of 4"
        )
    torch.set_num_threads(args.threads)
    size = args.resolution

    print(f"torch {torch.__version__}, {args.threads} threads; {cpu_features()}")
    print(f"machine: {os.cpu_count()} CPUs, {load_average()} at the start")
    if args.threads > 1 and os.getloadavg()[0] > 1 + os.cpu_count() - args.threads:
        print(
            "note: other processes keep the CPUs busy; several threads then wait on each other at every operator "
            "(steps ran 2-10x slower and erratic here): --threads 1 gives steadier numbers"
        )
    print(
        f"training step = forward + MSE + backward + AdamW; {size}x{size}, batch {args.batch_size}, widths 32/64/128, "
        f"1 res block per level, attention at {size // 4} px; median of {args.repeats} interleaved rounds after "
        f"{args.warmup} warm-up\n"
    )

    torch.manual_seed(0)
    base_models = {name: build(size) for name, build in MODELS.items()}
    params = {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in base_models.items()}
    batch = make_batch(args.batch_size, size)
    formats = ("contiguous",) if args.skip_channels_last else ("contiguous", "channels_last")
    steps = {}
    for precision in args.precision:
        for memory_format in formats:
            for name, model in base_models.items():
                steps[(precision, memory_format, name)] = TrainingStep(
                    copy.deepcopy(model), batch, precision == "bf16", memory_format == "channels_last"
                )
        steps[(precision, "branch", "SDM label-map branch")] = SpadeBranchStep(
            copy.deepcopy(base_models["SDM, conv resampling"]), batch, precision == "bf16"
        )
    times = interleaved_times(steps, args.warmup, args.repeats)
    medians = {key: statistics.median(values) for key, values in times.items()}

    def ratio(a: tuple, b: tuple) -> float:
        # Median of the per-round ratios: the two steps of a round ran seconds apart, under the same load.
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    print(
        "| precision | memory format | model | parameters | s / step (median) | min-max | steps / s | "
        "vs UNet2DModel (median of per-round ratios) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = {"threads": args.threads, "torch": torch.__version__, "cpu": cpu_features(), "rows": []}
    for key, seconds in medians.items():
        precision, memory_format, name = key
        if memory_format == "branch":
            continue
        versus = ratio(key, (precision, memory_format, BASELINE))
        print(
            f"| {precision} | {memory_format} | {name} | {params[name]:.2f} M | {seconds:.3f} | "
            f"{min(times[key]):.2f}-{max(times[key]):.2f} | {1 / seconds:.2f} | x{versus:.2f} |"
        )
        results["rows"].append(
            dict(
                precision=precision,
                memory_format=memory_format,
                model=name,
                seconds=seconds,
                ratio=versus,
                times=times[key],
            )
        )

    print()
    for precision in args.precision:
        conv = ratio((precision, "contiguous", "SDM, conv resampling"), (precision, "contiguous", BASELINE))
        resnet = ratio((precision, "contiguous", "SDM, resnet resampling"), (precision, "contiguous", BASELINE))
        fastest = min(times[(precision, "contiguous", "SDM, conv resampling")]) / min(
            times[(precision, "contiguous", BASELINE)]
        )
        verdict = "meets" if conv <= GOAL_RATIO else "misses"
        print(
            f"{precision}: SDM / UNet2DModel = x{conv:.2f} with conv resampling ({verdict} the x{GOAL_RATIO} goal; "
            f"fastest steps: x{fastest:.2f}), x{resnet:.2f} with resnet resampling"
        )
        if "channels_last" in formats:
            for name in MODELS:
                gain = ratio((precision, "contiguous", name), (precision, "channels_last", name))
                word = "faster" if gain > 1.05 else "slower" if gain < 0.95 else "no clear change"
                print(f"  channels_last, {name}: x{gain:.2f} ({word})")
    if "fp32" in args.precision and "bf16" in args.precision:
        for name in MODELS:
            gain = ratio(("fp32", "contiguous", name), ("bf16", "contiguous", name))
            print(f"bf16 autocast against fp32, {name}: x{gain:.2f} ({'faster' if gain > 1 else 'slower'})")

    print("\nWhere the SDM's extra time goes (SDM with conv resampling):")
    sdm_flops = count_flops(base_models["SDM, conv resampling"], size)
    resnet_flops = count_flops(base_models["SDM, resnet resampling"], size)
    base_flops = count_flops(base_models[BASELINE], size)
    spade = sum(sdm_flops[c] for c in SPADE_CONVS)
    share = {c: 100 * sdm_flops[c] / sdm_flops["forward"] for c in SPADE_CONVS}
    print(
        f"  FLOPs per image, forward + backward: SDM {sdm_flops['step'] / 1e9:.2f} G, UNet2DModel "
        f"{base_flops['step'] / 1e9:.2f} G (x{sdm_flops['step'] / base_flops['step']:.2f}); forward: SDM "
        f"{sdm_flops['forward'] / 1e9:.2f} G, UNet2DModel {base_flops['forward'] / 1e9:.2f} G "
        f"(x{sdm_flops['forward'] / base_flops['forward']:.2f}); SDM with resnet resampling "
        f"{resnet_flops['step'] / 1e9:.2f} G (x{resnet_flops['step'] / base_flops['step']:.2f})"
    )
    print(
        f"  SPADE label-map convs: {100 * spade / sdm_flops['forward']:.0f}% of the SDM's forward FLOPs "
        f"(gamma {share['mlp_gamma']:.0f}%, beta {share['mlp_beta']:.0f}%, shared {share['mlp_shared']:.0f}%); "
        f"the rest is x{(sdm_flops['forward'] - spade) / base_flops['forward']:.2f} the UNet2DModel's forward"
    )
    for precision in args.precision:
        branch = medians[(precision, "branch", "SDM label-map branch")]
        sdm_step = medians[(precision, "contiguous", "SDM, conv resampling")]
        extra = sdm_step - medians[(precision, "contiguous", BASELINE)]
        print(
            f"  {precision}: the label-map branch alone (encode_segmentation forward + backward) takes {branch:.3f} s "
            f"= {100 * branch / sdm_step:.0f}% of the SDM step; the SDM step takes {extra:+.3f} s against UNet2DModel"
        )
    print(f"\n{load_average()} at the end")
    results.update(
        flops={"sdm": sdm_flops, "sdm_resnet": resnet_flops, "unet2d": base_flops},
        times={" / ".join(k): v for k, v in times.items()},
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
