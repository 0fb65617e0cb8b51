"""Generating one global batch of synthetic slices and turning it into dataset rows.

A batch is fixed by the settings (images ``b * batch_size`` to ``(b + 1) * batch_size - 1``), never by the
process that runs it, and each image has its own ``torch.Generator`` seeded from (seed, global index). So a
batch gives the same bytes on whichever process makes it, as long as the hardware, the software and the torch
thread count are the same. Why the batch must be the same too: CPU convolution kernels block their work by
batch size, so the same image in a batch of 1 and of 4 differs by ~1e-6 (measured on the demo checkpoint),
which can flip a uint8 rounding. Rows therefore record their batch, its size and their position in it.

In a cascade, each image's generator draws stage 1's noise and then stage 2's
(:class:`~lung_diffusers.LungSDMCombinedPipeline`), so the image's one seed reproduces both stages.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..ct import NODULE
from ..synthetic_marker import save_synthetic_png
from .mask_plan import NO_EDIT, ImagePlan, MaskSampler
from .mask_source import MaskSource
from .settings import SynthesisSettings


def run_pipeline(
    pipe, label_maps: np.ndarray, seeds: Sequence[int], num_inference_steps: int, guidance_scale: float, **upscaler
):
    """PIL images of one batch, each from its own CPU generator (the same noise on any device).

    ``upscaler``: a cascade's second-stage options (:func:`upscaler_options`), for a combined pipeline.
    """
    import torch

    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    return pipe(
        label_maps,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=generators,
        output_type="pil",
        **upscaler,
    ).images


def upscaler_options(steps: int | None, noise_level: int | None, strength: float | None, guidance_scale: float) -> dict:
    """The combined pipeline's second-stage arguments (none without an upscaler): its steps, level and strength,
    and the first stage's guidance."""
    if steps is None:
        return {}
    return dict(
        upscaler_num_inference_steps=steps,
        noise_level=noise_level,
        upscaler_strength=strength,
        upscaler_guidance_scale=guidance_scale,
    )


def png_metadata(row: dict) -> dict[str, str]:
    """Text chunks written into each image's PNG besides the synthetic mark: enough to find the row again."""
    source = row["source_mask"]
    metadata = {
        "seed": str(row["seed"]),
        "global_index": str(row["global_index"]),
        "checkpoint": f"{row['checkpoint']}@{row['checkpoint_revision'] or 'local'} sha256:{row['checkpoint_sha256']}",
        "source_mask": f"{source['config']}/{source['split']}/{source['seriesuid']}/{source['slice_index']}",
    }
    if row.get("upscaler") is not None:
        metadata["upscaler"] = f"{row['upscaler']}@{row['upscaler_revision'] or 'local'} sha256:{row['upscaler_sha256']}"
    return metadata


def synthetic_png_bytes(image, metadata: dict[str, str]) -> bytes:
    """The PNG bytes :func:`~lung_diffusers.save_synthetic_png` writes (mark and metadata included)."""
    with tempfile.TemporaryDirectory() as folder:
        return save_synthetic_png(image, Path(folder) / "image.png", metadata).read_bytes()


def label_map_png(label_map: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(label_map, np.uint8))
    if not ok:
        raise RuntimeError("PNG encoding of a label map failed")
    return encoded.tobytes()


def run_fields(settings: SynthesisSettings, device) -> dict:
    """The columns every row of a run shares."""
    import diffusers
    import torch

    stage_two = {}
    if settings.cascade:
        stage_two = {
            "upscaler": settings.upscaler,
            "upscaler_revision": settings.upscaler_revision,
            "upscaler_sha256": settings.upscaler_weights_sha256,
            "upscaler_num_inference_steps": settings.upscaler_num_inference_steps,
            "noise_level": settings.noise_level,
            "upscaler_strength": settings.upscaler_strength,
        }
    return {
        "synthetic": True,
        "checkpoint": settings.pipeline,
        "checkpoint_revision": settings.pipeline_revision,
        "checkpoint_sha256": settings.weights_sha256,
        "scheduler": settings.scheduler_class,
        "num_inference_steps": settings.num_inference_steps,
        "guidance_scale": settings.guidance_scale,
        "run_seed": settings.seed,
        "torch_threads": settings.torch_threads,
        "device": device_description(device),
        "software": f"lung-diffusers {__version__}, torch {torch.__version__}, diffusers {diffusers.__version__}",
        **stage_two,
    }


