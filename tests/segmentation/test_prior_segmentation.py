"""Prior-aware segmentation (issue 9, item 4): the scores and their bootstrap intervals on cases with known answers,
the two U-Nets, the prior cache, and training/train_prior_segmentation.py end to end (and resumed) on a tiny
random prior and a tiny recipe-shaped dataset."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from lung_support import make_pipe, save_tiny_prior, tiny_unet, write_tiny_recipe

from lung_diffusers.segmentation import (
    IMAGE_ONLY,
    WITH_PRIOR,
    anomaly_priors,
    bootstrap_interval,
    build_segmentation_unet,
    dice_and_iou,
    load_segmentation_unet,
    paired_bootstrap_interval,
    predict_nodule_mask,
    save_segmentation_unet,
)


@pytest.fixture(scope="module")
def script():
    """What ``training/train_prior_segmentation.py`` runs."""
    from lung_diffusers.training import prior_segmentation

    return prior_segmentation


# ---------------------------------------------------------------------------------------------- scores


def test_dice_and_iou_of_known_masks():
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True  # 4 pixels
    prediction = np.zeros((4, 4), bool)
    prediction[:2, :3] = True  # 6 pixels, 4 of them right
    dice, iou = dice_and_iou(prediction, truth)
    assert dice == pytest.approx(2 * 4 / 10) and iou == pytest.approx(4 / 6)
    assert dice == pytest.approx(2 * iou / (1 + iou))  # the identity between the two
    assert dice_and_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)  # nothing to find, nothing found
    assert dice_and_iou(np.zeros((3, 3)), np.eye(3)) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        dice_and_iou(np.zeros((3, 3)), np.zeros((3, 4)))


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    few, many = rng.uniform(0.3, 0.9, 10), rng.uniform(0.3, 0.9, 400)
    small, large = bootstrap_interval(few, n_resamples=2000), bootstrap_interval(many, n_resamples=2000)
    assert small.low < small.mean < small.high and large.low < large.mean < large.high
    assert small.mean == pytest.approx(few.mean()) and small.images == 10 and small.confidence == 0.95
    assert large.high - large.low < (small.high - small.low) / 3  # about 1/sqrt(40) as wide
    # The usual normal-theory interval of a mean: the bootstrap agrees on a large sample.
    half = 1.96 * many.std(ddof=1) / np.sqrt(many.size)
    assert large.low == pytest.approx(many.mean() - half, abs=0.01)
    assert bootstrap_interval(few, n_resamples=2000, seed=3) == bootstrap_interval(few, n_resamples=2000, seed=3)
    one = bootstrap_interval([0.7])
    assert one.mean == 0.7 and np.isnan(one.low) and str(one) == "0.700"  # no interval from one image
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval([0.5, float("nan")])


def test_a_paired_interval_sees_a_consistent_gain_that_unpaired_intervals_hide():
    rng = np.random.default_rng(1)
    hardness = rng.uniform(0.1, 0.9, 30)  # images differ far more than the two models do
    without = hardness
    with_prior = np.clip(hardness + rng.uniform(0.02, 0.06, 30), 0, 1)
    a, b = bootstrap_interval(with_prior, n_resamples=2000), bootstrap_interval(without, n_resamples=2000)
    assert a.low < b.high  # the two intervals overlap
    gain = paired_bootstrap_interval(with_prior, without, n_resamples=2000)
    assert 0 < gain.low < gain.mean < gain.high  # yet every image gained: the paired interval excludes 0
    assert paired_bootstrap_interval([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]).low == pytest.approx(0.1)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap_interval([0.5, 0.6], [0.5])


# ---------------------------------------------------------------------------------------------- the U-Nets


def test_the_two_unets_differ_only_in_the_prior_channel(tmp_path):
    torch.manual_seed(0)
    with_prior = build_segmentation_unet(WITH_PRIOR, features=(4, 4, 8, 8, 16, 4))
    torch.manual_seed(0)
    image_only = build_segmentation_unet(IMAGE_ONLY, features=(4, 4, 8, 8, 16, 4))
    assert with_prior.conv_0.conv_0.conv.in_channels == 2 and image_only.conv_0.conv_0.conv.in_channels == 1
    shapes = {name: p.shape for name, p in with_prior.named_parameters()}
    differing = [name for name, p in image_only.named_parameters() if shapes[name] != p.shape]
    assert differing == ["conv_0.conv_0.conv.weight"]

    rng = np.random.default_rng(0)
    image, prior = rng.random((37, 50), np.float32), rng.normal(0, 0.1, (37, 50)).astype(np.float32)
    probability, mask = predict_nodule_mask(with_prior, image, prior, threshold=0.5)  # any size: padded to 16
    assert probability.shape == mask.shape == (37, 50) and ((probability >= 0.5) == mask).all()
    with pytest.raises(ValueError, match="takes the slice and a prior"):
        predict_nodule_mask(with_prior, image)
    with pytest.raises(ValueError, match="takes no prior"):
        predict_nodule_mask(image_only, image, prior)
    with pytest.raises(ValueError, match="variant"):
        build_segmentation_unet("both")

    config = {"variant": WITH_PRIOR, "features": [4, 4, 8, 8, 16, 4], "dropout": 0.2, "trained_steps": 3}
    save_segmentation_unet(with_prior, tmp_path / "unet", config)
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json", "model.safetensors"]
    loaded, loaded_config = load_segmentation_unet(tmp_path / "unet")
    assert loaded_config == config
    np.testing.assert_array_equal(predict_nodule_mask(loaded, image, prior)[0], probability)
    with pytest.raises(FileNotFoundError, match="no saved segmentation U-Net"):
        load_segmentation_unet(tmp_path)


def test_priors_are_cached_by_slice_and_setting(tmp_path, monkeypatch):
    from lung_diffusers.segmentation import priors

    pipe = make_pipe(tiny_unet())
    rng = np.random.default_rng(0)
    images = [rng.random((16, 16), np.float32) for _ in range(2)]
    first = anomaly_priors(pipe, images, 0.5, 4, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and first[0].shape == (16, 16)
    assert not np.array_equal(first[0], first[1])

    calls = []
    real_map = priors.anomaly_map
    monkeypatch.setattr(priors, "anomaly_map", lambda *a, **k: calls.append(a) or real_map(*a, **k))
    again = anomaly_priors(pipe, images, 0.5, 4, cache_dir=tmp_path, progress=False)
    assert not calls and all(np.array_equal(a, b) for a, b in zip(first, again))  # all from the cache
    other = anomaly_priors(pipe, images[:1], 0.25, 4, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1 and not np.array_equal(other[0], first[0])  # another noise level: computed
    anomaly_priors(pipe, images[:1], 0.5, 4, cache_dir=tmp_path, model_id="another prior", progress=False)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npy"))) == 4


# ---------------------------------------------------------------------------------------------- the script


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory):
    return write_tiny_recipe(tmp_path_factory.mktemp("segmentation-recipe"))


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    return save_tiny_prior(tmp_path_factory.mktemp("segmentation-prior") / "prior")


def tiny_argv(recipe, prior, output, *extra):
    return [
        "--dataset", str(recipe), "--prior_pipeline", str(prior), "--output_dir", str(output),
        "--image_size", "64", "--crop_size", "32", "--prior_steps", "4", "--nodule_diameter_mm", "4", "6",
        "--max_healthy_train_slices", "2", "--synthetic_per_slice", "2", "--features", "4", "4", "8", "8", "16", "4",
        "--train_batch_size", "4", "--learning_rate", "3e-3", "--lr_scheduler", "constant", "--lr_warmup_steps", "0",
        "--bootstrap_resamples", "200", "--figure_rows", "2", *extra,
    ]  # fmt: skip


def test_the_script_trains_both_unets_and_compares_them(script, tiny_recipe, tiny_prior, tmp_path):
    from lung_diffusers import is_synthetic

    output = tmp_path / "run"
    args = script.parse_args(tiny_argv(tiny_recipe, tiny_prior, output, "--max_train_steps", "100"))
    report = script.main(args)

    assert json.loads((output / script.REPORT_FILE).read_text()) == report
    patients = report["settings"]["patients"]
    assert patients["train"] == ["LIDC-IDRI-0002", "LIDC-IDRI-0003"]
    assert patients["test-synthetic"] == patients["test-real"] == ["LIDC-IDRI-0001"]
    slices = report["settings"]["slices"]
    # 3 real nodule train slices + 2 healthy slices x 2 synthetic draws; 3 + 2 test slices.
    assert [s[2] for s in slices["train"]] == [False] * 3 + [True] * 4
    assert len(slices["test-synthetic"]) == 3 and len(slices["test-real"]) == 2
    for name, images in (("test-synthetic", 3), ("test-real", 2)):
        summary = report["sets"][name]
        assert summary["images"] == images
        for variant in (WITH_PRIOR, IMAGE_ONLY):
            dice, iou = summary[variant]["dice"], summary[variant]["iou"]
            assert 0 <= dice["low"] <= dice["mean"] <= dice["high"] <= 1 and iou["mean"] <= dice["mean"]
        gain = summary["with-prior minus image-only"]["dice"]
        assert gain["mean"] == pytest.approx(summary[WITH_PRIOR]["dice"]["mean"] - summary[IMAGE_ONLY]["dice"]["mean"])
    # Bright discs in dark lungs are easy: 100 steps of a tiny U-Net find the real nodule (the random prior only
    # confuses the other U-Net, so only the image-only one is held to it).
    assert report["sets"]["test-real"][IMAGE_ONLY]["dice"]["mean"] > 0.5

    with open(output / script.CSV_FILE) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * (3 + 2)
    real = [r for r in rows if r["set"] == "test-real" and r["variant"] == IMAGE_ONLY]
    assert np.mean([float(r["dice"]) for r in real]) == pytest.approx(
        report["sets"]["test-real"][IMAGE_ONLY]["dice"]["mean"], abs=1e-5
    )
    assert (output / script.TABLE_FILE).read_text().startswith("# Prior-aware nodule segmentation")
    for figure in ("figure-test-synthetic.png", "figure-test-real.png", script.LOSS_FIGURE):
        assert (output / figure).is_file()
    assert is_synthetic(output / "figure-test-synthetic.png") and is_synthetic(output / "figure-test-real.png")
    for variant, channels in ((WITH_PRIOR, 2), (IMAGE_ONLY, 1)):
        model, config = load_segmentation_unet(output / variant / "model")
        assert config["trained_steps"] == 100 and model.conv_0.conv_0.conv.in_channels == channels
        assert len(script.read_losses(output / variant / script.LOSS_FILE)) == 100
    # One cached map per distinct slice: the tiny recipe's two real test slices are copies of two train slices.
    assert len(list((output / "priors").glob("*.npy"))) == 7 + 3 + 2 - 2


def test_an_interrupted_run_resumes_to_the_same_weights(script, tiny_recipe, tiny_prior, tmp_path, monkeypatch):
    common = ("--variants", WITH_PRIOR, "--checkpointing_steps", "2", "--figure_rows", "0")
    straight = tmp_path / "straight"
    script.main(script.parse_args(tiny_argv(tiny_recipe, tiny_prior, straight, "--max_train_steps", "4", *common)))

    resumed = tmp_path / "resumed"
    argv = tiny_argv(tiny_recipe, tiny_prior, resumed, "--max_train_steps", "4", *common)
    real_step = script.training_batch

    def killed_after_step_2(items, transform, seed, step, *rest):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(items, transform, seed, step, *rest)

    monkeypatch.setattr(script, "training_batch", killed_after_step_2)
    assert script.cli(argv) == 130
    assert not (resumed / WITH_PRIOR / "model").exists() and (resumed / WITH_PRIOR / "checkpoint-2").is_dir()
    monkeypatch.setattr(script, "training_batch", real_step)
    report = script.main(script.parse_args(argv))

    a, _ = load_segmentation_unet(straight / WITH_PRIOR / "model")
    b, _ = load_segmentation_unet(resumed / WITH_PRIOR / "model")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=name)
    assert script.read_losses(straight / WITH_PRIOR / "loss.csv") == script.read_losses(resumed / WITH_PRIOR / "loss.csv")
    assert json.loads((straight / script.REPORT_FILE).read_text())["sets"] == report["sets"]

    # Run again: the U-Net is finished and the priors cached, so nothing is trained or mapped.
    monkeypatch.setattr(script, "training_batch", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(
        "lung_diffusers.segmentation.priors.anomaly_map", lambda *a, **k: pytest.fail("mapped again")
    )
    assert script.main(script.parse_args(argv))["sets"] == report["sets"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--crop_size": "16"}, "--crop_size must be a multiple of 16, at least 32"),
        ({"--test_split": "train"}, "must differ"),
        ({"--prior_pipeline": "missing"}, "no saved pipeline"),
        ({"--noise_level": "0.1"}, "--noise_level must be in (0, 1] and reach"),
        ({"--train_split": "validation"}, "could not load split 'validation'"),
    ],
)
def test_bad_options_are_refused(script, tiny_recipe, tiny_prior, tmp_path, capsys, change, message):
    options = {
        "--dataset": str(tiny_recipe),
        "--prior_pipeline": str(tiny_prior),
        "--output_dir": str(tmp_path / "out"),
        "--image_size": "64",
        "--prior_steps": "4",
        "--crop_size": "32",
    }
    options.update(change)
    argv = [item for pair in options.items() for item in pair]
    assert script.cli(argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()
