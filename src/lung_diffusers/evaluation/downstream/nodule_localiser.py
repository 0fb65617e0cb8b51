"""Task (c): find the nodules of a slice as boxes, with a centre heatmap on a small MONAI U-Net (CenterNet's idea).

The thesis trained MMDetection's Faster R-CNN; torchvision, which every packaged Faster R-CNN needs, does not import
beside this torch (``../shared/notes/environment.md``). So the detector is a 2-D MONAI
:class:`~monai.networks.nets.UNet` (1 channel in; channels 16/32/64/128 with strides 2, one residual unit each)
with two output maps at the slice's full size:

* **centre heatmap**: trained towards a Gaussian at each nodule centre (peak 1 at the centre pixel) with sigma a
  sixth of the nodule's diameter in pixels (at least 1 px), with CenterNet's penalty-reduced focal loss
  (alpha 2, beta 4; its output starts at a prior of 0.1, as CenterNet initialises it);
* **size**: the log of the nodule's diameter in pixels (relative to 8 px), regressed (L1) where the target heatmap
  is at least 0.5.
  Regressed rather than one fixed size: AP50 needs the side within a factor 0.71-1.41 of the truth for a centred
  box (IoU of two concentric squares is the squared ratio of their sides), and the recipe's nodule cuts range from
  3 to 30 mm.

Decoding: local maxima of the heatmap (3x3) scoring at least ``score_threshold`` (0.05), at most
``max_detections`` (10) per slice, each a square of the predicted side; a peak inside the box of a higher one is
dropped (a large nodule can make several maxima). Training: AdamW (2e-3, cosine decay), batches of
slices with random horizontal and vertical flips (image and targets together), grey levels mapped to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .average_precision import square_boxes
from .nodule_samples import MIN_DIAMETER_MM, SliceSample

# CenterNet's bias initialisation: a heatmap output of -2.19 reads as 0.1 after the sigmoid.
HEAT_PRIOR_LOGIT = -2.19
# The size output is the log side relative to 8 px (nodules at 256 px are about 2-21 px across), so training starts
# from a plausible box rather than a 1-px one.
LOG_SIDE_PRIOR = float(np.log(8.0))
SIZE_REGION = 0.5


@dataclass(frozen=True)
class LocaliserSettings:
    """How the localiser is built, trained and decoded (all of it goes into the cache key)."""

    steps: int = 300
    batch_size: int = 4
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 1
    score_threshold: float = 0.05
    max_detections: int = 10

    def as_dict(self) -> dict:
        return {"network": "monai UNet, centre heatmap + log size", **asdict(self)}


def _torch():
    try:
        import monai  # noqa: F401
        import torch
    except ImportError:
        raise ImportError("the downstream tasks need torch and MONAI: pip install 'lung-diffusers[train]'") from None
    return torch


def build_localiser(settings: LocaliserSettings = LocaliserSettings()):
    """A freshly initialised U-Net with two output maps (heatmap logit, log side); uses torch's global generator."""
    _torch()
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        channels=tuple(settings.channels),
        strides=(2,) * (len(settings.channels) - 1),
        num_res_units=settings.num_res_units,
    )


