"""The recipe's slice dataset as training batches: loading, checks, resizing, crops and flips.

Every random choice (which slices form a batch, crops, flips) is a pure function of the seed and the
micro-step, so a resumed run draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import datasets
import numpy as np
import pyarrow.parquet
import torch
from tqdm.auto import tqdm

from ..cascade import upsample_low_res
from ..data.masks import resize_ct_image, resize_label_map
from ..labels import LABEL_NAMES, LEFT_LUNG, MALIGNANCY_LABEL_NAMES, RIGHT_LUNG

# The number of classes follows the config, not the values present: a healthy slice has no nodule
# pixel, yet its model must know class 5.
CONFIG_CLASSES = {"healthy": len(LABEL_NAMES), "nodule": len(LABEL_NAMES), "malignancy": len(MALIGNANCY_LABEL_NAMES)}
REQUIRED_COLUMNS = ("image", "mask")


def num_classes_for_configs(configs: Sequence[str]) -> int:
    """Classes of a model trained on these dataset configs (6 for healthy/nodule, 7 for malignancy).

    Raises:
        ValueError: an unknown config, or ``malignancy`` mixed with the others (there 5 means benign nodule,
            elsewhere any nodule).
    """
    if not configs:
        raise ValueError("name at least one dataset config (healthy, nodule or malignancy)")
    unknown = sorted(set(configs) - set(CONFIG_CLASSES))
    if unknown:
        raise ValueError(f"unknown dataset config(s) {unknown}; the recipe's configs are {sorted(CONFIG_CLASSES)}")
    classes = {CONFIG_CLASSES[c] for c in configs}
    if len(classes) > 1:
        raise ValueError(
            "the 'malignancy' config (5 = benign, 6 = malignant nodule) cannot be mixed with 'healthy' or 'nodule' "
            "(5 = any nodule): train a 7-class model on 'malignancy' alone, or a 6-class one on the others"
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


def flip_left_right(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror a slice and its mask, swapping the lung labels so that label 2 stays the lung on the image's right.

    The recipe defines "left lung" by position (the patient's left is the image's right); a plain flip would
    put label 2 on the wrong side and teach the model that the labels mean nothing about sides.
    """
    flipped = mask[:, ::-1].copy()
    left, right = flipped == LEFT_LUNG, flipped == RIGHT_LUNG
    flipped[left], flipped[right] = RIGHT_LUNG, LEFT_LUNG
    return image[:, ::-1].copy(), flipped


class SliceTrainingData(torch.utils.data.Dataset):
    """CT slices (in [-1, 1]) and label maps, resized to ``resolution`` and randomly cropped to ``crop_size``.

    Items are indexed by ``(row, seed)``: the seed fixes the crop and flip of that draw.

    Args:
        dataset: rows with ``image`` and ``mask`` (PIL images, as the recipe writes them).
        resolution: side the slices are resized to (area averaging for images, majority vote for masks).
        crop_size: side of the random square crop (defaults to ``resolution``: no crop).
        random_flip: mirror half of the draws left-right, swapping the lung labels (:func:`flip_left_right`).
        low_res_resolution: also return ``low_res``, the input of a super-resolution stage: the whole slice
            resized to this side as a first stage is trained (area averaging), upsampled back to ``resolution``
            (:func:`lung_diffusers.cascade.upsample_low_res`) and cropped and flipped with the image.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        resolution: int,
        crop_size: int | None = None,
        random_flip: bool = False,
        low_res_resolution: int | None = None,
    ):
        crop_size = crop_size or resolution
        if not 0 < crop_size <= resolution:
            raise ValueError(f"crop_size must be between 1 and resolution={resolution}, got {crop_size}")
        if low_res_resolution is not None and not 0 < low_res_resolution < resolution:
            raise ValueError(f"low_res_resolution must be between 1 and resolution={resolution} - 1, got {low_res_resolution}")
        self.dataset = dataset.select_columns(list(REQUIRED_COLUMNS))
        self.resolution, self.crop_size, self.random_flip = resolution, crop_size, random_flip
        self.low_res_resolution = low_res_resolution

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        row = self.dataset[int(index)]
        image = resize_ct_image(np.asarray(row["image"].convert("L")), self.resolution)
        mask = resize_label_map(np.asarray(row["mask"]), self.resolution)
        low_res = None
        if self.low_res_resolution is not None:
            # From the whole slice, then cropped: the crop sees what it would see inside a whole-slice upsampling.
            small = _to_unit_range(resize_ct_image(image, self.low_res_resolution))
            low_res = upsample_low_res(small[None, None], self.resolution)[0, 0].numpy()
        rng = np.random.default_rng(seed)
        top, left = rng.integers(0, self.resolution - self.crop_size + 1, size=2)
        window = (slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        image, mask = image[window], mask[window]
        flip = self.random_flip and rng.random() < 0.5
        if flip:
            image, mask = flip_left_right(image, mask)
        item = {"image": _to_unit_range(image)[None], "mask": torch.from_numpy(np.ascontiguousarray(mask)).long()}
        if low_res is not None:
            low_res = low_res[window][:, ::-1] if flip else low_res[window]
            item["low_res"] = torch.from_numpy(np.ascontiguousarray(low_res))[None]
        return item


def _to_unit_range(windowed: np.ndarray) -> torch.Tensor:
    """uint8 lung-window grey levels -> float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(windowed)).float().div(127.5).sub(1.0)


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(row, seed)`` for micro-steps ``start, start + 1, ...``: a pure function of the seed and step.

    The rows are a fresh permutation per epoch; each micro-step takes ``batch_size * num_processes`` of them and
    this process its own ``batch_size``.
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        seed: int,
        start_micro_step: int = 0,
        process_index: int = 0,
        num_processes: int = 1,
    ):
        if num_rows < 1 or batch_size < 1:
            raise ValueError("need at least one row and a batch size of at least 1")
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.start, self.process_index, self.num_processes = start_micro_step, process_index, num_processes

    def _row(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_rows)
        return int(self._permutation(epoch)[offset])

    @lru_cache(maxsize=2)  # noqa: B019 (a sampler lives as long as its run)
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        global_batch = self.batch_size * self.num_processes
        while True:
            first = step * global_batch + self.process_index * self.batch_size
            positions = range(first, first + self.batch_size)
            yield [(self._row(p), int(np.random.SeedSequence([self.seed, p]).generate_state(1)[0])) for p in positions]
            step += 1
