"""Nodule insertion: put a nodule into a real slice with a Semantic Diffusion Model and RePaint.

The label map of the real slice is edited (the new nodule's pixels get the nodule class); RePaint keeps the real
slice outside the dilated nodule and lets the SDM, conditioned on the edited map, generate the inside. With a
7-class (malignancy) SDM the nodule is benign (5) or malignant (6); relabelling an existing nodule the same way
changes its malignancy.
"""

from __future__ import annotations

import numpy as np

from ..ct import BACKGROUND, LABEL_SCHEMES, MALIGNANCY_SCHEME
from .nodule_edit import NoduleEdit, binary_nodule_mask, run_edit
from .settings import DEFAULT_INSERTION_DILATION_PX

MALIGNANCY_CLASSES = MALIGNANCY_SCHEME.malignancy_classes


def nodule_class(num_classes: int, malignancy: str | None) -> int:
    """The label to paint for a model of ``num_classes`` classes; refuses what the model cannot do."""
    scheme = LABEL_SCHEMES.get(num_classes)
    if scheme is None:
        raise ValueError(f"nodule insertion needs a 6- or 7-class lung SDM, this one has {num_classes} classes")
    return scheme.nodule_class(malignancy)


def edit_label_map(label_map: np.ndarray, nodule_mask: np.ndarray, label: int) -> np.ndarray:
    """The label map with ``label`` painted where ``nodule_mask`` is set; the nodule must lie inside the body."""
    labels = np.asarray(label_map)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"label_map must be an integer (H, W) map, got {labels.dtype} {labels.shape}")
    mask = binary_nodule_mask(nodule_mask, labels.shape)
    if (labels[mask] == BACKGROUND).any():
        raise ValueError(
            "the nodule mask reaches outside the body (label 0, background); place the nodule inside the patient"
        )
    edited = labels.astype(np.uint8, copy=True)
    edited[mask] = label
    return edited


def insert_nodule(
    pipe,
    image: np.ndarray,
    label_map: np.ndarray,
    nodule_mask: np.ndarray,
    *,
    malignancy: str | None = None,
    dilation_px: int = DEFAULT_INSERTION_DILATION_PX,
    num_samples: int = 1,
    generator=None,
    num_inference_steps: int = 50,
    jump_length: int = 5,
    jump_n_sample: int = 5,
    eta: float = 0.0,
    size_handling: str | None = None,
) -> NoduleEdit:
    """Insert a nodule (or change an existing nodule's malignancy) in a real slice.

    Args:
        pipe: a :class:`~lung_diffusers.LungRePaintPipeline` whose U-Net is a :class:`~lung_diffusers.SemanticUNet2DModel`.
        image: the real slice ``(H, W)``: uint8 lung window or float in [0, 1].
        label_map: the slice's label map (the recipe's classes), same size.
        nodule_mask: ``(H, W)``, **1 = where the nodule goes** (bool, 0/1 or 0/255).
        malignancy: ``"benign"`` / ``"malignant"`` for a 7-class model (required there); `None` for a 6-class one.
        dilation_px: the regenerated area is the nodule mask dilated by this many input pixels.
        num_samples, generator, num_inference_steps, jump_length, jump_n_sample, eta: as in :func:`remove_nodule`.
        size_handling: as in the pipeline; an SDM's default ``"resample"`` inpaints the slice and map shrunk to the
            model's size (the SDM saw whole slices at that size) and pastes the new region back, upsampled, so **the
            result has the slice's size** and is the real slice outside the region; ``"resize"`` returns the
            model-sized result instead.

    Returns:
        A :class:`~lung_diffusers.inpainting.NoduleEdit` (``kind="insertion"``, ``label_map`` the edited map).
    """
    if not getattr(pipe, "is_semantic", False):
        raise ValueError(
            "insert_nodule needs a Semantic Diffusion Model (SemanticUNet2DModel) to say where the nodule goes; this "
            "pipeline holds an unconditional prior. Load a LungSDMPipeline folder into LungRePaintPipeline"
        )
    num_classes = pipe.unet.config.num_classes
    label = nodule_class(num_classes, malignancy)
    labels = np.asarray(label_map)
    if labels.size and int(labels.max()) >= num_classes:
        raise ValueError(
            f"the label map holds class {int(labels.max())}, which this {num_classes}-class SDM does not know"
            + LABEL_SCHEMES[num_classes].unknown_label_hint(labels)
        )
    edited = edit_label_map(labels, nodule_mask, label)
    return run_edit(
        pipe,
        "insertion",
        image,
        nodule_mask,
        dilation_px,
        num_samples,
        generator,
        segmentation=edited,
        num_inference_steps=num_inference_steps,
        jump_length=jump_length,
        jump_n_sample=jump_n_sample,
        eta=eta,
        size_handling=size_handling,
    )


def disc_mask(shape: tuple[int, int], center: tuple[float, float], diameter_px: float) -> np.ndarray:
    """A filled disc of ``diameter_px`` at ``center`` (row, column): a simple nodule mask to insert."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= (diameter_px / 2) ** 2
