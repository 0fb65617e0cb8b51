"""The recipe's slice datasets as the models read them: loading splits, checking them, and one row at a model's size.

Training (:mod:`lung_diffusers.training.slice_data`), synthesis (masks from a dataset) and the evaluations all
load a prepared dataset (a local folder or a Hub repo id) through :func:`load_slice_dataset`. The number of
classes of a model follows its dataset configs (:func:`num_classes_for_configs`), not the labels present.
NumPy only, no torch: the recipe's worker processes import this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import datasets
import numpy as np
import pyarrow.parquet
from tqdm.auto import tqdm

from ..ct import LABEL_NAMES, MALIGNANCY_LABEL_NAMES, resize_label_map
from .masks import resize_ct_image

# The number of classes follows the config, not the values present: a healthy slice has no nodule
# pixel, yet its model must know class 5.
CONFIG_CLASSES = {"healthy": len(LABEL_NAMES), "nodule": len(LABEL_NAMES), "malignancy": len(MALIGNANCY_LABEL_NAMES)}
REQUIRED_COLUMNS = ("image", "mask")


def num_classes_for_configs(configs: Sequence[str]) -> int:
    """Classes of a model trained on these dataset configs (6 for healthy/nodule, 7 for malignancy).

    ``healthy`` goes with either: its masks hold no nodule (labels 0-4 mean the same in both schemes), so a
    7-class model can learn its anatomy from ``healthy`` beside ``malignancy``'s nodule slices.

    Raises:
        ValueError: an unknown config, or ``malignancy`` mixed with ``nodule`` (there 5 means benign nodule,
            in ``nodule`` any nodule).
    """
    if not configs:
        raise ValueError("name at least one dataset config (healthy, nodule or malignancy)")
    unknown = sorted(set(configs) - set(CONFIG_CLASSES))
    if unknown:
        raise ValueError(f"unknown dataset config(s) {unknown}; the recipe's configs are {sorted(CONFIG_CLASSES)}")
    classes = {CONFIG_CLASSES[c] for c in configs if c != "healthy"} or {CONFIG_CLASSES["healthy"]}
    if len(classes) > 1:
        raise ValueError(
            "the 'malignancy' config (5 = benign, 6 = malignant nodule) cannot be mixed with 'nodule' (5 = any "
            "nodule): train a 7-class model on 'malignancy' (with 'healthy' if you like), or a 6-class one on "
            "'healthy' and 'nodule'"
        )
    return classes.pop()


def load_slice_dataset(
    name_or_path: str, configs: Sequence[str], split: str, cache_dir: str | None = None
) -> datasets.Dataset:
    """One split of one or several configs of a recipe dataset (a local folder or a Hub repo id), concatenated."""
    parts = []
    for config in configs:
        try:
            parts.append(_load_split(str(name_or_path), config, split, cache_dir))
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(f"cannot load split {split!r} of config {config!r} from {str(name_or_path)!r}: {error}") from error
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _load_split(name_or_path: str, config: str, split: str, cache_dir: str | None) -> datasets.Dataset:
    if not Path(name_or_path).is_dir():
        return datasets.load_dataset(name_or_path, config, split=split, cache_dir=cache_dir)
    # datasets (5.x) keys its cache of a local folder by the folder's name and the card's file patterns only:
    # a rebuilt folder (the recipe's --overwrite), or another folder of the same name, would silently load
    # the old rows. Given the files themselves, the parquet builder keys its cache by their paths and times.
    builder = datasets.load_dataset_builder(name_or_path, config, cache_dir=cache_dir)
    files = dict(builder.config.data_files or {})
    if split not in files:
        raise ValueError(f"the config has no {split!r} split (it has {sorted(files)})")
    shards = [str(f) for f in files[split]]
    if not shards or not all(f.endswith(".parquet") for f in shards):
        return datasets.load_dataset(name_or_path, config, split=split, cache_dir=cache_dir)
    if sum(pyarrow.parquet.ParquetFile(f).metadata.num_rows for f in shards) == 0:
        raise ValueError("it has no rows")
    return datasets.load_dataset("parquet", data_files={split: shards}, split=split, cache_dir=cache_dir)


def check_slice_dataset(dataset: datasets.Dataset, num_classes: int, description: str = "dataset") -> None:
    """Fail before any compute is spent: missing columns, no rows, unreadable, colour or non-square images,
    image/mask size mismatch, labels out of range.

    Reads every mask once (PNG decoding only, no resizing).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"the {description} lacks column(s) {missing} (it has {dataset.column_names}); train on a dataset made by "
            "dataset_scripts/prepare_luna16.py, or rename your columns to 'image' (CT slice) and 'mask' (label map)"
        )
    if len(dataset) == 0:
        raise ValueError(f"the {description} has no rows; check the split and config names")
    raw = dataset.select_columns(list(REQUIRED_COLUMNS)).cast_column("image", datasets.Image(decode=False))
    raw = raw.cast_column("mask", datasets.Image(decode=False))
    for index, row in enumerate(tqdm(raw, desc=f"checking the {description}", unit="slice", leave=False)):
        image, mask = _decode_png(row["image"]), _decode_png(row["mask"])
        if image is None or mask is None:
            raise ValueError(f"row {index} of the {description}: the image or mask cannot be decoded")
        if image.ndim != 2 or mask.ndim != 2:
            raise ValueError(f"row {index} of the {description}: image and mask must be single-channel (grayscale) PNGs")
        if image.shape != mask.shape:
            raise ValueError(
                f"row {index} of the {description}: image is {image.shape[1]}x{image.shape[0]} but its mask is "
                f"{mask.shape[1]}x{mask.shape[0]}; they must have the same size"
            )
        if image.shape[0] != image.shape[1]:
            # Resizing to resolution x resolution would distort the anatomy without a word.
            raise ValueError(
                f"row {index} of the {description}: the slice is {image.shape[1]}x{image.shape[0]}; slices must be "
                "square (the recipe makes them so)"
            )
        if mask.max(initial=0) >= num_classes:
            raise ValueError(
                f"row {index} of the {description}: mask label {int(mask.max())} is out of range for a {num_classes}-class "
                f"model (labels 0-{num_classes - 1}); check the dataset config"
            )


def _decode_png(value: dict) -> np.ndarray | None:
    if value.get("bytes") is None:
        return cv2.imread(value["path"], cv2.IMREAD_UNCHANGED)
    return cv2.imdecode(np.frombuffer(value["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)


def resized_slice(row: dict, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """A row's CT slice (uint8 lung-window grey levels) and label map at ``resolution``, as the models see them:
    area averaging for the image, majority vote for the mask."""
    image = resize_ct_image(np.asarray(row["image"].convert("L")), resolution)
    return image, resize_label_map(np.asarray(row["mask"]), resolution)
