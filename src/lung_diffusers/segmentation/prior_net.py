"""The prior-aware segmentation U-Net and its image-only twin: MONAI's ``BasicUNet`` with 2 or 1 input channels.

The thesis' Prior-Net (after Astaraki et al. 2022, Listing 9) is a U-Net of four encoder and four decoder blocks,
each two 3x3 convolutions with batch normalisation, ReLU-like activations and dropout 0.2, whose input stacks the
slice and its prior. ``BasicUNet`` is that network; the only difference between the two variants is the prior
channel, so a comparison of the two measures what the prior adds.

Weights are saved as ``model.safetensors`` beside a ``config.json`` that rebuilds the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic_write import atomic_directory, write_text_atomically
from ..ct import model_range_from_image

WITH_PRIOR, IMAGE_ONLY = "with-prior", "image-only"
VARIANTS = (WITH_PRIOR, IMAGE_ONLY)
# Small (0.5 M parameters): a few hundred training slices and a CPU.
DEFAULT_FEATURES = (16, 16, 32, 64, 128, 16)
DEFAULT_DROPOUT = 0.2
# Four 2x poolings: sides must divide by 16 (inputs are padded to that).
SIDE_MULTIPLE = 16
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


def build_segmentation_unet(
    variant: str, features: tuple[int, ...] = DEFAULT_FEATURES, dropout: float = DEFAULT_DROPOUT
) -> torch.nn.Module:
    """A MONAI ``BasicUNet`` for one nodule logit per pixel; 2 input channels (slice, prior) for
    ``"with-prior"``, 1 (slice) for ``"image-only"``."""
    from monai.networks.nets import BasicUNet

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if len(features) != 6 or any(int(f) < 1 for f in features):
        raise ValueError(f"features must be 6 positive channel counts (BasicUNet's), got {tuple(features)}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return BasicUNet(
        spatial_dims=2,
        in_channels=2 if variant == WITH_PRIOR else 1,
        out_channels=1,
        features=tuple(int(f) for f in features),
        dropout=float(dropout),
    )


def network_input(images: torch.Tensor | np.ndarray, priors: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    """``(N, 2, H, W)`` slice (window image in [0, 1] mapped to [-1, 1]) and prior stacked, or ``(N, 1, H, W)``
    without a prior. ``images`` and ``priors`` are ``(N, H, W)`` or ``(H, W)``."""
    images = torch.as_tensor(np.asarray(images, np.float32) if isinstance(images, np.ndarray) else images).float()
    if images.ndim == 2:
        images = images[None]
    channels = [model_range_from_image(images)]
    if priors is not None:
        priors = torch.as_tensor(np.asarray(priors, np.float32) if isinstance(priors, np.ndarray) else priors).float()
        if priors.ndim == 2:
            priors = priors[None]
        if priors.shape != images.shape:
            raise ValueError(f"priors {tuple(priors.shape)} and images {tuple(images.shape)} must have one shape")
        channels.append(priors)
    return torch.stack(channels, dim=1)


@torch.no_grad()
def predict_nodule_mask(
    model: torch.nn.Module,
    image: np.ndarray,
    prior: np.ndarray | None = None,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """The nodule probability ``(H, W)`` of one slice and the mask ``probability >= threshold``.

    The slice is padded (edge values) to a multiple of 16 and the prediction cropped back, so any size works.
    ``prior`` is required exactly when the model takes two channels.

    Example:
        ```py
        >>> from diffusers import DDIMScheduler
        >>> from lung_diffusers import LungRePaintPipeline
        >>> from lung_diffusers.inpainting import anomaly_map, read_ct_slice
        >>> from lung_diffusers.segmentation import load_segmentation_unet, predict_nodule_mask

        >>> unet, config = load_segmentation_unet("prior-segmentation/with-prior/model")
        >>> prior = LungRePaintPipeline.from_pretrained("pipelines/lung-ddpm-prior-64")
        >>> prior.scheduler = DDIMScheduler.from_config(prior.scheduler.config)  # as the U-Net was trained
        >>> image = read_ct_slice("slice.png").image  # a recipe slice, 256 px
        >>> difference = anomaly_map(prior, image, noise_level=0.5, num_inference_steps=25, generator=0).difference
        >>> probability, nodule = predict_nodule_mask(unet, image, difference)
        ```
    """
    wants_prior = _in_channels(model) == 2
    if wants_prior != (prior is not None):
        raise ValueError("this U-Net takes the slice and a prior" if wants_prior else "this U-Net takes no prior")
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"a slice must be a 2-D (H, W) array, got shape {image.shape}")
    height, width = image.shape
    batch = network_input(image, None if prior is None else np.asarray(prior, np.float32))
    pad_h, pad_w = (-height) % SIDE_MULTIPLE, (-width) % SIDE_MULTIPLE
    batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        logits = model(batch.to(device)).float()
    finally:
        model.train(was_training)
    probability = torch.sigmoid(logits)[0, 0, :height, :width].cpu().numpy()
    return probability, probability >= threshold


def _in_channels(model: torch.nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return first.in_channels


def save_segmentation_unet(model: torch.nn.Module, folder: str | os.PathLike, config: dict) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``config`` holds :func:`build_segmentation_unet`'s
    ``variant``, ``features`` and ``dropout``, plus anything to remember, e.g. the training steps) atomically."""
    from safetensors.torch import save_file

    missing = {"variant", "features", "dropout"} - set(config)
    if missing:
        raise ValueError(f"config lacks {sorted(missing)}")
    folder = Path(folder)
    with atomic_directory(folder, overwrite=True) as staging:
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        write_text_atomically(staging / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return folder


def load_segmentation_unet(folder: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """The U-Net saved by :func:`save_segmentation_unet` (in eval mode) and its config."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"no saved segmentation U-Net in {folder} (need {CONFIG_NAME} and {WEIGHTS_NAME})")
    config = json.loads(config_path.read_text())
    model = build_segmentation_unet(config["variant"], tuple(config["features"]), config["dropout"])
    model.load_state_dict(load_file(str(weights_path)))
    return model.eval(), config
