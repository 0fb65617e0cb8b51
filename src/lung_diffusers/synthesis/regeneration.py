"""Regenerating rows of a synthetic dataset from their metadata.

A row is reproduced bit for bit from its columns together with its batch mates (same ``batch_index``): the
checkpoint (checked against ``checkpoint_sha256``; a cascade's upscaler against ``upscaler_sha256``), the
scheduler, steps and guidance (and the second stage's steps, noise level and strength), every image's seed and mask, and
the torch thread count, on the same hardware and software (``device``, ``software``). The mask can
also be rebuilt from the source dataset and the ``edit`` (:func:`rebuild_label_map`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from ..ct import resize_label_map
from .checkpoint import load_pipeline, resolve_checkpoint
from .generation import png_metadata, run_pipeline, synthetic_png_bytes, upscaler_options
from .mask_plan import PlacedNodule, apply_edit
from .mask_source import decode_mask
from .settings import STRENGTH_BEFORE_RECORDED


def pipeline_for(row: dict, cache_dir: str | None = None):
    """The row's pipeline and scheduler (both stages for a cascade's row), after checking that their weights are
    the ones that made the row.

    A checkpoint recorded as a relative folder path is looked up from the current folder.
    """
    checkpoint = _checked(row, "checkpoint", "--pipeline", cache_dir)
    upscaler = _checked(row, "upscaler", "--upscaler", cache_dir) if row.get("upscaler") is not None else None
    return load_pipeline(checkpoint, row["scheduler"], upscaler=upscaler)


def _checked(row: dict, column: str, flag: str, cache_dir: str | None):
    reference = resolve_checkpoint(row[column], row[f"{column}_revision"], cache_dir, flag)
    if reference.weights_sha256 != row[f"{column}_sha256"]:
        raise ValueError(
            f"the weights of {row[column]} have sha256 {reference.weights_sha256}, but the row was made by "
            f"{row[f'{column}_sha256']}: the {column} changed since (a newer export at the same path?)"
        )
    return reference


def batch_rows(dataset, batch_index: int) -> list[dict]:
    """The rows of one generation batch, in batch order."""
    indices = [i for i, b in enumerate(dataset["batch_index"]) if b == batch_index]
    return sorted((dataset[i] for i in indices), key=lambda row: row["batch_position"])


def regenerate_batch(rows: Sequence[dict], pipe=None, cache_dir: str | None = None) -> list[bytes]:
    """The PNG bytes of a whole batch, made again from the rows' metadata (``pipe``: reuse a loaded pipeline)."""
    rows = sorted(rows, key=lambda row: row["batch_position"])
    first = rows[0]
    if [r["batch_position"] for r in rows] != list(range(first["batch_size"])) or {r["batch_index"] for r in rows} != {
        first["batch_index"]
    }:
        raise ValueError("give all the rows of one batch (same batch_index, positions 0 to batch_size - 1)")
    pipe = pipe if pipe is not None else pipeline_for(first, cache_dir)
    if (first.get("upscaler") is not None) != hasattr(pipe, "upscaler"):
        made_by = "both stages of a cascade" if first.get("upscaler") is not None else "one stage"
        raise ValueError(f"these rows were made by {made_by}, and pipe= is not such a pipeline; pass pipe=None to load theirs")
    label_maps = np.stack([_label_map(row["mask"]) for row in rows])
    # A cascade's rows written before the strength was recorded have no such column: their stage 2 ran its whole chain.
    strength = first.get("upscaler_strength")
    strength = STRENGTH_BEFORE_RECORDED if strength is None else strength
    stage_two = upscaler_options(
        first.get("upscaler_num_inference_steps"), first.get("noise_level"), strength, first["guidance_scale"]
    )
    with torch_threads(first["torch_threads"]):
        images = run_pipeline(
            pipe, label_maps, [row["seed"] for row in rows], first["num_inference_steps"], first["guidance_scale"],
            **stage_two,
        )
    return [synthetic_png_bytes(image, png_metadata(row)) for image, row in zip(images, rows)]


def regenerate_row(dataset, index: int, pipe=None, cache_dir: str | None = None) -> bytes:
    """The PNG bytes of row ``index`` of a loaded synthetic dataset, regenerated with its batch."""
    row = dataset[int(index)]
    rows = batch_rows(dataset, row["batch_index"])
    return regenerate_batch(rows, pipe, cache_dir)[row["batch_position"]]


def rebuild_label_map(row: dict, cache_dir: str | None = None) -> np.ndarray:
    """The row's label map made again from the source dataset (``source_mask``) and the ``edit``."""
    import datasets

    from ..data.slice_dataset import load_slice_dataset

    source = row["source_mask"]
    split = load_slice_dataset(source["dataset"], [source["config"]], source["split"], cache_dir)
    stored = split.cast_column("mask", datasets.Image(decode=False))[int(source["row"])]["mask"]
    size = _label_map(row["mask"]).shape[0]
    return apply_edit(resize_label_map(decode_mask(stored), size), PlacedNodule.from_record(row["edit"]))


@contextlib.contextmanager
def torch_threads(count: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _label_map(value) -> np.ndarray:
    if isinstance(value, dict):
        return decode_mask(value)
    return np.asarray(value)
