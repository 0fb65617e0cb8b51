"""The sampler study (issue 18, part 4) with a tiny random SDM: the grid maps onto the scheduler registry, images
are reproducible per seed, the cache skips finished settings, and the default is the fewest steps within every
metric's spread of DDPM 1000."""

from __future__ import annotations

import math
import re
import shutil

import numpy as np
import PIL.Image
import pytest
from lung_support import phantom_label_map, save_tiny_sdm_pipeline, tiny_sdm

from lung_diffusers import LungSDMPipeline
from lung_diffusers.evaluation.sampler_study import (
    BASELINE,
    STOCHASTIC_GRID,
    THESIS_GRID,
    SamplerResult,
    SamplerSetting,
    choose_default,
    default_sampler_grid,
    quality_time_figure,
    quick_grid,
    results_table,
    run_sampler_study,
)
from lung_diffusers.pipelines import load_pipeline


@pytest.fixture(scope="module")
def pipe():
    from diffusers import DDPMScheduler

    pipe = LungSDMPipeline(unet=tiny_sdm(32), scheduler=DDPMScheduler(variance_type="learned_range"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


MASKS = np.stack([phantom_label_map(32), phantom_label_map(32, nodule_label=5)])


def test_the_grid_is_the_issue_s_and_maps_onto_the_registry():
    labels = [s.label for s in THESIS_GRID]
    assert labels == [
        "DDIM 50", "DPM-Solver++ 5", "DPM-Solver++ 10", "DPM-Solver++ 25", "UniPC 5", "UniPC 10",
        "Euler 25", "Heun 10", "DPM-Solver++ 25, guidance 1.5", "UniPC 10, guidance 1.5", "DDPM 1000",
    ]  # fmt: skip
    assert THESIS_GRID[-1] == BASELINE == SamplerSetting("DDPM", 1000)  # display names map to the registry's names
    # The default study adds fewer-step stochastic samplers and keeps the reference last (the cache has the rest).
    grid = default_sampler_grid()
    assert grid[-1] == BASELINE and grid.count(BASELINE) == 1
    assert set(THESIS_GRID) | set(STOCHASTIC_GRID) == set(grid) and len(grid) == len(set(grid))
    assert all(s.guidance == 1 and s.sampler in ("ddpm", "euler-ancestral") for s in STOCHASTIC_GRID)
    with pytest.raises(ValueError, match="unknown scheduler 'dpm-solver'; choose one of"):
        SamplerSetting("dpm-solver", 10)
    with pytest.raises(ValueError, match="cannot sample LungSDMPipeline"):
        SamplerSetting("repaint", 10)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        SamplerSetting("dpm", 0)


def test_images_depend_only_on_mask_and_seed_and_the_scheduler_comes_back(pipe):
    original = pipe.scheduler
    seen = {}

    def distance(real, synthetic):
        seen["shapes"] = real.shape, synthetic.shape
        return float(abs(real.mean() - synthetic.mean()))

    real = np.full((3, 32, 32), -500.0, np.float32)
    grid = quick_grid()[1:]
    both = run_sampler_study(
        pipe, MASKS, [0, 1], grid, distance=distance, real_images=real, progress=False, batch_size=2
    )
    assert pipe.scheduler is original
    one = run_sampler_study(pipe, MASKS, [1], grid, progress=False, batch_size=2)
    for result, alone, setting in zip(both, one, grid):
        assert result.setting == setting and result.images.shape == (2, 2, 32, 32) and result.num_images == 4
        np.testing.assert_array_equal(alone.images[0], result.images[1])  # seed 1, whatever the other seeds
        assert not np.allclose(result.images[0], result.images[1])  # another seed, another image
        assert result.seconds_per_image > 0 and result.unet_passes == setting.steps
        assert 0 <= result.lung_dice <= 1 and result.lung_noise_hu > 0
        assert result.distance == pytest.approx(abs(-500.0 - result.images.mean()), rel=1e-4)
        assert alone.distance is None
    assert seen["shapes"] == ((3, 32, 32), (4, 32, 32))
    with pytest.raises(ValueError, match="distance needs real_images"):
        run_sampler_study(pipe, MASKS, [0], grid, distance=distance)
    with pytest.raises(ValueError, match="seeds repeat"):
        run_sampler_study(pipe, MASKS, [0, 0], grid)


def test_the_cache_skips_finished_settings(tmp_path, monkeypatch):
    ddpm, dpm, unipc = quick_grid()
    cache = tmp_path / "cache"
    first = run_sampler_study(
        loaded(save_tiny_sdm_pipeline(tmp_path / "a")), MASKS, [0], [dpm], cache_dir=cache, progress=False
    )
    # The same weights and configs from another folder: the same images.
    pipe = loaded(shutil.copytree(tmp_path / "a", tmp_path / "b"))

    calls = []
    sample = LungSDMPipeline.__call__

    def counted(self, *args, **kwargs):
        calls.append(type(self.scheduler).__name__)
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(LungSDMPipeline, "__call__", counted)
    resumed = run_sampler_study(pipe, MASKS, [0], [dpm, unipc], cache_dir=cache, progress=False)
    assert calls and set(calls) == {"UniPCMultistepScheduler"}  # the warm-up and UniPC's batch
    assert resumed[0].from_cache and not resumed[1].from_cache
    assert resumed[0].seconds_per_image == first[0].seconds_per_image
    np.testing.assert_array_equal(resumed[0].images, first[0].images)

    calls.clear()
    again = run_sampler_study(pipe, MASKS, [0], [dpm, unipc], cache_dir=cache, progress=False)
    assert calls == [] and all(r.from_cache for r in again)
    run_sampler_study(pipe, MASKS, [1], [dpm], cache_dir=cache, progress=False)  # other seeds: other images
    assert calls
    names = sorted(re.sub("-[0-9a-f]{16}", "-KEY", p.name) for p in cache.iterdir())
    assert names == [  # no staged file left, and guidance 1.5 keeps its name
        "dpm-2-g1-KEY.json", "dpm-2-g1-KEY.json", "dpm-2-g1-KEY.npy", "dpm-2-g1-KEY.npy",
        "unipc-2-g1.5-KEY.json", "unipc-2-g1.5-KEY.npy",
    ]  # fmt: skip


def loaded(folder):
    return load_pipeline(folder, pipeline_class=LungSDMPipeline)


def result(sampler, steps, dice, noise, distance=None, guidance=1.0, seconds=1.0):
    return SamplerResult(SamplerSetting(sampler, steps, guidance), seconds, dice, noise, distance, num_images=4)


def test_the_default_is_the_fewest_steps_within_every_spread():
    spreads = {"lung_dice": 0.01, "lung_noise_hu": 3.0, "distance": 1.0}
    baseline = result("ddpm", 1000, 0.971, 50.0, 6.0, seconds=100.0)
    results = [
        baseline,
        result("dpm", 3, 0.975, 52.0, 9.0),  # fewest steps, but the distance is off
        result("unipc", 4, 0.970, 51.0, 6.2, guidance=1.5),  # within every spread, but guided
        result("heun", 5, 0.974, 52.0, math.nan),  # no distance: fails it
        result("unipc", 5, 0.972, 53.0, 6.5, seconds=0.6),
        result("dpm", 5, 0.974, 52.0, 6.4, seconds=0.5),  # as few steps as UniPC 5, and faster
        result("dpm", 10, 0.971, 50.0, 6.0),
    ]
    assert choose_default(results, BASELINE, spreads) == SamplerSetting("dpm", 5)
    assert choose_default(results, baseline, {"lung_dice": 0.01}) == SamplerSetting("dpm", 3)
    assert choose_default(results, baseline, {"lung_noise_hu": 0.5}) == SamplerSetting("dpm", 10)
    assert choose_default([baseline, results[1]], baseline, spreads) is None
    with pytest.raises(ValueError, match="unknown metric 'fid'"):
        choose_default(results, baseline, {"fid": 1.0})
    with pytest.raises(ValueError, match="not among the results"):
        choose_default(results[1:], BASELINE, spreads)
    with pytest.raises(ValueError, match="has no distance"):
        choose_default(results, result("ddpm", 1000, 0.97, 50.0), spreads)


def test_the_table_and_the_quality_time_figure(tmp_path):
    results = [
        result("ddpm", 1000, 0.971, 50.0, 6.0, seconds=90.0),
        result("dpm", 5, 0.974, math.nan, 6.4, seconds=0.5),
        result("unipc", 10, 0.969, 51.0, None, guidance=1.5, seconds=1.1),
    ]
    table = results_table(results).splitlines()
    assert (
        table[0]
        == "| sampler | steps | guidance | U-Net passes | s / image | lung Dice | lung noise (HU) | distance |"
    )
    assert table[3] == "| DPM-Solver++ | 5 | 1 |  | 0.5 | 0.974 | n/a | 6.40 |"
    assert table[4].endswith("| 1.5 |  | 1.1 | 0.969 | 51.0 | n/a |")
    assert "distance" not in results_table(results[2:])

    path = quality_time_figure(results, tmp_path / "figures" / "sampler_quality_time.png")
    with PIL.Image.open(path) as image:
        assert image.format == "PNG" and image.width > 3 * image.height / 2  # three panels side by side
    assert [p.name for p in path.parent.iterdir()] == ["sampler_quality_time.png"]  # no staged file left
    # The tolerance band around DDPM 1000 is drawn: the figure changes, and a spread of nothing changes nothing.
    banded = quality_time_figure(results, tmp_path / "banded.png", {"lung_dice": 0.05, "distance": 1.0})
    plain, with_band = np.asarray(PIL.Image.open(path)), np.asarray(PIL.Image.open(banded))
    assert plain.shape == with_band.shape and not np.array_equal(plain, with_band)
    empty = quality_time_figure(results, tmp_path / "empty.png", {})
    assert np.array_equal(plain, np.asarray(PIL.Image.open(empty)))
