"""A cache of arrays keyed by what they were made from, so an interrupted evaluation resumes where it stopped.

``lung-diffusers evaluate`` caches every generated image and every image's features under a key that hashes all
of its inputs: the model's weights and configs (:func:`pipeline_digest`), the sampler settings, the label map
and the seed for an image; the image's pixels and the extractor for its features. A rerun (or another report on
the same data) finds them; anything that changed gets a new key, so a stale entry is never read. Entries are
written atomically, one ``.npy`` per key, so a kill leaves whole entries or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..atomic_write import atomic_file

# A pipeline folder's files that decide its outputs: weights and every config (not the card or the examples).
_PIPELINE_SUFFIXES = (".safetensors", ".json")


def content_key(*parts) -> str:
    """sha256 of ``parts``: arrays by dtype, shape and bytes; anything else by its sorted JSON."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"array|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
        else:
            digest.update(b"json|" + json.dumps(part, sort_keys=True, default=str).encode() + b"|")
    return digest.hexdigest()


def pipeline_digest(folder: str | os.PathLike) -> str:
    """sha256 over a saved pipeline's weights and configs (their paths and bytes): the model's identity.

    A Hub repo id is not a folder: pass the folder `huggingface_hub.snapshot_download` returns, or key on the repo
    id and revision yourself.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a pipeline folder")
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _PIPELINE_SUFFIXES)
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class ContentCache:
    """Arrays stored under ``folder/<kind>/<key[:2]>/<key>.npy``.

    Example:
        ```py
        >>> cache = ContentCache("report/cache")
        >>> key = content_key(image, "radiomics-v1")
        >>> features = cache.get("radiomics", key)  # None until stored
        >>> cache.put("radiomics", key, values)
        ```
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, kind: str, key: str) -> Path:
        if not kind or Path(kind).name != kind or not key.isalnum():
            raise ValueError(f"a cache kind must be a plain name and a key alphanumeric, got {kind!r}, {key!r}")
        return self.folder / kind / key[:2] / f"{key}.npy"

    def get(self, kind: str, key: str) -> np.ndarray | None:
        path = self.path(kind, key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # not ours, or damaged by hand: make it again
            return None

    def put(self, kind: str, key: str, array: np.ndarray) -> np.ndarray:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.asarray(array), allow_pickle=False)
        return array

    def rows(
        self, kind: str, keys: Sequence[str], make: Callable[[list[int]], np.ndarray], chunk: int | None = None
    ) -> np.ndarray:
        """One array row per key: cached rows are read, the others made by ``make(missing indices)`` (in chunks of
        ``chunk`` so a kill loses one chunk at most) and stored. Returns the rows stacked in ``keys``' order."""
        rows: list[np.ndarray | None] = [self.get(kind, key) for key in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        step = chunk or max(len(missing), 1)
        for start in range(0, len(missing), step):
            part = missing[start : start + step]
            made = make(part)
            if len(made) != len(part):
                raise RuntimeError(f"made {len(made)} {kind} rows for {len(part)} keys")
            for index, row in zip(part, made):
                rows[index] = self.put(kind, keys[index], row)
        if not rows:
            raise ValueError(f"no {kind} rows were asked for")
        return np.stack(rows)
