"""Task (c): find the nodules of a slice as boxes, with a centre heatmap on a small MONAI U-Net (CenterNet's idea).

The thesis trained MMDetection's Faster R-CNN; torchvision, which every packaged Faster R-CNN needs, does not import
beside this torch (``../shared/notes/environment.md``). So the detector is a 2-D MONAI
:class:`~monai.networks.nets.UNet` (1 channel in and out; channels 16/32/64/128 with strides 2, one residual unit
each, batch norm) whose output is a **centre heatmap** at the slice's full size:

* **target**: a Gaussian at each nodule centre (1 at the centre pixel) with sigma a quarter of the nodule's diameter
  in that slice, in pixels (at least 1 px): the heatmap's width encodes the nodule's size;
* **loss**: each pixel's binary cross-entropy against the target, weighted ``1 + 50 x target`` so the pixels near
  centres count against the many background ones. The output starts at 0.1 (CenterNet's bias initialisation).

Decoding: local maxima (3x3) scoring at least ``score_threshold`` (0.05), best first, at most ``max_detections``
(10) per slice; a peak inside the box of a better one is dropped (a large nodule can make several maxima). The box
is a square centred on the peak whose side is read from the heatmap: the pixels around the peak above half its
height cover ``pi r^2`` with ``r = sigma sqrt(2 ln 2)`` for a Gaussian, and the side is ``4 sigma``. The size is
predicted (AP50 needs the side within a factor 0.71-1.41 of the truth for a centred box, the IoU of two concentric
squares being the squared ratio of their sides, and the recipe's nodule cuts range from 3 to 30 mm), but not by a
second regression map: on the mini data a log-size map beside the heatmap (CenterNet's, weighted 1 or 0.1) kept the
heatmap at its starting value for 300 steps, while alone it learned with every seed tried.

Training: AdamW (3e-3, cosine decay, weight decay 1e-4), batches of 8 crops of 128 px (half of them around a nodule
where the slice has one: a quarter of the pixels per step and more nodules, which on a CPU is what lets the heatmap
learn in a few hundred steps; the network is fully convolutional and then reads whole slices), random horizontal and
vertical flips, grey levels mapped to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .average_precision import square_boxes
from .nodule_samples import MIN_DIAMETER_MM, SliceSample

# CenterNet's bias initialisation: a heatmap output of -2.19 reads as 0.1 after the sigmoid.
HEAT_PRIOR_LOGIT = -2.19
# At 20 the heatmap stayed at its starting value in some seeds' 300 steps on the mini data; at 50 every seed tried learned.
HEAT_WEIGHT = 50.0
# Target sigma = diameter / SIDE_IN_SIGMAS, and the decoded side is SIDE_IN_SIGMAS sigma.
SIDE_IN_SIGMAS = 4.0


@dataclass(frozen=True)
class LocaliserSettings:
    """How the localiser is built, trained and decoded (all of it goes into the cache key)."""

    steps: int = 400
    batch_size: int = 8
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 1
    crop_size: int | None = 128
    score_threshold: float = 0.05
    max_detections: int = 10

    def as_dict(self) -> dict:
        return {"network": "monai UNet, Gaussian centre heatmap, side from its half-maximum area", **asdict(self)}


def _torch():
    try:
        import monai  # noqa: F401
        import torch
    except ImportError:
        raise ImportError("the downstream tasks need torch and MONAI: pip install 'lung-diffusers[train]'") from None
    return torch


def build_localiser(settings: LocaliserSettings = LocaliserSettings()):
    """A freshly initialised U-Net whose one output map is the heatmap's logit; uses torch's global generator."""
    _torch()
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=tuple(settings.channels),
        strides=(2,) * (len(settings.channels) - 1),
        num_res_units=settings.num_res_units,
        norm="batch",
    )


def heatmap_targets(
    shape: tuple[int, int], centers_px: Sequence[Sequence[float]], diameters_px: Sequence[float]
) -> np.ndarray:
    """The training target of one slice: the max of one Gaussian per nodule, 1 at each centre pixel."""
    heat = np.zeros(shape, np.float32)
    rows, columns = np.indices(shape, dtype=np.float32)
    for (row, column), diameter in zip(centers_px, diameters_px):
        peak = (min(max(int(round(row)), 0), shape[0] - 1), min(max(int(round(column)), 0), shape[1] - 1))
        sigma = max(float(diameter) / SIDE_IN_SIGMAS, 1.0)
        np.maximum(heat, np.exp(-((rows - peak[0]) ** 2 + (columns - peak[1]) ** 2) / (2 * sigma**2)), out=heat)
    return heat


def _targets(samples: Sequence[SliceSample], min_diameter_mm: float) -> np.ndarray:
    return np.stack(
        [
            heatmap_targets(
                s.image.shape,
                [n.center_px for n in s.counted_nodules(min_diameter_mm)],
                [n.diameter_px for n in s.counted_nodules(min_diameter_mm)],
            )
            for s in samples
        ]
    )


def _as_input(torch, images: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(images, np.float32)[:, None] / 127.5 - 1.0)


def heatmap_loss(torch, logits, heat):
    """Each pixel's binary cross-entropy against the Gaussian target, weighted ``1 + HEAT_WEIGHT * target`` so the
    few pixels near nodule centres count against the many background ones; the mean over pixels."""
    weight = 1 + HEAT_WEIGHT * heat
    return (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, heat, reduction="none")).mean()


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
        heat = _targets([samples[i] for i in batch], min_diameter_mm)
        stack = _crops(np.stack([images[batch], heat], axis=1), heat, settings.crop_size, rng)
        for k in range(len(batch)):  # flips of image and targets together
            if rng.integers(2):
                stack[k] = stack[k, :, ::-1]
            if rng.integers(2):
                stack[k] = stack[k, :, :, ::-1]
        output = model(_as_input(torch, stack[:, 0]))
        loss = heatmap_loss(torch, output[:, 0] + HEAT_PRIOR_LOGIT, torch.from_numpy(stack[:, 1].copy()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(1)
    return model.eval()


def _crops(stack: np.ndarray, heat: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` window of each slice's image and targets: around one of its nodule centres (anywhere in the
    window's middle three quarters) half the time when it has one, else anywhere."""
    side = stack.shape[-1]
    if size is None or size >= side:
        return stack.copy()
    windows = np.empty((*stack.shape[:2], size, size), stack.dtype)
    for k in range(len(stack)):
        centres = np.argwhere(heat[k] >= 1.0)
        if len(centres) and rng.random() < 0.5:
            centre = centres[rng.integers(len(centres))]
            corner = centre - rng.integers(size // 8, size - size // 8, 2)
        else:
            corner = rng.integers(0, side - size + 1, 2)
        top, left = np.clip(corner, 0, side - size)
        windows[k] = stack[k, :, top : top + size, left : left + size]
    return windows


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
                found.append(_boxes(heat[k].numpy(), where[order], scores[order], settings.max_detections))
    return found


def side_from_heatmap(heat: np.ndarray, peak: tuple[int, int]) -> float:
    """The box side a heatmap peak stands for: from the area of the pixels connected to it above half its height
    (module docstring)."""
    from scipy import ndimage

    components, _ = ndimage.label(heat >= heat[peak] / 2)
    area = np.count_nonzero(components == components[peak])
    sigma = np.sqrt(area / np.pi) / np.sqrt(2 * np.log(2))
    return float(SIDE_IN_SIGMAS * sigma)


def _boxes(heat: np.ndarray, peaks: np.ndarray, scores: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Best first: a peak inside the box of a kept one is the same nodule and is dropped; at most ``limit`` kept."""
    boxes, kept = [], []
    for peak, score in zip(peaks, scores):
        if len(boxes) == limit:
            break
        if any(np.all((peak >= box[:2]) & (peak <= box[2:])) for box in boxes):
            continue
        boxes.append(square_boxes([peak], [side_from_heatmap(heat, tuple(peak))])[0])
        kept.append(score)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(kept, np.float64)