def device_description(device) -> str:
    """``"cuda (NVIDIA H200)"`` or ``"cpu (AMD EPYC ...)"``: the hardware a row's bits depend on."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({_cpu_model()})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def generate_batch(pipe, sampler: MaskSampler, settings: SynthesisSettings, batch_index: int, shared: dict) -> list[dict]:
    """The rows of global batch ``batch_index`` (``shared``: :func:`run_fields`)."""
    plans = [sampler.plan(index) for index in settings.batch_range(batch_index)]
    label_maps = np.stack([sampler.label_map(plan) for plan in plans])
    stage_two = upscaler_options(
        settings.upscaler_num_inference_steps, settings.noise_level, settings.upscaler_strength, settings.guidance_scale
    )
    images = run_pipeline(
        pipe, label_maps, [p.seed for p in plans], settings.num_inference_steps, settings.guidance_scale, **stage_two
    )
    rows = []
    for position, (plan, image, label_map) in enumerate(zip(plans, images, label_maps)):
        row = synthetic_row(sampler.source, plan, label_map, shared)
        row.update(batch_index=batch_index, batch_size=len(plans), batch_position=position)
        rows.append({"image": {"bytes": synthetic_png_bytes(image, png_metadata(row)), "path": None}, **row})
    return rows


def synthetic_row(source: MaskSource, plan: ImagePlan, label_map: np.ndarray, shared: dict) -> dict:
    """One row: the source row's columns (adjusted to the synthetic slice) plus the synthesis metadata."""
    row = source.row(plan.source_row)
    spec = source.spec
    size, stored = source.image_size, int(source.stored_size[plan.source_row])
    scale = size / stored
    row["mask"] = {"bytes": label_map_png(label_map), "path": None}
    if "has_nodule" in row:
        row["has_nodule"] = bool((label_map >= NODULE).any())
    if isinstance(row.get("nodules"), list):
        # A nodule only a few source pixels wide can vanish when the mask shrinks to the model's size.
        kept = row["nodules"] if (source.label_map(plan.source_row) >= NODULE).any() else []
        row["nodules"] = [_rescaled_nodule(n, scale) for n in kept]
        if plan.nodule is not None:
            row["nodules"].append(_placed_nodule_entry(plan, source))
    if isinstance(row.get("spacing"), dict) and row["spacing"].get("pixel_mm"):
        row["spacing"] = {**row["spacing"], "pixel_mm": [v / scale for v in row["spacing"]["pixel_mm"]]}
    row.update(shared)
    row.update(
        seed=plan.seed,
        global_index=plan.index,
        source_mask={
            "dataset": spec.dataset,
            "config": spec.config,
            "split": spec.split,
            "row": plan.source_row,
            "seriesuid": row.get("seriesuid"),
            "slice_index": row.get("slice_index"),
        },
        edit=plan.nodule.record() if plan.nodule is not None else dict(NO_EDIT),
    )
    return row


def _rescaled_nodule(nodule: dict, scale: float) -> dict:
    if nodule.get("center_px") is None:
        return nodule
    # Pixel centres: stored index i covers [i, i + 1), so scale i + 0.5.
    return {**nodule, "center_px": [(v + 0.5) * scale - 0.5 for v in nodule["center_px"]]}


def _placed_nodule_entry(plan: ImagePlan, source: MaskSource) -> dict:
    keys = _nodule_keys(source.dataset.features["nodules"])
    entry = dict.fromkeys(keys)
    nodule = plan.nodule
    known = {
        "center_px": [float(v) for v in nodule.center_px],
        "diameter_mm": nodule.diameter_mm,
        "drawn_diameter_mm": nodule.diameter_mm,
    }
    entry.update({k: v for k, v in known.items() if k in entry})
    return entry


def _nodule_keys(feature) -> list[str]:
    inner = feature[0] if isinstance(feature, list) else getattr(feature, "feature", {})
    return list(inner) if isinstance(inner, dict) else []
