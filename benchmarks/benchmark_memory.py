"""Peak memory of one guided denoising step of the seed-size SDM, counted without allocating (a benchmark, not a test).

The model (``SemanticUNet2DModel()`` defaults: 256x256, 256 base channels, attention at 32/16/8 px, ~652 M
parameters) and its inputs are fake tensors (``FakeTensorMode``): every operator runs its shape logic and
nothing is allocated. A dispatch mode counts the bytes of the live tensor storages and their peak.

One step is what ``LungSDMPipeline`` does per denoising step with guidance: the weights are resident, the mask
features of the distinct maps (the masks plus one null map) are held across steps, and the U-Net runs on 2B
images (conditional + null) and the two noise predictions are combined. Compared:

* reuse: the features held, ``forward(..., segmentation_features=)`` (the pipeline's choice when they take at
  most half the free memory);
* recompute: ``forward(..., segmentation=maps, segmentation_repeats=...)`` at each step
  (``reuse_mask_features=False``): each SPADE block encodes the maps when it runs, so one block's features live
  at a time;
* old design: the features copied per image (2B maps) and held.

A cross-check runs a small model for real on the CPU and compares the count with ``SegmentationFeatures.nbytes``
and with the allocations torch's profiler records.

    python benchmarks/benchmark_memory.py [--batch 1 8] [--dtype bf16 fp32] [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import weakref

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lung_diffusers import SemanticUNet2DModel

GIB = 2**30
MIB = 2**20
# The project's goal (issue 7): batch 8 with guidance, bf16, on a 16 GiB GPU.
GOAL_BYTES = 16 * GIB
GUIDANCE_SCALE = 1.5
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
SEED_CONFIG: dict = {}  # the model's defaults are the thesis' (seed) size
SMALL_CONFIG = dict(  # the cross-check's model, small enough to run for real on a CPU in a second
    sample_size=32,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    attention_downsample_factors=(2,),
    attention_head_dim=32,
    spade_hidden_channels=32,
)


class LiveStorageCounter(TorchDispatchMode):
    """Counts the bytes of live tensor storages (and their peak) for every tensor an operator returns.

    A storage is counted once however many views share it, and uncounted when it is freed (a weakref
    finalizer on the storage). Tensors made before the mode was entered are added with :meth:`track`.
    """

    def __init__(self):
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def track(self, tensor) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        key = storage._cdata  # the storage's identity; its Python object may be recreated
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and isinstance(args[0], FakeTensor):
            # A data-dependent Python bool: the model's finiteness check of the one-hot map. Fake tensors have
            # no data; the maps built here are finite.
            return True
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            self.track(tensor)
        return out


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    # Fake parameters cannot be cast with .to() (it swaps tensors); build them in the right dtype instead.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def one_hot_maps(unet: SemanticUNet2DModel, batch: int, distinct: bool, dtype: torch.dtype):
    """One-hot maps and their repeats as the pipeline builds them: the distinct masks, then one null map for all."""
    k, size = unet.config.num_classes, unet.config.sample_size
    num_masks = batch if distinct else 1
    maps = torch.zeros(num_masks + 1, k, size, size, dtype=dtype)
    maps[:num_masks, 1] = 1  # any valid one-hot; the null map stays all zero
    per_mask = 1 if distinct else batch
    return maps, (per_mask,) * num_masks + (batch,)


def guided_step(unet: SemanticUNet2DModel, latents: torch.Tensor, timestep: int, **conditioning) -> torch.Tensor:
    """The model part of one guided step of ``LungSDMPipeline``: U-Net on cond + null, then the guidance."""
    channels = latents.shape[1]
    out = unet(torch.cat([latents] * 2), timestep, **conditioning).sample
    noise_cond, noise_null = out[:, :channels].chunk(2)
    noise = noise_null + GUIDANCE_SCALE * (noise_cond - noise_null)
    variance = out[: latents.shape[0], channels:]
    return torch.cat([noise, variance], dim=1)


def measure_step(unet: SemanticUNet2DModel, batch: int, distinct: bool, mode: str, fake_mode=None) -> dict:
    """Bytes of weights, held mask features and the step's peak above them.

    ``mode``: ``reuse`` (features held), ``recompute`` (encoded block by block inside forward) or ``per-image``
    (the old design: one copy per image, held).
    """
    dtype, size = unet.dtype, unet.config.sample_size
    counter = LiveStorageCounter()
    with fake_mode or contextlib.nullcontext(), torch.no_grad(), counter:
        for parameter in unet.parameters():
            counter.track(parameter)
        weights = counter.current
        latents = torch.randn(batch, unet.config.in_channels, size, size, dtype=dtype)
        maps, repeats = one_hot_maps(unet, batch, distinct, dtype)
        if mode == "per-image":
            maps, repeats = torch.cat([maps[i : i + 1].expand(r, -1, -1, -1) for i, r in enumerate(repeats)]), None
        inputs = counter.current - weights
        features_nbytes = None
        if mode == "recompute":
            conditioning = dict(segmentation=maps, segmentation_repeats=repeats)
        else:
            features = unet.encode_segmentation(maps, repeats)
            features_nbytes = features.nbytes
            conditioning = dict(segmentation_features=features)
        held = counter.current - weights - inputs
        counter.reset_peak()
        result = guided_step(unet, latents, 500, **conditioning)
        peak = counter.peak
        del result, conditioning
    num_maps = maps.shape[0]
    return {
        "weights": weights,
        "held_features": held,
        "inputs": inputs,
        "activations": peak - weights - held - inputs,
        "total": peak,
        "maps": num_maps,
        "features_nbytes": features_nbytes,
        "feature_bytes_formula": unet.segmentation_feature_bytes(size, size, num_maps, dtype),
    }


def fake_unet(config: dict, dtype: torch.dtype, fake_mode: FakeTensorMode) -> SemanticUNet2DModel:
    with fake_mode, default_dtype(dtype):
        return SemanticUNet2DModel(**config).eval()


# ---------------------------------------------------------------------------------------------- cross-check


def profiled_peak(fn) -> int:
    """Peak bytes allocated through torch's CPU allocator while ``fn`` runs (profiler allocation events)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    current = peak = 0
    for _, size in sorted(events):  # frees are negative sizes
        current += size
        peak = max(peak, current)
    return peak


