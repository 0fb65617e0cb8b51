"""training/train_prior_segmentation.py (lung_diffusers.training.prior_segmentation) end to end, resumed, and its
bad options, on a tiny random prior and a tiny recipe-shaped dataset (issue 9, item 4)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from lung_diffusers.segmentation import IMAGE_ONLY, WITH_PRIOR, load_segmentation_unet


@pytest.fixture(scope="module")
def script():
    """What ``training/train_prior_segmentation.py`` runs."""
    from lung_diffusers.training import prior_segmentation

    return prior_segmentation


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
