"""Mask-free anomaly maps, AnoDDPM-style (Wyatt et al., 2022): noise a real slice part of the way up the diffusion
chain, denoise it with the healthy prior, and compare. What the prior cannot explain (a nodule) comes back as
healthy tissue, so it shows in the difference map.

AnoDDPM noises with simplex noise; this uses the model's own Gaussian noise. The noise level is the fraction of
the training chain (``noise_level * num_train_timesteps``): low levels keep the slice and miss large lesions, high
levels lose the anatomy. No mask is needed, so the whole slice is processed at its own resolution (the
convolutional prior, trained on crops, runs on the full slice).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

from ..labels import HU_WINDOW
from ..output_folder import output_folder
from ..pipelines.denoised_clipping import clip_denoised_epsilon, scheduler_clips_itself
from .difference_maps import difference_map, mean_and_uncertainty
from .figure import Panel, difference_rgb, grey_rgb, magnitude_rgb, save_figure
from .nodule_edit import as_generator, save_samples_and_maps
from .settings import DEFAULT_NOISE_LEVEL
from .slice_io import as_window_image, hu_from_image


@dataclass
class AnomalyMap:
    """A slice, its reconstructions by the healthy prior, and the difference (window units, lesion positive).

    Attributes:
        input_image: the **real** slice, float ``(H, W)`` in [0, 1].
        reconstructions: ``(N, H, W)`` **synthetic** reconstructions from the partly noised slice.
        difference: mean over samples of ``slice - reconstruction``, each clipped to its own 5 % / 95 % quantiles
            (thesis Listing 6).
        uncertainty: per-pixel standard deviation over samples, or `None` for one.
        noise_level: fraction of the training chain the slice was noised to.
    """

    input_image: np.ndarray
    reconstructions: np.ndarray
    difference: np.ndarray
    uncertainty: np.ndarray | None
    noise_level: float
    hu_window: tuple[float, float] = HU_WINDOW
    synthetic: bool = field(default=True, init=False)

    def panels(self) -> list[Panel]:
        panels = [
            Panel("input (REAL)", grey_rgb(self.input_image), "real"),
            Panel("reconstruction (SYNTHETIC)", grey_rgb(self.reconstructions[0]), "synthetic"),
            Panel(f"anomaly map, noise {self.noise_level:g}", difference_rgb(self.difference), "derived"),
        ]
        if self.uncertainty is not None:
            panels.append(
                Panel(f"uncertainty ({len(self.reconstructions)} samples)", magnitude_rgb(self.uncertainty), "derived")
            )
        return panels

    def save(
        self, folder: str | os.PathLike, pixel_mm: Sequence[float] | None = None, overwrite: bool = False
    ) -> dict[str, Path]:
        """``reconstruction-<k>.png``, ``reconstruction.nii.gz`` (HU), ``anomaly.png`` / ``.nii.gz`` (HU),
        ``uncertainty.*`` for several samples and ``figure.png``, all marked synthetic. ``folder`` must be new or
        empty, or hold an earlier run's outputs and ``overwrite=True`` (see :mod:`lung_diffusers.output_folder`)."""
        with output_folder(folder, "anomaly-map", overwrite) as out:
            written = save_samples_and_maps(
                out, "reconstruction", self.reconstructions, hu_from_image(self.reconstructions, self.hu_window),
                "anomaly", self.difference, self.uncertainty, self.hu_window, pixel_mm,
            )  # fmt: skip
            written["figure.png"] = save_figure(
                self.panels(), out.path("figure.png"), metadata={"noise_level": f"{self.noise_level:g}"}
            )
        return written


