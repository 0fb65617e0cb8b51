"""The evaluation's cache: keys change with any input, rows made once, a damaged entry made again."""

from __future__ import annotations

import numpy as np
import pytest

from lung_diffusers.evaluation.content_cache import ContentCache, content_key, pipeline_digest


def test_keys_change_with_every_input():
    image = np.zeros((4, 4), np.float32)
    base = content_key(image, {"sampler": "dpm", "steps": 25}, 0)
    assert base == content_key(image.copy(), {"steps": 25, "sampler": "dpm"}, 0)  # key order does not matter
    changed = image.copy()
    changed[0, 0] = 1e-6
    assert len({
        base,
        content_key(changed, {"sampler": "dpm", "steps": 25}, 0),
        content_key(image, {"sampler": "dpm", "steps": 10}, 0),
        content_key(image, {"sampler": "dpm", "steps": 25}, 1),
        content_key(image.astype(np.float64), {"sampler": "dpm", "steps": 25}, 0),
        content_key(image.reshape(2, 8), {"sampler": "dpm", "steps": 25}, 0),
    }) == 6  # fmt: skip


def test_rows_are_made_once_and_in_order(tmp_path):
    cache, made = ContentCache(tmp_path), []

    def make(rows):
        made.append(list(rows))
        return np.asarray([[row * 10.0] for row in rows])

    keys = [content_key(i) for i in range(5)]
    first = cache.rows("features", keys, make, chunk=2)
    assert made == [[0, 1], [2, 3], [4]]
    np.testing.assert_array_equal(first[:, 0], [0, 10, 20, 30, 40])
    again = cache.rows("features", [keys[3], content_key(9), keys[0]], make)
    assert made[-1] == [1]  # only the new key is made
    np.testing.assert_array_equal(again[:, 0], [30, 10, 0])


def test_a_damaged_entry_is_made_again(tmp_path):
    cache = ContentCache(tmp_path)
    key = content_key("x")
    cache.put("samples", key, np.ones(3))
    cache.path("samples", key).write_bytes(b"half written")
    assert cache.get("samples", key) is None


def test_pipeline_digest_follows_weights_and_configs(tmp_path):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    (folder / "model_index.json").write_text("{}")
    (folder / "README.md").write_text("card")
    first = pipeline_digest(folder)
    (folder / "README.md").write_text("another card")  # the card does not change the model
    assert pipeline_digest(folder) == first
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"other weights")
    assert pipeline_digest(folder) != first
    with pytest.raises(ValueError, match="not a pipeline folder"):
        pipeline_digest(tmp_path / "missing")


def test_bad_kinds_and_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="plain name"):
        ContentCache(tmp_path).path("../out", content_key(1))
    with pytest.raises(ValueError, match="alphanumeric"):
        ContentCache(tmp_path).path("samples", "../../etc")
