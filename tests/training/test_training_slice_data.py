"""Training batches: flips keep the lung labels on their side; crops, flips and batches follow the seed and step."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
from lung_support import phantom_rows, phantom_slice, write_slice_dataset

from lung_diffusers.ct import LEFT_LUNG, RIGHT_LUNG
from lung_diffusers.training.slice_data import SliceTrainingData, StepBatchSampler, flip_left_right, load_slice_dataset


def mean_column(mask: np.ndarray, label: int) -> float:
    return float(np.nonzero(mask == label)[1].mean())


def test_a_flip_mirrors_the_slice_and_swaps_the_lung_labels():
    image, mask = phantom_slice(32, np.random.default_rng(0), nodule_label=5)
    assert mean_column(mask, LEFT_LUNG) > 16 > mean_column(mask, RIGHT_LUNG)  # radiological view
    flipped_image, flipped_mask = flip_left_right(image, mask)

    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    mirrored = mask[:, ::-1]
    np.testing.assert_array_equal(flipped_mask == LEFT_LUNG, mirrored == RIGHT_LUNG)
    np.testing.assert_array_equal(flipped_mask == RIGHT_LUNG, mirrored == LEFT_LUNG)
    others = ~np.isin(mirrored, (LEFT_LUNG, RIGHT_LUNG))
    np.testing.assert_array_equal(flipped_mask[others], mirrored[others])  # body, trachea, nodule: only mirrored
    # Label 2 is still the lung on the image's right: a flipped chest keeps the labels' meaning.
    assert mean_column(flipped_mask, LEFT_LUNG) > 16 > mean_column(flipped_mask, RIGHT_LUNG)
    # The inputs are left alone.
    assert mean_column(mask, LEFT_LUNG) > 16


@pytest.fixture(scope="module")
def slices():
    """Four phantom slices as the recipe's rows: PIL images in ``image`` and ``mask``."""
    import datasets
    import PIL.Image

    columns = phantom_rows(4, size=32, seed=5)
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    return datasets.Dataset.from_dict(
        {name: [PIL.Image.fromarray(v) for v in values] for name, values in columns.items()}, features=features
    )


def test_items_are_scaled_slices_and_label_maps(slices):
    item = SliceTrainingData(slices, 32)[(1, 0)]
    image, mask = np.asarray(slices[1]["image"]), np.asarray(slices[1]["mask"])
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
    torch.testing.assert_close(item["image"][0], torch.tensor(image, dtype=torch.float32) / 127.5 - 1)
    assert item["mask"].dtype == torch.long
    np.testing.assert_array_equal(item["mask"].numpy(), mask)


def test_random_flips_mirror_about_half_the_draws_and_keep_the_crop(slices):
    plain = SliceTrainingData(slices, 32, crop_size=24)
    flipping = SliceTrainingData(slices, 32, crop_size=24, random_flip=True)
    flipped = 0
    for seed in range(40):
        a, b = plain[(2, seed)], flipping[(2, seed)]
        if torch.equal(a["mask"], b["mask"]):
            assert torch.equal(a["image"], b["image"])
            continue
        flipped += 1
        image, mask = flip_left_right(a["image"][0].numpy(), a["mask"].numpy())
        np.testing.assert_array_equal(b["image"][0].numpy(), image)
        np.testing.assert_array_equal(b["mask"].numpy(), mask)
    assert 10 <= flipped <= 30


def test_crops_are_windows_of_the_slice_fixed_by_the_seed(slices):
    whole = SliceTrainingData(slices, 32)[(0, 0)]["mask"].numpy()
    data = SliceTrainingData(slices, 32, crop_size=16)
    corners = set()
    for seed in range(12):
        crop = data[(0, seed)]
        assert crop["image"].shape == (1, 16, 16) and crop["mask"].shape == (16, 16)
        again = data[(0, seed)]
        assert torch.equal(crop["image"], again["image"]) and torch.equal(crop["mask"], again["mask"])
        windows = [
            (top, left)
            for top in range(17)
            for left in range(17)
            if np.array_equal(whole[top : top + 16, left : left + 16], crop["mask"].numpy())
        ]
        assert windows, f"the crop of seed {seed} is not a window of the slice"
        corners.add(windows[0])
    assert len(corners) > 6  # the seed moves the window


def batches(sampler: StepBatchSampler, count: int) -> list:
    return list(islice(iter(sampler), count))


def test_a_sampler_started_at_step_k_continues_the_one_started_at_0():
    from_start = batches(StepBatchSampler(7, 3, seed=11), 9)
    for k in (1, 2, 5):
        assert batches(StepBatchSampler(7, 3, seed=11, start_micro_step=k), 9 - k) == from_start[k:]
    assert batches(StepBatchSampler(7, 3, seed=12), 9) != from_start


def test_every_row_is_drawn_once_per_epoch_with_its_own_crop_seed():
    draws = [pair for batch in batches(StepBatchSampler(6, 2, seed=3), 6) for pair in batch]  # two epochs
    assert sorted(row for row, _ in draws[:6]) == list(range(6)) == sorted(row for row, _ in draws[6:])
    assert [row for row, _ in draws[:6]] != [row for row, _ in draws[6:]]  # a fresh order per epoch
    assert len({seed for _, seed in draws}) == 12  # a row's second draw gets another crop and flip


def test_the_processes_of_a_distributed_run_share_out_the_single_process_batches():
    single = batches(StepBatchSampler(10, 4, seed=1), 5)
    per_process = [batches(StepBatchSampler(10, 2, seed=1, process_index=i, num_processes=2), 5) for i in range(2)]
    assert [a + b for a, b in zip(*per_process)] == single


def test_the_batches_of_a_resumed_run_are_those_of_the_uninterrupted_one(slices):
    data = SliceTrainingData(slices, 32, crop_size=16, random_flip=True)

    def loader(start):
        sampler = StepBatchSampler(len(data), 2, seed=4, start_micro_step=start)
        return list(islice(iter(torch.utils.data.DataLoader(data, batch_sampler=sampler)), 6 - start))

    straight, resumed = loader(0), loader(3)
    for a, b in zip(straight[3:], resumed, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_a_rebuilt_dataset_folder_is_read_again_not_from_the_cache(tmp_path):
    # datasets 5.x keys the cache of a local folder by its name and file patterns only.
    folder, cache = tmp_path / "luna16-slices", str(tmp_path / "cache")
    write_slice_dataset(folder, {"healthy": {"train": phantom_rows(3)}})
    assert len(load_slice_dataset(folder, ["healthy"], "train", cache)) == 3
    write_slice_dataset(folder, {"healthy": {"train": phantom_rows(5)}})
    assert len(load_slice_dataset(folder, ["healthy"], "train", cache)) == 5
    other = write_slice_dataset(tmp_path / "elsewhere" / "luna16-slices", {"healthy": {"train": phantom_rows(2)}})
    assert len(load_slice_dataset(other, ["healthy"], "train", cache)) == 2

