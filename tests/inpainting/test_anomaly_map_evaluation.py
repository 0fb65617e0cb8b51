"""Evaluating mask-free anomaly maps (issue 9, item 3): the Dice threshold taken from the train patients, the
synthetic nodules, and training/evaluate_anomaly_maps.py end to end on a tiny random prior and a tiny recipe-shaped
dataset (the prior's output is noise there, so the model-free baseline is what carries a known answer). The metrics'
known answers: tests/evaluation/test_anomaly_scores.py."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from lung_support import box_chest

from lung_diffusers.ct import hu_from_image
from lung_diffusers.inpainting import (
    place_synthetic_nodule,
)
from lung_diffusers.inpainting.synthetic_nodules import lung_depth_mm, nodule_fits


@pytest.fixture(scope="module")
def script():
    """What ``training/evaluate_anomaly_maps.py`` runs."""
    from lung_diffusers.inpainting import anomaly_map_evaluation

    return anomaly_map_evaluation


# ---------------------------------------------------------------------------------------------- the threshold


def test_the_dice_threshold_comes_from_the_train_patients_only(script):
    """Train lesions score 0.6, test lesions 0.3: the train threshold misses every test lesion, and the test set's
    own best threshold (which would find them all) is reported only as the upper bound."""
    _, labels = box_chest()
    truth = np.zeros(labels.shape, bool)
    truth[12:15, 6:9] = True
    normal = np.random.default_rng(2).uniform(0, 0.2, labels.shape)

    def item(patient):
        return {"labels": labels, "truth": truth, "patient_id": patient}

    sets = {"train": [item("P2"), item("P3")], "test-synthetic": [item("P1")], "test-real": []}
    scores = {"train": [np.where(truth, 0.6, normal)] * 2, "test-synthetic": [np.where(truth, 0.3, normal)]}
    result = script.evaluate_level(scores, sets, "lungs")
    assert result["threshold"] == pytest.approx(0.6) and result["sets"]["train"]["dice"] == 1.0
    test = result["sets"]["test-synthetic"]
    assert test["auroc"] == 1.0 and test["dice"] == 0.0 and test["best_possible_dice"] == 1.0
    # Whatever the test maps hold, the threshold does not move.
    scores["test-synthetic"] = [np.where(truth, 0.9, normal)]
    assert script.evaluate_level(scores, sets, "lungs")["threshold"] == result["threshold"]

    with pytest.raises(ValueError, match="P2 are in both"):
        script.check_patients_apart(sets["train"], [item("P2")])


# ---------------------------------------------------------------------------------------------- synthetic nodules


def test_a_synthetic_nodule_has_its_size_density_and_place():
    image, labels = box_chest(64)
    nodule = place_synthetic_nodule(
        image, labels, (1.0, 1.0), np.random.default_rng(0), diameter_mm=(10, 10), hu=(-50, -50), texture_hu=0
    )
    lung = np.isin(labels, (2, 3))
    assert nodule.synthetic and nodule.mask.any() and lung[nodule.mask].all()
    assert nodule.mask.sum() == pytest.approx(math.pi * 5**2, rel=0.3)  # lobulated 10 mm disc, 1-mm pixels
    assert hu_from_image(nodule.image[nodule.mask]).mean() == pytest.approx(-50, abs=150)  # soft edge included
    inner = nodule.mask & (np.hypot(*np.indices(labels.shape) - np.array(nodule.center)[:, None, None]) < 2)
    assert hu_from_image(nodule.image[inner]).mean() == pytest.approx(-50, abs=10)
    far = np.hypot(*np.indices(labels.shape) - np.array(nodule.center)[:, None, None]) > 10
    assert np.array_equal(nodule.image[far], image[far] / np.float32(255))  # the rest of the slice is untouched

    again = place_synthetic_nodule(
        image, labels, (1.0, 1.0), np.random.default_rng(0), diameter_mm=(10, 10), hu=(-50, -50), texture_hu=0
    )
    assert np.array_equal(again.image, nodule.image)  # one seed, one nodule
    other = place_synthetic_nodule(image, labels, (1.0, 1.0), np.random.default_rng(1))
    assert other.center != nodule.center or other.diameter_mm != nodule.diameter_mm

    # Room: these lungs are 29 px wide, so 15 mm deep at 1 mm per pixel (30 mm at 2 mm).
    assert lung_depth_mm(labels, (1.0, 1.0)) == 15 and lung_depth_mm(labels, (2.0, 2.0)) == 30
    assert nodule_fits(labels, (1.0, 1.0), 20) and not nodule_fits(labels, (1.0, 1.0), 30)
    shrunk = place_synthetic_nodule(image, labels, (1.0, 1.0), np.random.default_rng(0), diameter_mm=(40, 40))
    assert shrunk.diameter_mm < 30 and lung[shrunk.mask].all()  # too big for the lung: the largest that fits
    with pytest.raises(ValueError, match="no lung"):
        place_synthetic_nodule(image, np.ones_like(labels), (1.0, 1.0), np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- the script


def test_the_script_end_to_end_on_a_tiny_prior(script, tiny_recipe, tiny_prior, tmp_path):
    from lung_diffusers import is_synthetic
    from lung_diffusers.evaluation import best_dice_threshold

    output = tmp_path / "evaluation"
    argv = [
        "--pipeline", str(tiny_prior), "--dataset_name", str(tiny_recipe), "--cache_dir", str(tmp_path / "cache"),
        "--image_size", "32", "--noise_levels", "0.2", "0.6", "--num_inference_steps", "10", "--scheduler", "ddim",
        "--max_train_slices", "2", "--nodule_diameter_mm", "4", "6", "--figure_rows", "1", "--output", str(output),
    ]  # fmt: skip
    args = script.parse_args(argv)
    report = script.main(args)

    assert json.loads((output / script.REPORT_FILE).read_text()) == report
    settings = report["settings"]
    assert settings["patients"] == {
        "train": ["LIDC-IDRI-0002", "LIDC-IDRI-0003"],
        "test-synthetic": ["LIDC-IDRI-0001"],
        "test-real": ["LIDC-IDRI-0001"],
    }
    assert settings["scheduler"] == "DDIMScheduler" and len(settings["slices"]["test-synthetic"]) == 3
    assert list(report["regions"]) == ["lungs", "body"]
    lungs = report["regions"]["lungs"]
    assert list(lungs["levels"]) == ["intensity", "0.2", "0.6"]
    assert lungs["levels"]["0.2"]["start_timestep"] == 111 and lungs["levels"]["0.6"]["start_timestep"] == 555
    # The baseline's threshold is the best Dice of the train set, rebuilt here from the same seeds.
    train = script.with_synthetic_nodules(
        script.load_rows(args, "healthy", "train", 2, 2 * args.nodule_diameter_mm[1]), args, stream=0
    )
    expected = best_dice_threshold(
        [t["image"] for t in train],
        [t["truth"] for t in train],
        [script.scored_region(t["labels"], "lungs") for t in train],
    )
    assert lungs["levels"]["intensity"]["threshold"] == pytest.approx(expected.threshold)
    # Bright nodules in dark lungs: the baseline separates them; the real nodule slices are listed one by one.
    baseline = lungs["levels"]["intensity"]["sets"]
    assert baseline["test-synthetic"]["auroc"] > 0.95 and baseline["test-real"]["auroc"] > 0.95
    assert [row["slice_index"] for row in lungs["real_slices"]] == [0, 1]
    assert all(0 <= row["0.6"]["auroc"] <= 1 and row["nodule_pixels"] > 0 for row in lungs["real_slices"])

    with open(output / script.CSV_FILE) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 3 * (2 + 3 + 2)  # regions x scores x slices
    assert (output / script.TABLE_FILE).read_text().startswith("# Mask-free anomaly maps")
    figures = sorted(output.glob("figure-*.png"))
    assert [f.name for f in figures] == sorted(
        script.figure_name(name, key) for name in ("test-synthetic", "test-real") for key in ("intensity", 0.2, 0.6)
    )
    assert all(is_synthetic(f) for f in figures)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--noise_levels": "0"}, "--noise_levels must be distinct shares"),
        ({"--test_split": "train"}, "must differ"),
        ({"--pipeline": "missing"}, "no saved pipeline"),
        ({"--nodule_diameter_mm": "9"}, None),  # argparse: two values needed
    ],
)
def test_bad_options_are_refused(script, tiny_recipe, tiny_prior, tmp_path, capsys, change, message):
    options = {"--pipeline": str(tiny_prior), "--dataset_name": str(tiny_recipe), "--output": str(tmp_path / "out")}
    options.update(change)
    argv = [item for pair in options.items() for item in pair]
    if message is None:
        with pytest.raises(SystemExit):
            script.cli(argv)
        return
    assert script.cli(argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()