def cross_check(batch: int) -> dict:
    """Count a small model's step with fake tensors, then run it for real and compare."""
    threads = torch.get_num_threads()
    # Tiny ops: with two OpenMP threads on a busy 2-core machine this ran 15x slower than with one.
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        real = SemanticUNet2DModel(**SMALL_CONFIG).eval()
        fake_mode = FakeTensorMode()
        fake = fake_unet(SMALL_CONFIG, torch.float32, fake_mode)
        size = SMALL_CONFIG["sample_size"]
        rows = {}
        for mode in ("reuse", "recompute"):
            counted = measure_step(fake, batch, True, mode, fake_mode)
            dispatched = measure_step(real, batch, True, mode)  # the same counter on real tensors
            latents = torch.randn(batch, 1, size, size)
            maps, repeats = one_hot_maps(real, batch, True, torch.float32)
            with torch.no_grad():
                features = real.encode_segmentation(maps, repeats)
                if mode == "recompute":
                    conditioning = dict(segmentation=maps, segmentation_repeats=repeats)
                else:
                    conditioning = dict(segmentation_features=features)
                guided_step(real, latents, 500, **conditioning)  # warm-up: one-time allocations stay out of the peak
                allocated = profiled_peak(lambda c=conditioning, x=latents: guided_step(real, x, 500, **c))
            rows[mode] = {
                "fake_step_peak": counted["activations"],
                "real_counted_step_peak": dispatched["activations"],
                "real_allocator_step_peak": allocated,
                "fake_held_features": counted["held_features"],
                "real_features_nbytes": features.nbytes,
                "feature_bytes_formula": real.segmentation_feature_bytes(size, size, maps.shape[0], torch.float32),
            }
    finally:
        torch.set_num_threads(threads)
    return rows


