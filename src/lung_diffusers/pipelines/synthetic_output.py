"""What both pipelines return: samples in [-1, 1] as the chosen ``output_type``, PIL images marked synthetic."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DiffusionPipeline

from ..ct import hu_from_image, image_from_model_range
from ..synthetic_marker import synthetic_png_text

OUTPUT_TYPES = ("pil", "np", "pt", "hu", "latent")


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")


def postprocess_samples(samples: torch.Tensor, output_type: str, hu_window: tuple[float, float]):
    """``latent``: the samples untouched; ``pt``: [0, 1] tensors; ``hu``: float32 ``(B, H, W)`` Hounsfield units
    (several channels averaged to grey); ``np``: float32 ``(B, H, W, C)``; ``pil``: images whose ``info`` carries
    the synthetic mark, so ``save_synthetic_png`` and PIL's own PNG writer keep it.

    Raises:
        ValueError: the samples hold NaN or infinite values (they would become a black image marked synthetic).
    """
    if not torch.isfinite(samples).all():
        raise ValueError(
            "sampling produced NaN or infinite values, so there is no image to return: check the model weights "
            "for NaN, run in float32 rather than float16, and check the scheduler settings and step callbacks"
        )
    if output_type == "latent":
        return samples
    images = image_from_model_range(samples)
    if output_type == "pt":
        return images
    if output_type == "hu":
        return hu_from_image(images.float().mean(dim=1).cpu().numpy(), hu_window)
    array = images.float().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
    if output_type == "np":
        return array
    pil_images = DiffusionPipeline.numpy_to_pil(array)
    for pil in pil_images:
        pil.info.update(synthetic_png_text())
    return pil_images
