"""Nodule removal, the thesis' module 1 (section 3.3.2): inpaint a nodule with healthy tissue using RePaint and a
diffusion model trained on healthy slices only (the *healthy prior*), and show what was removed."""

from __future__ import annotations

import numpy as np

from .nodule_edit import NoduleEdit, run_edit
from .settings import DEFAULT_REMOVAL_DILATION_PX


def remove_nodule(
    pipe,
    image: np.ndarray,
    nodule_mask: np.ndarray,
    *,
    dilation_px: int = DEFAULT_REMOVAL_DILATION_PX,
    num_samples: int = 1,
    generator=None,
    num_inference_steps: int = 50,
    jump_length: int = 5,
    jump_n_sample: int = 5,
    eta: float = 0.0,
    size_handling: str | None = None,
) -> NoduleEdit:
    """Replace a nodule by healthy tissue and return the healthy counterfactual(s) and the difference map.

    Args:
        pipe: a :class:`~lung_diffusers.LungRePaintPipeline` whose U-Net is the unconditional healthy prior.
        image: the real slice ``(H, W)``: uint8 lung window (the recipe's PNGs) or float in [0, 1]
            (:func:`~lung_diffusers.inpainting.image_from_hu` converts HU).
        nodule_mask: ``(H, W)``, **1 = the nodule region to replace** (bool, 0/1 or 0/255).
        dilation_px: the mask is dilated by a disc of this radius before inpainting, so the seam falls in
            healthy tissue rather than on the nodule's rim.
        num_samples: counterfactuals to draw; with more than one, ``uncertainty`` is their spread.
        generator: an int seed, a ``torch.Generator``, or one per sample.
        num_inference_steps, jump_length, jump_n_sample, eta: RePaint settings (defaults: ``REPAINT_PRESETS["cpu"]``).
        size_handling: as in the pipeline; the prior's default ``"crop"`` inpaints a model-sized window around the
            nodule at full resolution and pastes it back, so the result has the input's size.

    Returns:
        A :class:`~lung_diffusers.inpainting.NoduleEdit` (``kind="removal"``; ``images`` are the healthy slices).
    """
    if getattr(pipe, "is_semantic", False):
        raise ValueError(
            "remove_nodule inpaints with the healthy prior (an unconditional UNet2DModel), but this pipeline holds a "
            "Semantic Diffusion Model; to edit with an SDM use insert_nodule with an edited label map"
        )
    return run_edit(
        pipe,
        "removal",
        image,
        nodule_mask,
        dilation_px,
        num_samples,
        generator,
        num_inference_steps=num_inference_steps,
        jump_length=jump_length,
        jump_n_sample=jump_n_sample,
        eta=eta,
        size_handling=size_handling,
    )
