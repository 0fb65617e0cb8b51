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

from ..ct import HU_WINDOW, as_window_image, hu_from_image, image_from_model_range
from ..output_folder import output_folder
from .difference_maps import difference_map, mean_and_uncertainty
from .figure import Panel, difference_rgb, grey_rgb, magnitude_rgb, save_figure
from .nodule_edit import as_generator, save_samples_and_maps
from .settings import DEFAULT_NOISE_LEVEL


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
    if not isinstance(pipe.scheduler, (DDPMScheduler, DDIMScheduler)):
        raise ValueError(
            f"anomaly maps need a DDPMScheduler or DDIMScheduler, got {type(pipe.scheduler).__name__}: "
            "pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)"
        )
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) or not 0 < noise_level <= 1:
        raise ValueError(f"noise_level must be a fraction of the chain in (0, 1], got {noise_level!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    window = as_window_image(image)
    factor = pipe.downsample_factor
    if window.shape[0] % factor or window.shape[1] % factor:
        raise ValueError(
            f"the slice's sides must be multiples of {factor} (the U-Net downsamples {factor}x), got {window.shape}"
        )
    # The whole slice, at its own size, from a copy noised to noise_level: the pipeline's image-to-image mode.
    reconstructions = pipe(
        window,
        mask_image=None,
        strength=noise_level,
        num_inference_steps=num_inference_steps,
        jump_n_sample=1,
        eta=eta,
        generator=as_generator(generator),
        num_images_per_prompt=num_samples,
        size_handling="none",
        output_type="latent",
    ).images
    return image_from_model_range(reconstructions.float()[:, 0]).cpu().numpy()


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
