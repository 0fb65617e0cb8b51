"""``training/evaluate_fidelity.py --upscaler``: a cascade measured at the upscaler's size (issue 17, item 6).

The placement of nodules and the report's goals are checked on known answers; the script end to end with a tiny
random 32 -> 64 px cascade on a 64-px recipe-shaped dataset (its images are noise: the plumbing, the verdict
fields, the figure's mark and resuming are what is checked, not the figures' values).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from lung_support import phantom_label_map, phantom_slice, tiny_sdm, tiny_upscaler

from lung_diffusers.evaluation import cascade_report
from lung_diffusers.evaluation.nodule_placement import drawn_nodules, label_map_digest, place_nodules

SPACING_MM = 2.0  # of the tiny dataset's 64-px slices


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def chest(side: int = 64, shift: int = 0) -> np.ndarray:
    return np.roll(phantom_label_map(side), shift, axis=0)


# ---------------------------------------------------------------------------------------------- known answers


def test_nodules_are_placed_in_mm_wholly_inside_a_lung_and_the_same_every_time():
    labels = chest()
    placements = place_nodules(labels, [4.0, 10.0], positions=3, pixel_mm=[SPACING_MM, SPACING_MM])
    assert [(p.diameter_mm, p.position) for p in placements] == [(4.0, 0), (4.0, 1), (4.0, 2), (10.0, 0), (10.0, 1), (10.0, 2)]
    for placement in placements:
        assert placement.diameter_px == placement.diameter_mm / SPACING_MM
        disc = placement.disc(labels.shape)
        assert disc.any() and np.isin(labels[disc], (2, 3)).all()  # every pixel of the nodule in a lung
        edited = placement.label_map(labels, 5)
        assert (edited[disc] == 5).all() and (edited[~disc] == labels[~disc]).all()
    assert place_nodules(labels, [4.0, 10.0], 3, SPACING_MM) == placements  # a pure function of the map
    assert place_nodules(chest(shift=2), [4.0], 3, SPACING_MM) != placements[:3]
    with pytest.raises(ValueError, match="fits nowhere inside the lungs"):
        place_nodules(labels, [60.0], 1, SPACING_MM)
    assert label_map_digest(labels) == label_map_digest(labels.copy()) != label_map_digest(chest(shift=1))


def test_drawn_nodules_are_components_with_their_circle_diameter():
    labels = chest()
    labels[20:24, 40:44] = 5  # 16 px
    labels[40:42, 40:42] = 5  # 4 px, apart
    found = sorted(drawn_nodules(labels, (5, 6), pixel_mm=SPACING_MM), key=lambda n: n[1])
    assert [int(pixels.sum()) for pixels, _ in found] == [4, 16]
    assert found[1][1] == pytest.approx(2 * math.sqrt(16 / math.pi) * SPACING_MM)


def summary(contrasts: dict, sharp: list, bicubic: list, agreement: list, real: list) -> dict:
    records = [
        {"kind": "nodule", "nodule": {"diameter_mm": d}, "contrast_hu": c, "stage_agreement_hu": None}
        for d, values in contrasts.items()
        for c in values
    ]  # undefined figures are None in the per-image lines
    records += [
        {"kind": "fidelity", "sharpness_ratio": s, "sharpness_ratio_bicubic": b, "stage_agreement_hu": a}
        for s, b, a in zip(sharp, bicubic, agreement)
    ]
    return cascade_report.summarize_cascade(records, real, list(contrasts))


def test_the_goals_on_known_figures():
    real = [{"diameter_mm": 3.0, "contrast_hu": 100.0}, {"diameter_mm": 8.0, "contrast_hu": 650.0}]
    good = summary({4.0: [100.0, 200.0], 6.0: [400.0] * 9 + [None], 10.0: [500.0, 310.0]},
                   [0.8, 1.25], [0.2, 0.25], [30.0, 50.0], real)  # fmt: skip
    assert good["nodule_contrast"]["4"] == {"images": 2, "median_hu": 150.0, "share_at_goal": 0.0, "undefined": 0}
    assert good["nodule_contrast"]["6"]["undefined"] == 1  # a nodule without a lung ring is left out
    assert good["nodule_contrast_goal_sizes"]["share_at_goal"] == 1.0  # the 4-mm images do not count
    assert good["real_nodule_contrast_goal_sizes"] == {"images": 1, "median_hu": 650.0, "share_at_goal": 1.0, "undefined": 0}
    assert good["sharpness"]["geometric_mean"] == pytest.approx(math.sqrt(0.8 * 1.25))
    assert all(cascade_report.cascade_goals(good).values())

    bad = summary({6.0: [400.0] * 8 + [100.0, 200.0]}, [0.5, 0.6], [0.9, 1.0], [70.0, 80.0], real)
    assert not any(cascade_report.cascade_goals(bad).values())  # 80% reach 300 HU; blurrier than bicubic; 75 HU
    empty = summary({6.0: []}, [], [], [], [])
    assert not any(cascade_report.cascade_goals(empty).values())  # nothing measured meets nothing


def test_the_card_table_says_each_verdict_and_old_reports_render_as_before():
    from lung_diffusers.training.model_card import fidelity_markdown

    row = {"name": "lung Dice", "synthetic": "0.9", "real": "0.95", "target": ">= 0.85"}
    old = fidelity_markdown({"rows": [row]})
    assert old.splitlines() == ["| | synthetic | real | target |", "|---|---|---|---|", "| lung Dice | 0.9 | 0.95 | >= 0.85 |"]
    new = fidelity_markdown({"rows": [{**row, "verdict": "met"}, {**row, "verdict": "information"}], "verdict": "v"})
    assert "| lung Dice | 0.9 | 0.95 | >= 0.85 | **met** |" in new and new.endswith("| information |\n\nv")


# ---------------------------------------------------------------------------------------------- the script


def write_recipe_dataset(root, shards: dict) -> None:
    """A folder shaped like the recipe's, with its ``seriesuid``, ``slice_index`` and ``spacing`` columns."""
    import datasets
    import PIL.Image

    features = datasets.Features({
        "image": datasets.Image(), "mask": datasets.Image(), "seriesuid": datasets.Value("string"),
        "slice_index": datasets.Value("int32"), "spacing": {"pixel_mm": datasets.Sequence(datasets.Value("float64"))},
    })  # fmt: skip
    card = ["---", "configs:"]
    for config, splits in shards.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, pairs in splits.items():
            rows = [
                {"image": PIL.Image.fromarray(image), "mask": PIL.Image.fromarray(mask), "seriesuid": f"{split}-scan",
                 "slice_index": index, "spacing": {"pixel_mm": [SPACING_MM, SPACING_MM]}}
                for index, (image, mask) in enumerate(pairs)
            ]  # fmt: skip
            path = root / "data" / config / f"{split}-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
            card += [f"  - split: {split}", f"    path: data/{config}/{split}-*.parquet"]
    (root / "README.md").write_text("\n".join([*card, "---", "", "# tests only", ""]))


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory):
    """64-px phantoms: 4 healthy and 1 nodule test slices (lungs of different sizes), 1 nodule training slice."""
    rng = np.random.default_rng(5)

    def pair(shift: int, nodule: bool = False):
        image, mask = phantom_slice(64, rng, 5 if nodule else None)
        return np.roll(image, shift, axis=0), np.roll(mask, shift, axis=0)

    root = tmp_path_factory.mktemp("cascade-data") / "slices"
    write_recipe_dataset(root, {
        "healthy": {"test": [pair(s) for s in (0, 1, -1, 2)], "train": [pair(0)]},
        "nodule": {"test": [pair(0, True)], "train": [pair(1, True)]},
    })  # fmt: skip
    return root


