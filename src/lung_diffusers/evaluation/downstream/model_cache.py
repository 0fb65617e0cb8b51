"""Trained downstream models kept by content, so an interrupted experiment resumes and a finished run is not redone.

A model's key (:func:`lung_diffusers.evaluation.content_cache.content_key`) hashes everything its weights depend
on: the task and arm, the training data itself (patch pixels and labels, or slice pixels and nodule boxes), the
training settings, the seed and :data:`CACHE_VERSION` (raised when the training code changes what it makes).
Weights are stored as safetensors (no pickle: nothing in the cache can run code), written atomically, at
``<folder>/<task>/<key[:2]>/<key>.safetensors`` with the settings in the file's metadata. A file that does not
load into the model is treated as missing and trained again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ...atomic_write import atomic_file

# Raise when training makes different weights from the same key's inputs.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lung-diffusers/downstream`` (``~/.cache/...`` when unset)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lung-diffusers" / "downstream"


class ModelCache:
    """Trained models stored by key (module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, task: str, key: str) -> Path:
        if not task.isalnum() or not key.isalnum():
            raise ValueError(f"a cache task and key must be alphanumeric, got {task!r}, {key!r}")
        return self.folder / task / key[:2] / f"{key}.safetensors"

    def load(self, task: str, key: str, model):
        """``model`` with the stored weights, or None when there are none (or they do not fit it)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(task, key)
        if not path.is_file():
            return None
        try:
            model.load_state_dict(load_file(path), strict=True)
        except (OSError, RuntimeError, SafetensorError):  # damaged, or another network: train again
            return None
        return model.eval()

    def save(self, task: str, key: str, model, metadata: dict) -> Path:
        from safetensors.torch import save_file

        path = self.path(task, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
        with atomic_file(path) as tmp:
            save_file(state, str(tmp), metadata={"settings": json.dumps(metadata, sort_keys=True, default=str)})
        return path

    def trained(self, task: str, key: str, build: Callable[[], object], train: Callable[[], object], metadata: dict):
        """``(model, trained_now)``: the stored model for ``key``, else ``train()``'s, stored. ``build()`` makes an
        empty model of the same shape to load into."""
        model = self.load(task, key, build())
        if model is not None:
            return model, False
        model = train()
        self.save(task, key, model, metadata)
        return model, True
