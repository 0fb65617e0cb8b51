"""Synthetic slices for an evaluation: one image per label map and seed, drawn by a pipeline and cached by content.

Each image has its own generator seeded with its seed, so it does not depend on the batch it was drawn in; its
cache key hashes the model (:func:`~lung_diffusers.evaluation.content_cache.pipeline_digest`), the sampler
settings, the label map and the seed (:class:`~lung_diffusers.evaluation.content_cache.ContentCache`), so an
interrupted evaluation resumes with the images it has.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from .content_cache import ContentCache, content_key
from .sampler_study import SamplerSetting
from .slice_sets import SliceSet

SAMPLES = "samples"
TIMINGS = "timings"


@dataclasses.dataclass(frozen=True)
class SamplerSettings(SamplerSetting):
    """How the images are drawn: a sampler of :mod:`lung_diffusers.scheduler_registry`, its steps and guidance
    (:class:`~lung_diffusers.evaluation.sampler_study.SamplerSetting`) and, for a 256-px cascade, the second
    stage's steps, noise level and strength (`None`: its default)."""

    upscaler_steps: int | None = None
    noise_level: int | None = None
    upscaler_strength: float | None = None

    def key_fields(self) -> dict:
        """The fields a cache key hashes; an unset strength is left out, so caches from before it stay valid."""
        fields = dataclasses.asdict(self)
        if fields["upscaler_strength"] is None:
            del fields["upscaler_strength"]
        return fields

    @property
    def label(self) -> str:
        text = super().label
        if self.upscaler_steps is not None:
            level = "default" if self.noise_level is None else self.noise_level
            text += f"; stage 2: {self.upscaler_steps} steps, noise level {level}"
            if self.upscaler_strength is not None:
                text += f", strength {self.upscaler_strength:g}"
        return text


class GeneratedSlices:
    """Draws images of one model (``pipe``, identified by ``model_key``) into ``cache``.

    Args:
        pipe: a `LungSDMPipeline`, or a `LungSDMCombinedPipeline` for a 256-px cascade.
        model_key: the model's identity (e.g. :func:`pipeline_digest` of its folder(s)).
        cache: where images are kept between runs.
        batch_size: images per pipeline call.
    """

    def __init__(self, pipe, model_key: str, cache: ContentCache, batch_size: int = 16):
        self.pipe = pipe
        self.model_key = model_key
        self.cache = cache
        self.batch_size = batch_size

    def seconds_per_image(self, settings: SamplerSettings) -> float | None:
        """Mean sampling time per image of every image drawn with ``settings`` (kept with the cache, so a resumed
        run reports the time of the images it read); `None` before any."""
        timing = self.cache.get(TIMINGS, self._timing_key(settings))
        return None if timing is None else float(timing[0] / timing[1])

    def _timing_key(self, settings: SamplerSettings) -> str:
        return content_key(self.model_key, settings.key_fields(), TIMINGS)

    def draw(self, masks: SliceSet, seeds: Sequence[int], settings: SamplerSettings, desc: str = "sampling") -> SliceSet:
        """Every mask of ``masks`` once per seed (seed-major), as a :class:`SliceSet` of synthetic slices."""
        from ..scheduler_registry import make_scheduler

        seeds = [int(s) for s in seeds]
        plan = [(seed, row) for seed in seeds for row in range(len(masks))]
        keys = [
            content_key(self.model_key, settings.key_fields(), masks.masks[row], seed) for seed, row in plan
        ]
        missing = [i for i, key in enumerate(keys) if self.cache.get(SAMPLES, key) is None]
        if missing:
            self._set_sampler(settings, make_scheduler)
            progress = tqdm(total=len(missing), desc=f"{desc} ({settings.label})", unit="image")
            start, drawn = time.perf_counter(), 0
            for chunk in range(0, len(missing), self.batch_size):
                batch = missing[chunk : chunk + self.batch_size]
                images = self._call([masks.masks[plan[i][1]] for i in batch], [plan[i][0] for i in batch], settings)
                for i, image in zip(batch, images):
                    self.cache.put(SAMPLES, keys[i], image.astype(np.float32))
                drawn += len(batch)
                progress.update(len(batch))
            progress.close()
            earlier = self.cache.get(TIMINGS, self._timing_key(settings))
            total = np.array([time.perf_counter() - start, drawn], np.float64)
            self.cache.put(TIMINGS, self._timing_key(settings), total if earlier is None else total + earlier)
        images = np.stack([self.cache.get(SAMPLES, key) for key in keys])
        rows = [row for _, row in plan]
        drawn_set = masks.subset(rows, f"synthetic ({settings.label})")
        drawn_set.images = images
        drawn_set.seeds = np.asarray([seed for seed, _ in plan], np.int64)
        return drawn_set

    def _set_sampler(self, settings: SamplerSettings, make_scheduler) -> None:
        # A combined pipeline's ``scheduler`` is its first stage's: the sampler under study.
        self.pipe.scheduler = make_scheduler(settings.sampler, self.pipe.scheduler.config)

    def _call(self, masks: list[np.ndarray], seeds: list[int], settings: SamplerSettings) -> np.ndarray:
        import torch

        from ..ct import window_hu

        kwargs = {}
        if settings.upscaler_steps is not None:
            kwargs = {"upscaler_num_inference_steps": settings.upscaler_steps}
            if settings.noise_level is not None:
                kwargs["noise_level"] = settings.noise_level
            if settings.upscaler_strength is not None:
                kwargs["upscaler_strength"] = settings.upscaler_strength
        hu = self.pipe(
            np.stack(masks),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            generator=[torch.Generator().manual_seed(seed) for seed in seeds],
            output_type="hu",
            **kwargs,
        ).images
        # Quantised to the grey levels a PNG holds, as the real slices are: no metric may tell them apart by that.
        return window_hu(np.asarray(hu), self.pipe.config.hu_window).astype(np.float32) / 255.0