def heatmap_targets(
    shape: tuple[int, int], centers_px: Sequence[Sequence[float]], diameters_px: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The training targets of one slice: the heatmap (max of one Gaussian per nodule, 1 at each centre pixel) and
    the log diameter map (each pixel the nodule whose Gaussian is highest there)."""
    heat = np.zeros(shape, np.float32)
    log_size = np.zeros(shape, np.float32)
    rows, columns = np.indices(shape, dtype=np.float32)
    for (row, column), diameter in zip(centers_px, diameters_px):
        peak = (min(max(int(round(row)), 0), shape[0] - 1), min(max(int(round(column)), 0), shape[1] - 1))
        sigma = max(float(diameter) / 6.0, 1.0)
        gaussian = np.exp(-((rows - peak[0]) ** 2 + (columns - peak[1]) ** 2) / (2 * sigma**2))
        higher = gaussian > heat
        heat[higher] = gaussian[higher]
        log_size[higher] = np.log(max(float(diameter), 1.0))
    return heat, log_size


def _targets(samples: Sequence[SliceSample], min_diameter_mm: float) -> tuple[np.ndarray, np.ndarray]:
    maps = [
        heatmap_targets(
            s.image.shape,
            [n.center_px for n in s.counted_nodules(min_diameter_mm)],
            [n.diameter_px for n in s.counted_nodules(min_diameter_mm)],
        )
        for s in samples
    ]
    return np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])


def _as_input(torch, images: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(images, np.float32)[:, None] / 127.5 - 1.0)


def focal_loss(torch, logits, heat):
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of centre pixels (at least 1)."""
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    centre = heat >= 1.0
    positive = -((1 - probability) ** 2) * torch.log(probability) * centre
    negative = -((1 - heat) ** 4) * probability**2 * torch.log(1 - probability) * ~centre
    return (positive.sum() + negative.sum()) / centre.sum().clamp(min=1)


def train_localiser(
    samples: Sequence[SliceSample],
    settings: LocaliserSettings,
    seed: int,
    min_diameter_mm: float = MIN_DIAMETER_MM,
    progress: Callable[[int], None] | None = None,
):
    """A localiser trained on ``samples`` (slices with and without nodules; module docstring)."""
    torch = _torch()
    if not any(s.counted_nodules(min_diameter_mm) for s in samples):
        raise ValueError("no training slice holds a nodule: nothing to localise")
    images = np.stack([s.image for s in samples])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_localiser(settings)
    rng = np.random.default_rng([seed, 2])
    # fused: one kernel for all parameters, several times faster on CPU than the per-tensor loop.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    model.train()
    for _ in range(settings.steps):
        batch = rng.choice(len(samples), min(settings.batch_size, len(samples)), replace=False)
        heat, log_size = _targets([samples[i] for i in batch], min_diameter_mm)
        stack = np.stack([images[batch], heat, log_size], axis=1)
        for k in range(len(batch)):  # flips of image and targets together
            if rng.integers(2):
                stack[k] = stack[k, :, ::-1]
            if rng.integers(2):
                stack[k] = stack[k, :, :, ::-1]
        output = model(_as_input(torch, stack[:, 0]))
        heat_t, size_t = torch.from_numpy(stack[:, 1].copy()), torch.from_numpy(stack[:, 2].copy())
        region = heat_t >= SIZE_REGION
        size_loss = (torch.abs(output[:, 1] + LOG_SIDE_PRIOR - size_t) * region).sum() / region.sum().clamp(min=1)
        loss = focal_loss(torch, output[:, 0] + HEAT_PRIOR_LOGIT, heat_t) + size_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(1)
    return model.eval()


def detect_nodules(
    model, images: np.ndarray, settings: LocaliserSettings, batch_size: int = 8
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per uint8 slice of ``images`` ``(N, H, W)``: its boxes ``(K, 4)`` and scores ``(K,)``, best first."""
    torch = _torch()
    model.eval()
    found = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            output = model(_as_input(torch, images[start : start + batch_size]))
            heat = torch.sigmoid(output[:, 0] + HEAT_PRIOR_LOGIT)
            peaks = heat == torch.nn.functional.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0]
            for k in range(heat.shape[0]):
                scores = heat[k][peaks[k]].numpy()
                where = torch.nonzero(peaks[k]).numpy()
                keep = scores >= settings.score_threshold
                scores, where = scores[keep], where[keep]
                order = np.argsort(-scores, kind="stable")
                scores, where = scores[order], where[order]
                sides = np.exp(output[k, 1].numpy()[where[:, 0], where[:, 1]] + LOG_SIDE_PRIOR)
                boxes = square_boxes(where.astype(np.float64), sides)
                kept = _suppress(boxes, settings.max_detections)
                found.append((boxes[kept], scores[kept].astype(np.float64)))
    return found


def _suppress(boxes: np.ndarray, limit: int) -> list[int]:
    """Greedy, best first: a peak inside the box of a kept one is the same nodule (a large nodule can make several
    maxima) and is dropped; at most ``limit`` kept."""
    kept: list[int] = []
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    for i in range(len(boxes)):
        if len(kept) == limit:
            break
        inside = (centers[i] >= boxes[kept, :2]) & (centers[i] <= boxes[kept, 2:])
        if not inside.all(axis=1).any():
            kept.append(i)
    return kept