def mem_tracker_total(unet: SemanticUNet2DModel, batch: int, fake_mode: FakeTensorMode) -> int | None:
    """Peak of the same reuse step counted by torch's own ``MemTracker`` (a private API; None if unavailable)."""
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError:
        return None

    class AnswerScalars(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                return True
            return func(*args, **(kwargs or {}))

    size, dtype = unet.config.sample_size, unet.dtype
    with fake_mode, torch.no_grad(), AnswerScalars():
        latents = torch.randn(batch, unet.config.in_channels, size, size, dtype=dtype)
        maps, repeats = one_hot_maps(unet, batch, True, dtype)
        features = unet.encode_segmentation(maps, repeats)
        tracker = MemTracker()
        tracker.track_external(unet, latents, maps, *(t for entry in features.modulations for t in entry))
        with tracker:
            guided_step(unet, latents, 500, segmentation_features=features)
        return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


# ---------------------------------------------------------------------------------------------- report


def gib(value: int) -> str:
    return f"{value / GIB:.2f}"


MODE_LABELS = {
    "reuse": "reused (held across steps)",
    "recompute": "recomputed in each forward",
    "per-image": "old design: copied per image",
}


def print_table(rows: list[dict]) -> None:
    print(
        "| dtype | batch | masks | mask features | maps held | weights GiB | held features GiB | "
        "step peak above them GiB | peak GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dtype']} | {r['batch']} | {r['masks']} | {MODE_LABELS[r['mode']]} | {r['maps_held']} | "
            f"{gib(r['weights'])} | {gib(r['held_features'])} | {gib(r['activations'] + r['inputs'])} | "
            f"{gib(r['total'])} |",
            flush=True,
        )


def verdict(rows: list[dict]) -> list[str]:
    goal = {r["mode"]: r for r in rows if r["dtype"] == "bf16" and r["batch"] == 8 and r["distinct"]}
    if "reuse" not in goal:
        return []
    peak = goal["reuse"]["total"]
    spare = GOAL_BYTES - peak
    if spare >= GIB:
        outcome = f"meets the goal with {spare / GIB:.1f} GiB to spare"
    elif spare >= 0:
        outcome = (
            f"meets it on paper only: {spare / GIB:.2f} GiB is left for the CUDA context and allocator slack "
            "(typically 0.5-1 GiB)"
        )
    else:
        outcome = f"misses it by {-spare / GIB:.2f} GiB"
    lines = [
        f"Verdict: batch 8 with guidance in bf16 (8 distinct masks) peaks at {peak / GIB:.2f} GiB of tensors "
        f"against the 16 GiB goal: {outcome}."
    ]
    if "recompute" in goal:
        lines.append(
            f"With reuse_mask_features=False (each block encodes the masks when it runs) the same step peaks at "
            f"{goal['recompute']['total'] / GIB:.2f} GiB, at the price of the mask branch at every step."
        )
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Counts tensor storages only: allocator caching and fragmentation, cuDNN workspaces and the CUDA "
        "context come on top on a GPU.",
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[1, 8], metavar="B", help="images per call (default: 1 8)"
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=sorted(DTYPES),
        default=["bf16", "fp32"],
        help="precisions to count (default: bf16 fp32)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="bf16, the largest batch with distinct masks, reuse and recompute only; no MemTracker check",
    )
    parser.add_argument("--skip-cross-check", action="store_true", help="skip the real run of a small model")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    batches = [max(args.batch)] if args.quick else sorted(set(args.batch))
    dtypes = ["bf16"] if args.quick else args.dtype

    rows = []
    for dtype_name in dtypes:
        fake_mode = FakeTensorMode()
        unet = fake_unet(SEED_CONFIG, DTYPES[dtype_name], fake_mode)
        params_m = sum(p.numel() for p in unet.parameters()) / 1e6
        for batch in batches:
            for distinct in (True,) if batch == 1 or args.quick else (False, True):
                if args.quick:
                    modes = ("reuse", "recompute")
                elif batch == 1 or not distinct:  # the old design held 2B maps whatever the masks: one row per batch
                    modes = ("reuse", "recompute")
                else:
                    modes = ("reuse", "recompute", "per-image")
                for mode in modes:
                    r = measure_step(unet, batch, distinct, mode, fake_mode)
                    if r["features_nbytes"] is not None:  # the count agrees with the model's own bookkeeping
                        assert r["held_features"] == r["features_nbytes"] == r["feature_bytes_formula"], r
                    masks = "1" if batch == 1 else f"{batch} distinct" if distinct else f"1 mask x {batch}"
                    r.update(
                        dtype=dtype_name,
                        batch=batch,
                        masks=masks,
                        mode=mode,
                        distinct=distinct,
                        maps_held=r["maps"] if r["held_features"] else 0,
                    )
                    rows.append(r)
    print(
        f"Peak live tensor bytes of one guided denoising step: SemanticUNet2DModel() defaults ({params_m:.0f} M "
        "parameters, 256x256), fake tensors (nothing allocated); the U-Net runs on 2 x batch images (cond + null); "
        "maps held = distinct masks + 1 null map\n"
    )
    print_table(rows)
    for line in verdict(rows):
        print(line)

    results = {"rows": rows}
    if not args.skip_cross_check:
        batch = 2
        check = cross_check(batch)
        print(
            f"\nCross-check on a small model run for real on this CPU (32x32, channels 32/64/64, SPADE hidden 32, "
            f"fp32, batch {batch}: {batch} distinct masks + null). Step peak = bytes above weights, inputs and "
            "held features:"
        )
        print(
            "| mask features | step peak, fake count MiB | real run, same count MiB | real run, profiler allocations MiB "
            "| held features: fake count / SegmentationFeatures.nbytes / segmentation_feature_bytes MiB |"
        )
        print("|---|---|---|---|---|")
        for mode, c in check.items():
            print(
                f"| {MODE_LABELS[mode]} | {c['fake_step_peak'] / MIB:.2f} | {c['real_counted_step_peak'] / MIB:.2f} | "
                f"{c['real_allocator_step_peak'] / MIB:.2f} | {c['fake_held_features'] / MIB:.2f} / "
                f"{c['real_features_nbytes'] / MIB:.2f} / {c['feature_bytes_formula'] / MIB:.2f} |"
            )
        results["cross_check"] = check
        if not args.quick and 8 in batches and "bf16" in dtypes:
            fake_mode = FakeTensorMode()
            tracked = mem_tracker_total(fake_unet(SEED_CONFIG, torch.bfloat16, fake_mode), 8, fake_mode)
            ours = next(
                r["total"]
                for r in rows
                if r["dtype"] == "bf16" and r["batch"] == 8 and r["distinct"] and r["mode"] == "reuse"
            )
            if tracked is not None:
                print(
                    f"torch's MemTracker (torch.distributed._tools) on the seed-size bf16 batch-8 reuse step: "
                    f"{tracked / GIB:.3f} GiB; this counter: {ours / GIB:.3f} GiB"
                )
                results["mem_tracker_total"] = tracked
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
