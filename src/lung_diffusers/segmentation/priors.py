"""The prior of the prior-aware U-Net: the healthy prior's mask-free anomaly map of each slice (module 2), cached.

A map costs seconds to minutes per slice on a CPU (:func:`~lung_diffusers.inpainting.anomaly_map`), far more
than a training step of the segmentation U-Net, so each is saved as ``<sha256>.npy`` in a cache folder, the key
hashing the slice's pixels and every setting that changes the map. A rerun (an interrupted job, another U-Net on
the same slices) loads what is there and computes only the rest. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..atomic_write import atomic_file
from ..ct import as_window_image
from ..inpainting.anomaly_maps import anomaly_map


def prior_key(image: np.ndarray, settings: dict) -> str:
    """The cache key of one slice's map: its pixels (float32 window image) and the settings, hashed."""
    digest = hashlib.sha256(np.ascontiguousarray(image, np.float32).tobytes())
    digest.update(repr(image.shape).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def anomaly_priors(
    pipe,
    images: Sequence[np.ndarray],
    noise_level: float,
    num_inference_steps: int,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    model_id: str = "",
    progress: bool = True,
) -> list[np.ndarray]:
    """The anomaly map (``slice - reconstruction``, quantile-clipped, lesion positive) of every image.

    Args:
        pipe: the healthy prior (:class:`~lung_diffusers.LungRePaintPipeline` with a ``UNet2DModel``).
        images: window images ``(H, W)`` in [0, 1] (or uint8).
        noise_level, num_inference_steps: as :func:`~lung_diffusers.inpainting.anomaly_map` takes them.
        seed: seeds each slice's reconstruction (the same seed for every slice, so a map depends on its slice only).
        cache_dir: where maps are kept between runs; `None` keeps nothing.
        model_id: names the prior in the cache key (e.g. its folder), with its scheduler's class and config.
    """
    settings = {
        "model": str(model_id),
        "scheduler": type(pipe.scheduler).__name__,
        "scheduler_config": {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")},
        "noise_level": float(noise_level),
        "num_inference_steps": int(num_inference_steps),
        "seed": int(seed),
    }
    folder = Path(cache_dir) if cache_dir is not None else None
    maps = []
    for image in tqdm(images, desc="anomaly-map priors", unit="slice", disable=not progress):
        window = as_window_image(image)
        path = folder / f"{prior_key(window, settings)}.npy" if folder is not None else None
        if path is not None and path.is_file():
            maps.append(np.load(path, allow_pickle=False))
            continue
        difference = anomaly_map(pipe, window, noise_level, num_inference_steps, 1, seed).difference
        difference = difference.astype(np.float32)
        if path is not None:
            with atomic_file(path) as staged:
                np.save(staged, difference, allow_pickle=False)
        maps.append(difference)
    return maps
