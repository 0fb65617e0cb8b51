"""Tasks (a) and (b): classify 32x32 patches (nodule / non-nodule, or non-nodule / benign / malignant) with a
Squeeze-and-Excitation ResNet, the thesis' network family.

The thesis fine-tuned MMPreTrain's ImageNet-pretrained SE-ResNet-101. No pretrained weights may be downloaded here,
and a 101-layer network is far too large for a few hundred patches on a CPU, so the network is MONAI's
:class:`~monai.networks.nets.SENet` (2-D, 1 channel, trained from scratch) in its smallest SE-ResNet form:
SE-ResNet bottleneck blocks, one per stage (``layers=(1, 1, 1, 1)``: 14 weight layers, "SE-ResNet-14"), groups 1,
SE reduction 16, the 7x7 stem (``input_3x3=False``) with 64 channels, 1x1 projections, no dropout: 8.7 M
parameters, about 0.3 s per step of 32 patches on one CPU thread. SE-ResNet-50 (3, 4, 6, 3) is the same with more
blocks per stage (``layers``).

Training: AdamW (learning rate 1e-3, cosine decay to 0, weight decay 1e-4) on batches drawn with equal weight per
class (task (b)'s classes are unbalanced), each patch flipped and rotated by a random multiple of 90 degrees (a
patch's class does not depend on its orientation); grey levels mapped from 0-255 to [-1, 1]. Initial weights,
batches and flips all follow the run's seed, so a run is reproducible on one machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .nodule_samples import PatchSet

# SE-ResNet-14 (module docstring); only ``layers`` is a setting.
SE_RESNET = dict(
    block="se_resnet_bottleneck",
    groups=1,
    reduction=16,
    inplanes=64,
    downsample_kernel_size=1,
    input_3x3=False,
    dropout_prob=None,
)


@dataclass(frozen=True)
class ClassifierSettings:
    """How a patch classifier is trained (all of it goes into the cache key)."""

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    layers: tuple[int, int, int, int] = (1, 1, 1, 1)

    def as_dict(self) -> dict:
        return {"network": "monai SENet " + str(SE_RESNET), **asdict(self)}


def _torch():
    try:
        import monai  # noqa: F401
        import torch
    except ImportError:
        raise ImportError("the downstream tasks need torch and MONAI: pip install 'lung-diffusers[train]'") from None
    return torch


def build_patch_classifier(num_classes: int, settings: ClassifierSettings = ClassifierSettings()):
    """A freshly initialised SE-ResNet for 1-channel patches (uses torch's global generator)."""
    _torch()
    from monai.networks.nets.senet import SENet

    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    return SENet(spatial_dims=2, in_channels=1, layers=tuple(settings.layers), num_classes=num_classes, **SE_RESNET)


def _as_input(torch, patches: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(patches, np.float32)[:, None] / 127.5 - 1.0)


def _dihedral(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each patch flipped (or not) and turned by a random multiple of 90 degrees."""
    out = np.empty_like(patches)
    for i, patch in enumerate(patches):
        patch = np.rot90(patch, int(rng.integers(4)))
        out[i] = patch[:, ::-1] if rng.integers(2) else patch
    return out


def train_patch_classifier(
    patches: PatchSet,
    num_classes: int,
    settings: ClassifierSettings,
    seed: int,
    progress: Callable[[int], None] | None = None,
):
    """A classifier trained on ``patches`` (module docstring); ``progress(steps)`` is called as it goes."""
    torch = _torch()
    if not len(patches):
        raise ValueError("no training patches")
    present = np.bincount(patches.labels, minlength=num_classes)
    if (present > 0).sum() < 2:
        raise ValueError(f"training patches hold only class(es) {np.flatnonzero(present).tolist()}; need two or more")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_patch_classifier(num_classes, settings)
    rng = np.random.default_rng([seed, 1])
    # Equal weight per class present.
    weights = 1.0 / present[patches.labels]
    weights /= weights.sum()
    # fused: one kernel for all parameters; the per-tensor loop took as long as the SE-ResNet's backward pass on CPU.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    model.train()
    for _ in range(settings.steps):
        batch = rng.choice(len(patches), settings.batch_size, p=weights)
        inputs = _as_input(torch, _dihedral(patches.patches[batch], rng))
        loss = torch.nn.functional.cross_entropy(model(inputs), torch.from_numpy(patches.labels[batch]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(1)
    return model.eval()


def predict_patch_classes(model, patches: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(N, classes)`` of uint8 patches ``(N, size, size)``."""
    torch = _torch()
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(patches), batch_size):
            outputs.append(torch.softmax(model(_as_input(torch, patches[start : start + batch_size])), 1).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 2))


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, positive: int | None = 1) -> dict:
    """Accuracy, and for two classes the thesis' precision, recall (sensitivity), specificity and F1 of class
    ``positive`` (NaN where undefined)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    metrics = {"accuracy": float(np.mean(truth == predicted)) if truth.size else float("nan")}
    if positive is None:
        return metrics
    tp = float(np.sum((predicted == positive) & (truth == positive)))
    fp = float(np.sum((predicted == positive) & (truth != positive)))
    fn = float(np.sum((predicted != positive) & (truth == positive)))
    tn = float(np.sum((predicted != positive) & (truth != positive)))
    ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    metrics.update(
        precision=precision,
        recall=recall,
        specificity=ratio(tn, tn + fp),
        f1=ratio(2 * precision * recall, precision + recall) if np.isfinite(precision + recall) else float("nan"),
    )
    return metrics