@pytest.fixture(scope="module")
def stage_folders(tmp_path_factory):
    """A random 32-px SDM and a random 32 -> 64 px upscaler with its training.json, as train_sdm.py leaves them."""
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMPipeline, LungSDMUpscalePipeline
    from lung_diffusers.training.model_card import write_training_card

    def schedule():
        return DDPMScheduler(variance_type="learned_range", clip_sample=True)

    root = tmp_path_factory.mktemp("cascade-stages")
    LungSDMPipeline(tiny_sdm(32), schedule()).save_pretrained(root / "base")
    LungSDMUpscalePipeline(tiny_upscaler(64, training_crop_size=32), schedule(), schedule()).save_pretrained(root / "upscaler")
    write_training_card(
        root / "upscaler", model="upscaler", dataset="slices", configs=["healthy", "nodule"], split="train",
        num_slices=3, steps=1, batch_size=2, resolution=64, crop_size=32, wall_time_s=5.0,
        command="training/train_sdm.py --model upscaler", ema=True, repo_id="tiny-upscaler",
    )  # fmt: skip
    return root / "base", root / "upscaler"


@pytest.fixture()
def counted_images(monkeypatch):
    """How many images the cascade is asked for, call by call; ``fail_after`` makes a later call raise Ctrl-C."""
    from lung_diffusers import LungSDMCombinedPipeline

    calls, original = [], LungSDMCombinedPipeline.__call__

    def counting(self, mask_image, *args, **kwargs):
        if counting.fail_after is not None and len(calls) >= counting.fail_after:
            raise KeyboardInterrupt
        calls.append(len(mask_image))
        return original(self, mask_image, *args, **kwargs)

    counting.fail_after = None
    monkeypatch.setattr(LungSDMCombinedPipeline, "__call__", counting)
    return calls, counting


