"""The downstream models learn separable toy problems in a few steps: bright discs against none (task a's SE-ResNet)
and finding a bright disc on a slice (task c's heatmap U-Net, scored by AP50)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("monai")

from lung_diffusers.evaluation.downstream.average_precision import average_precision  # noqa: E402
from lung_diffusers.evaluation.downstream.nodule_localiser import (  # noqa: E402
    LocaliserSettings,
    detect_nodules,
    heatmap_targets,
    side_from_heatmap,
    train_localiser,
)
from lung_diffusers.evaluation.downstream.nodule_samples import PatchSet, SliceNodule, SliceSample, slice_boxes  # noqa: E402
from lung_diffusers.evaluation.downstream.patch_classifier import (  # noqa: E402
    ClassifierSettings,
    classification_metrics,
    predict_patch_classes,
    train_patch_classifier,
)


def disc_patches(count: int, rng: np.random.Generator) -> PatchSet:
    """Noise patches, every second one with a bright disc in the middle (label 1)."""
    patches = rng.normal(60, 15, (count, 32, 32))
    labels = np.arange(count) % 2
    patches[labels == 1] += 120 * (np.hypot(*(np.indices((32, 32)) - 15.5)) < 5)
    return PatchSet(np.clip(patches, 0, 255).astype(np.uint8), labels, ["toy"] * count)


def disc_slices(count: int, rng: np.random.Generator, size: int = 48) -> list[SliceSample]:
    """Noise slices with one bright disc each, 10 px across, anywhere."""
    slices = []
    for k in range(count):
        image = rng.normal(40, 10, (size, size))
        center, diameter = rng.uniform(10, size - 10, 2), 10.0
        image[np.hypot(*(np.indices((size, size)) - center[:, None, None])) < diameter / 2] += 150
        nodule = SliceNodule(tuple(center), diameter, diameter, None, f"toy-{k}")
        slices.append(SliceSample(np.clip(image, 0, 255).astype(np.uint8), None, [nodule], "toy", str(k)))
    return slices


def test_the_se_resnet_tells_discs_from_noise(one_torch_thread):
    rng = np.random.default_rng(0)
    train, test = disc_patches(64, rng), disc_patches(40, rng)
    settings = ClassifierSettings(steps=10, batch_size=16, learning_rate=3e-3)
    model = train_patch_classifier(train, 2, settings, seed=0)
    probabilities = predict_patch_classes(model, test.patches)
    assert probabilities.shape == (40, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    metrics = classification_metrics(test.labels, probabilities.argmax(1))
    assert metrics["accuracy"] >= 0.9, metrics
    one_step = ClassifierSettings(steps=1, batch_size=4)
    three = train_patch_classifier(PatchSet(train.patches, np.arange(64) % 3, ["toy"] * 64), 3, one_step, seed=0)
    assert predict_patch_classes(three, test.patches[:4]).shape == (4, 3)  # task (b)'s three classes
    with pytest.raises(ValueError, match="only class"):
        train_patch_classifier(PatchSet(train.patches, np.zeros(64, int), ["toy"] * 64), 2, one_step, seed=0)


def test_the_heatmap_unet_finds_discs(one_torch_thread):
    heat = heatmap_targets((40, 40), [(15, 16)], [12.0])
    assert heat[15, 16] == 1.0 and heat.max() == 1.0
    assert side_from_heatmap(heat, (15, 16)) == pytest.approx(12.0, rel=0.1)  # the side is read from the width
    rng = np.random.default_rng(0)
    train, test = disc_slices(24, rng), disc_slices(12, rng)
    settings = LocaliserSettings(steps=60, batch_size=4, channels=(8, 16, 32), num_res_units=0, learning_rate=1e-2)
    model = train_localiser(train, settings, seed=0, min_diameter_mm=0)
    found = detect_nodules(model, np.stack([s.image for s in test]), settings)
    truths = [slice_boxes(s, min_diameter_mm=0) for s in test]
    ap50 = average_precision([f[0] for f in found], [f[1] for f in found], truths)
    assert ap50 >= 0.6, ap50
    assert all(len(boxes) <= settings.max_detections and np.all(np.diff(scores) <= 0) for boxes, scores in found)
