"""Prior-aware segmentation (issue 9, item 4): the two U-Nets and the prior cache. (Their scores: tests/evaluation;
the training script: tests/training/test_train_prior_segmentation.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lung_support import repaint_pipe, tiny_prior_unet

from lung_diffusers.segmentation import (
    IMAGE_ONLY,
    WITH_PRIOR,
    anomaly_priors,
    build_segmentation_unet,
    load_segmentation_unet,
    predict_nodule_mask,
    save_segmentation_unet,
)


def test_the_two_unets_differ_only_in_the_prior_channel(tmp_path):
    torch.manual_seed(0)
    with_prior = build_segmentation_unet(WITH_PRIOR, features=(4, 4, 8, 8, 16, 4))
    torch.manual_seed(0)
    image_only = build_segmentation_unet(IMAGE_ONLY, features=(4, 4, 8, 8, 16, 4))
    assert with_prior.conv_0.conv_0.conv.in_channels == 2 and image_only.conv_0.conv_0.conv.in_channels == 1
    shapes = {name: p.shape for name, p in with_prior.named_parameters()}
    differing = [name for name, p in image_only.named_parameters() if shapes[name] != p.shape]
    assert differing == ["conv_0.conv_0.conv.weight"]

    rng = np.random.default_rng(0)
    image, prior = rng.random((37, 50), np.float32), rng.normal(0, 0.1, (37, 50)).astype(np.float32)
    probability, mask = predict_nodule_mask(with_prior, image, prior, threshold=0.5)  # any size: padded to 16
    assert probability.shape == mask.shape == (37, 50) and ((probability >= 0.5) == mask).all()
    with pytest.raises(ValueError, match="takes the slice and a prior"):
        predict_nodule_mask(with_prior, image)
    with pytest.raises(ValueError, match="takes no prior"):
        predict_nodule_mask(image_only, image, prior)
    with pytest.raises(ValueError, match="variant"):
        build_segmentation_unet("both")

    config = {"variant": WITH_PRIOR, "features": [4, 4, 8, 8, 16, 4], "dropout": 0.2, "trained_steps": 3}
    save_segmentation_unet(with_prior, tmp_path / "unet", config)
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json", "model.safetensors"]
    loaded, loaded_config = load_segmentation_unet(tmp_path / "unet")
    assert loaded_config == config
    np.testing.assert_array_equal(predict_nodule_mask(loaded, image, prior)[0], probability)
    with pytest.raises(FileNotFoundError, match="no saved segmentation U-Net"):
        load_segmentation_unet(tmp_path)


def test_priors_are_cached_by_slice_and_setting(tmp_path, monkeypatch):
    from lung_diffusers.segmentation import priors

    pipe = repaint_pipe(tiny_prior_unet())
    rng = np.random.default_rng(0)
    images = [rng.random((16, 16), np.float32) for _ in range(2)]
    first = anomaly_priors(pipe, images, 0.5, 4, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and first[0].shape == (16, 16)
    assert not np.array_equal(first[0], first[1])

    calls = []
    real_map = priors.anomaly_map
    monkeypatch.setattr(priors, "anomaly_map", lambda *a, **k: calls.append(a) or real_map(*a, **k))
    again = anomaly_priors(pipe, images, 0.5, 4, cache_dir=tmp_path, progress=False)
    assert not calls and all(np.array_equal(a, b) for a, b in zip(first, again))  # all from the cache
    other = anomaly_priors(pipe, images[:1], 0.25, 4, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1 and not np.array_equal(other[0], first[0])  # another noise level: computed
    anomaly_priors(pipe, images[:1], 0.5, 4, cache_dir=tmp_path, model_id="another prior", progress=False)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npy"))) == 4