def test_the_cascade_end_to_end_resumes_without_sampling_again(
    stage_folders, dataset_folder, tmp_path, counted_images, capsys
):
    from PIL import Image

    from lung_diffusers import is_synthetic
    from lung_diffusers.training import fidelity_evaluation

    base, upscaler = stage_folders
    output = tmp_path / "cascade"
    argv = [
        "--pipeline", base, "--upscaler", upscaler, "--dataset_name", dataset_folder, "--split", "test",
        "--cache_dir", tmp_path / "cache", "--max_masks", "4", "--seeds", "0", "--num_inference_steps", "2", "--upscaler_steps", "2",
        "--noise_level", "20", "--nodule_masks", "2", "--nodule_diameters_mm", "4", "10", "--nodule_positions", "1",
        "--nodule_seeds", "0", "--grid_rows", "2", "--batch_size", "3", "--output", output,
    ]  # fmt: skip
    argv = [str(a) for a in argv]
    calls, counting = counted_images

    # Interrupted after the first batch: its images are kept, with the folder's manifest.
    counting.fail_after = 1
    assert fidelity_evaluation.cli(argv) == 130
    assert "--overwrite to continue" in capsys.readouterr().err
    assert calls == [3] and len((output / "cascade_per_image.jsonl").read_text().splitlines()) == 3
    assert json.loads((output / ".lung-diffusers-manifest.json").read_text())["files"] == ["cascade_per_image.jsonl"]
    with pytest.raises(ValueError, match="pass --overwrite"):
        fidelity_evaluation.parse_args(argv)

    # Run again: only the other 5 images (4 of the 5 held-out masks, and 2 nodule-free mid-chest masks of all 5 with
    # 2 diameters each, minus 3) are sampled.
    counting.fail_after = None
    report = fidelity_evaluation.main(fidelity_evaluation.parse_args([*argv, "--overwrite", "--update_card"]))
    assert sum(calls) == 8 and max(calls) <= 3

    settings = report["settings"]
    assert (settings["resolution"], settings["low_res_size"], settings["upscaler_steps"]) == (64, 32, 2)
    assert (settings["scheduler"], settings["noise_level"], settings["guidance_scale"]) == ("DPM-Solver++", 20, 1.0)
    assert settings["upscaler_strength"] == 0.4  # the pipeline's default: the last share of the steps, from stage 1
    assert (settings["num_masks"], settings["nodule_masks"], settings["nodule_images"]) == (4, 2, 4)
    assert settings["real_nodule_splits"] == ["test", "train"] and settings["real_nodules"] == 2
    assert set(report["targets_met"]) == {
        "lung_dice", "lungs", "soft_tissue", "background",
        "nodule_contrast", "sharpness", "sharpness_vs_bicubic", "stage_agreement",
    }  # fmt: skip
    assert {row["verdict"] for row in report["rows"]} <= {"met", "missed", "information"}
    names = [row["name"] for row in report["rows"]]
    assert names[0].startswith("lung Dice") and names[-1].startswith("agreement with stage 1")
    assert report["rows"][0]["verdict"] == ("met" if report["targets_met"]["lung_dice"] else "missed")
    assert report["rows"][-1]["verdict"] == ("met" if report["targets_met"]["stage_agreement"] else "missed")
    assert "nodule contrast, placed 4-mm nodules" in names and "nodule contrast, placed 10-mm nodules" in names
    assert set(report["cascade"]["nodule_contrast"]) == {"4", "10"}
    assert report["cascade"]["nodule_contrast"]["10"]["images"] + report["cascade"]["nodule_contrast"]["10"]["undefined"] == 2
    assert report["cascade"]["sharpness"]["images"] == 4 and report["cascade"]["stage_agreement"]["images"] == 8
    # The phantoms' real nodules (grey 170 against lung at 25: about 800 HU) meet the contrast rule.
    assert report["cascade"]["real_nodule_contrast"]["median_hu"] > 600
    assert (
        "stage 1: DPM-Solver++, 2 steps at 32 px; stage 2: DPM-Solver++, 2 steps (the last 1 at strength 0.4, from stage 1 "
        "noised) at 64 px" in report["verdict"]
    )

    lines = (output / "cascade_per_image.jsonl").read_text().splitlines()
    assert len(lines) == 8 and sum("grid" in json.loads(line) for line in lines) == 2
    assert is_synthetic(output / "cascade_nodule_grid.png")
    with Image.open(output / "cascade_nodule_grid.png") as grid:
        assert grid.size == (4 * 64 * 3, 2 * 64 * 3)  # 4 panels, 2 rows, x3 at 64 px
        assert "stage 1" in grid.text["Title"] and "10-mm nodule" in grid.text["Rows"]
        assert grid.text["Settings"].startswith("stage 1: DPM-Solver++, 2 steps at 32 px")
    written = json.loads((output / "fidelity.json").read_text())
    assert written == json.loads((upscaler / "fidelity.json").read_text())
    card = (upscaler / "README.md").read_text()
    assert "| verdict |" in card and report["verdict"] in card and "cascade_nodule_grid.png" in card
    assert (upscaler / "cascade_nodule_grid.png").is_file()
    manifest = json.loads((output / ".lung-diffusers-manifest.json").read_text())
    assert manifest["complete"] and manifest["files"] == sorted(p.name for p in output.glob("[!.]*"))

    # A third run finds every image and writes the same report.
    calls.clear()
    fidelity_evaluation.main(fidelity_evaluation.parse_args([*argv, "--overwrite"]))
    assert calls == [] and json.loads((output / "fidelity.json").read_text()) == written

    # Other settings are other images: none is taken from the lines of the earlier ones, which are dropped.
    noise_at = argv.index("--noise_level") + 1
    fidelity_evaluation.main(fidelity_evaluation.parse_args([*argv[:noise_at], "21", *argv[noise_at + 1 :], "--overwrite"]))
    assert sum(calls) == 8 and len((output / "cascade_per_image.jsonl").read_text().splitlines()) == 8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--upscaler_steps": "26"}, "at most 25"),
        ({"--upscaler": "base"}, "holds a LungSDMPipeline, not a LungSDMUpscalePipeline"),
        ({"--nodule_diameters_mm": "-4"}, "must be positive"),
        ({"--upscaler_strength": "0"}, "--upscaler_strength must be in (0, 1]"),
    ],
)
def test_bad_cascade_options_are_one_line_and_exit_2(stage_folders, tmp_path, capsys, change, message):
    from lung_diffusers.training import fidelity_evaluation

    base, upscaler = stage_folders
    options = {"--pipeline": str(base), "--upscaler": str(upscaler), "--dataset_name": "unused", "--output": str(tmp_path / "out")}
    options.update({k: str(base) if v == "base" else v for k, v in change.items()})
    assert fidelity_evaluation.cli([item for pair in options.items() for item in pair]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "out").exists()
