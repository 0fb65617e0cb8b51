"""The recipe's slice dataset as training batches: resizing, crops and flips, and the batches of each step.

Every random choice (which slices form a batch, crops, flips) is a pure function of the seed and the
micro-step, so a resumed run draws exactly the batches an uninterrupted one would. Loading and checking the
dataset is :mod:`lung_diffusers.data.slice_dataset` (synthesis and the evaluations load it too); its names can
still be imported from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import datasets
import numpy as np
import torch

from ..cascade import upsample_low_res
from ..ct import LEFT_LUNG, RIGHT_LUNG, model_range_from_grey
from ..data.masks import resize_ct_image
from ..data.slice_dataset import (  # noqa: F401 (loading and checks, importable from here as before)
    CONFIG_CLASSES,
    REQUIRED_COLUMNS,
    check_slice_dataset,
    load_slice_dataset,
    num_classes_for_configs,
    resized_slice,
)


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
        image, mask = resized_slice(self.dataset[int(index)], self.resolution)
        low_res = None
        if self.low_res_resolution is not None:
            # From the whole slice, then cropped: the crop sees what it would see inside a whole-slice upsampling.
            small = torch.from_numpy(model_range_from_grey(resize_ct_image(image, self.low_res_resolution)))
            low_res = upsample_low_res(small[None, None], self.resolution)[0, 0].numpy()
        rng = np.random.default_rng(seed)
        top, left = rng.integers(0, self.resolution - self.crop_size + 1, size=2)
        window = (slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        image, mask = image[window], mask[window]
        flip = self.random_flip and rng.random() < 0.5
        if flip:
            image, mask = flip_left_right(image, mask)
        item = {"image": torch.from_numpy(model_range_from_grey(image))[None], "mask": torch.from_numpy(np.ascontiguousarray(mask)).long()}
        if low_res is not None:
            low_res = low_res[window][:, ::-1] if flip else low_res[window]
            item["low_res"] = torch.from_numpy(np.ascontiguousarray(low_res))[None]
        return item


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