@torch.no_grad()
def reconstruct_from_noise_level(
    pipe,
    image: np.ndarray,
    noise_level: float = DEFAULT_NOISE_LEVEL,
    num_inference_steps: int = 50,
    num_samples: int = 1,
    generator=None,
    eta: float = 0.0,
) -> np.ndarray:
    """Noise ``image`` (window image ``(H, W)``) to ``noise_level`` of the chain and denoise it with the pipeline's
    unconditional U-Net and scheduler (DDPM or DDIM); returns ``(num_samples, H, W)`` in [0, 1].

    The chain is the last ``int(noise_level * num_inference_steps)`` of the scheduler's ``num_inference_steps``
    timesteps, as diffusers' image-to-image ``strength`` (with "linspace" spacing it starts at about
    ``noise_level * num_train_timesteps``).
    """
    if getattr(pipe, "is_semantic", False):
        raise ValueError(
            "anomaly maps use the healthy prior (an unconditional UNet2DModel), not a Semantic Diffusion Model"
        )
    scheduler, unet = pipe.scheduler, pipe.unet
    if not isinstance(scheduler, (DDPMScheduler, DDIMScheduler)):
        raise ValueError(
            f"anomaly maps need a DDPMScheduler or DDIMScheduler, got {type(scheduler).__name__}: "
            "pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)"
        )
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) or not 0 < noise_level <= 1:
        raise ValueError(f"noise_level must be a fraction of the chain in (0, 1], got {noise_level!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    pipe.check_scheduler()
    window = as_window_image(image)
    factor = pipe.downsample_factor
    if window.shape[0] % factor or window.shape[1] % factor:
        raise ValueError(
            f"the slice's sides must be multiples of {factor} (the U-Net downsamples {factor}x), got {window.shape}"
        )
    if not 1 <= num_inference_steps <= scheduler.config.num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be between 1 and {scheduler.config.num_train_timesteps}, got {num_inference_steps}"
        )

    device, dtype = pipe._execution_device, unet.dtype
    generator = as_generator(generator)
    scheduler.set_timesteps(num_inference_steps, device=device)
    # As diffusers' image-to-image `strength`: the last noise_level share of the steps.
    kept = min(int(num_inference_steps * noise_level), num_inference_steps)
    if kept < 1:
        raise ValueError(
            f"noise_level {noise_level:g} is below the first of {num_inference_steps} steps; raise it or use more steps"
        )
    timesteps = scheduler.timesteps[num_inference_steps - kept :]
    clean = (torch.from_numpy(window)[None, None] * 2 - 1).to(device, dtype).repeat(num_samples, 1, 1, 1)
    alpha = scheduler.alphas_cumprod[int(timesteps[0])].to(device, torch.float32)
    noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=dtype)
    sample = (alpha.sqrt() * clean + (1 - alpha).sqrt() * noise).to(dtype)
    channels = unet.config.in_channels
    pass_variance = pipe._passes_variance()
    clip_here = not scheduler_clips_itself(scheduler)
    extra = pipe.prepare_extra_step_kwargs(generator, eta)
    for t in pipe.progress_bar(timesteps):
        t = int(t)
        output = unet(scheduler.scale_model_input(sample, t), t).sample
        epsilon, variance = output[:, :channels], output[:, channels:]
        if clip_here:
            epsilon = clip_denoised_epsilon(scheduler, sample, epsilon, t)
        model_output = torch.cat([epsilon, variance], dim=1) if pass_variance else epsilon
        sample = scheduler.step(model_output, t, sample, **extra).prev_sample
    return (sample.float()[:, 0] / 2 + 0.5).clamp(0, 1).cpu().numpy()


def anomaly_map(
    pipe,
    image: np.ndarray,
    noise_level: float = DEFAULT_NOISE_LEVEL,
    num_inference_steps: int = 50,
    num_samples: int = 1,
    generator=None,
    eta: float = 0.0,
) -> AnomalyMap:
    """The AnoDDPM-style anomaly map of a slice (see the module docstring and :func:`reconstruct_from_noise_level`)."""
    window = as_window_image(image)
    reconstructions = reconstruct_from_noise_level(
        pipe, window, noise_level, num_inference_steps, num_samples, generator, eta
    )
    mean, spread = mean_and_uncertainty(np.stack([difference_map(window, r) for r in reconstructions]))
    return AnomalyMap(window, reconstructions, mean, spread, float(noise_level), tuple(pipe.config.hu_window))
