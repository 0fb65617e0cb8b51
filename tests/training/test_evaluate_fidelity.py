"""training/evaluate_fidelity.py (lung_diffusers.training.fidelity_evaluation).

The Dice rule is checked on real slices of the held-out patient (LIDC-IDRI-0001, prepared once per module by the
data recipe), and the script end to end with a tiny random pipeline: its output is noise, so only the plumbing and
the real-slice figures are checked. The metrics' known answers: tests/evaluation/test_fidelity.py.
"""

import json

import numpy as np
import pytest
from lung_support import box_chest, tiny_sdm

from lung_diffusers.evaluation import fidelity

HELD_OUT_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"  # LIDC-IDRI-0001


@pytest.fixture(scope="module")
def evaluate_fidelity():
    """What ``training/evaluate_fidelity.py`` runs."""
    from lung_diffusers.training import fidelity_evaluation

    return fidelity_evaluation


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------- real slices


@pytest.fixture(scope="module")
def held_out_dataset(shared_dir, tmp_path_factory):
    """LIDC-IDRI-0001 through the data recipe (every 8th healthy slice, the nodule slice): (folder, split)."""
    from lung_diffusers.data.luna16_dataset import prepare_luna16_dataset

    output = tmp_path_factory.mktemp("fidelity") / "luna16-0001"
    result = prepare_luna16_dataset(
        shared_dir / "data" / "lidc-mini",
        output,
        series_uids=[HELD_OUT_SERIES],
        healthy_stride=8,
        test_fraction=0.99,
        log=lambda line: None,
    )
    assert result.processed == [HELD_OUT_SERIES], result.failed
    return output, result.records[0].split


def test_real_mid_chest_slices_score_high(held_out_dataset, datasets_cache):
    """The rules are sane: real mid-chest slices at 64 px have a lung Dice above 0.8 and meet the HU targets."""
    from lung_diffusers.data.slice_dataset import load_slice_dataset
    from lung_diffusers.training.slice_data import SliceTrainingData

    folder, split = held_out_dataset
    dataset = load_slice_dataset(str(folder), ["healthy", "nodule"], split, datasets_cache)
    data = SliceTrainingData(dataset, 64)
    items = [data[(row, 0)] for row in range(len(data))]
    masks = [item["mask"].numpy() for item in items]
    hus = [fidelity.hu_from_model_range(item["image"][0].numpy(), (-1000, 400)) for item in items]
    figures = [fidelity.slice_fidelity(hu, mask, fidelity.soft_tissue_margin_px(64)) for hu, mask in zip(hus, masks)]
    chest = fidelity.mid_chest([fidelity.lung_mask(m).sum() for m in masks])
    assert chest.sum() >= 3
    dice = np.array([f["dice"] for f in figures])
    assert dice[chest].min() > 0.8, dice
    for name, below, above in (("lungs", -1000, -600), ("soft_tissue", -250, 250), ("background", -1000, -800)):
        medians = np.array([f[f"median_hu_{name}"] for f in figures])
        assert (below <= medians[chest]).all() and (medians[chest] < above).all(), (name, medians)
        assert below <= medians.mean() < above, (name, medians)  # slices with little lung are less clear-cut


# ---------------------------------------------------------------------------------------------- the script


@pytest.fixture(scope="module")
def tiny_pipeline_folder(tmp_path_factory):
    """A random 32-px LungSDMPipeline saved with a training.json, as training/train_sdm.py leaves it."""
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMPipeline
    from lung_diffusers.training.model_card import write_training_card

    pipe = LungSDMPipeline(unet=tiny_sdm(32), scheduler=DDPMScheduler(variance_type="learned_range"))
    folder = tmp_path_factory.mktemp("tiny") / "pipeline"
    pipe.save_pretrained(folder)
    write_training_card(
        folder,
        pipe,
        model="sdm",
        dataset="luna16-slices",
        configs=["healthy", "nodule"],
        split="train",
        num_slices=10,
        steps=1,
        batch_size=2,
        resolution=32,
        crop_size=None,
        wall_time_s=12.0,
        command="training/train_sdm.py --dataset_name luna16-slices --output_dir tiny",
        ema=True,
        repo_id="tiny-lung-sdm",
    )
    return folder


def test_script_end_to_end_writes_report_csv_grid_and_card(
    evaluate_fidelity, held_out_dataset, tiny_pipeline_folder, datasets_cache, tmp_path
):
    from lung_diffusers import is_synthetic

    folder, split = held_out_dataset
    output = tmp_path / "fidelity"
    argv = [
        "--pipeline", str(tiny_pipeline_folder), "--dataset_name", str(folder), "--split", split,
        "--cache_dir", datasets_cache, "--max_masks", "2", "--seeds", "0",
        "--num_inference_steps", "2", "--output", str(output), "--update_card",
    ]  # fmt: skip
    report = evaluate_fidelity.main(evaluate_fidelity.parse_args(argv))

    assert json.loads((output / "fidelity.json").read_text()) == json.loads(
        (tiny_pipeline_folder / "fidelity.json").read_text()
    )
    settings = report["settings"]
    assert settings["num_masks"] == 2 and settings["seeds"] == [0] and settings["resolution"] == 32  # the U-Net's
    assert settings["scheduler"] == "DPM-Solver++" and settings["guidance_scale"] == 1.0
    assert [row["name"].split(",")[0] for row in report["rows"]] == ["lung Dice", "lung Dice"] + ["median HU"] * 3
    assert set(report["targets_met"]) == {"lung_dice", "lungs", "soft_tissue", "background"}
    assert not report["targets_met"]["lung_dice"] and "missed: lung Dice" in report["verdict"]  # noise
    # The real slices of the held-out patient meet the HU targets and have a high lung Dice.
    # The real figures are those of the first and last rows (spread over the split), resized as in training.
    from lung_diffusers.data.slice_dataset import load_slice_dataset
    from lung_diffusers.training.slice_data import SliceTrainingData

    dataset = load_slice_dataset(str(folder), ["healthy", "nodule"], split, datasets_cache)
    items = [SliceTrainingData(dataset, 32)[(row, 0)] for row in (0, len(dataset) - 1)]
    hus = [fidelity.hu_from_model_range(item["image"][0].numpy(), (-1000, 400)) for item in items]
    expected = [fidelity.slice_fidelity(hu, item["mask"].numpy(), 2) for hu, item in zip(hus, items)]
    for key in ("dice", "median_hu_lungs", "median_hu_soft_tissue", "median_hu_background"):
        assert report["real"][key] == pytest.approx(np.mean([figures[key] for figures in expected]))

    lines = (output / "fidelity_per_image.csv").read_text().splitlines()
    assert lines[0].startswith("source,row,config,seriesuid,slice_index,seed")
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["real", "real", "synthetic", "synthetic"]
    assert is_synthetic(output / "fidelity_grid.png")
    from PIL import Image

    with Image.open(output / "fidelity_grid.png") as grid:
        assert grid.width == 3 * 32 * 6 and grid.height % (32 * 6) == 0  # x6 nearest-neighbour upscaling at 32 px

    card = (tiny_pipeline_folder / "README.md").read_text()
    assert "## Fidelity" in card and report["verdict"] in card and "| median HU, lungs |" in card
    assert "fidelity_grid.png" in card and (tiny_pipeline_folder / "fidelity_grid.png").is_file()
    assert "training/train_sdm.py --dataset_name luna16-slices" in card  # the training facts are kept

    # The folder lists what it holds; a second evaluation into it is refused at once without --overwrite.
    manifest = json.loads((output / ".lung-diffusers-manifest.json").read_text())
    assert manifest["tool"] == "evaluate_fidelity" and manifest["files"] == sorted(p.name for p in output.glob("[!.]*"))
    with pytest.raises(ValueError, match="earlier evaluate_fidelity run; pass --overwrite"):
        evaluate_fidelity.parse_args(argv)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--pipeline": "missing-folder"}, "no saved pipeline"),
        ({"--split": "validation"}, "validation"),
        ({"--resolution": "33"}, "multiple of 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    evaluate_fidelity, held_out_dataset, tiny_pipeline_folder, datasets_cache, tmp_path, capsys, change, message
):
    folder, split = held_out_dataset
    options = {
        "--pipeline": str(tiny_pipeline_folder),
        "--dataset_name": str(folder),
        "--split": split,
        "--cache_dir": datasets_cache,
        "--output": str(tmp_path / "out"),
    }
    options.update({k: str(tmp_path / v) if k == "--pipeline" else v for k, v in change.items()})
    assert evaluate_fidelity.cli([item for pair in options.items() for item in pair]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "out").exists()


def test_an_output_folder_of_someone_elses_files_is_refused_before_loading(
    evaluate_fidelity, tiny_pipeline_folder, tmp_path, capsys
):
    (tmp_path / "fidelity.json").write_text("mine")
    argv = ["--pipeline", str(tiny_pipeline_folder), "--dataset_name", str(tmp_path / "unused"), "--overwrite"]
    assert evaluate_fidelity.cli([*argv, "--output", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err and (tmp_path / "fidelity.json").read_text() == "mine"


def test_images_do_not_depend_on_the_batch(evaluate_fidelity, tiny_pipeline_folder):
    import argparse

    from lung_diffusers import LungSDMPipeline

    pipe = LungSDMPipeline.from_pretrained(tiny_pipeline_folder)
    pipe.set_progress_bar_config(disable=True)
    _, labels = box_chest()
    masks = np.stack([labels, np.where(labels > 0, 1, 0).astype(np.uint8)])  # the model's 32 px

    def images(batch_size):
        args = argparse.Namespace(seeds=[3], batch_size=batch_size, num_inference_steps=1, guidance_scale=1.0)
        return {index: hu for _, index, hu in evaluate_fidelity.sample_images(pipe, masks, args)}

    one, two = images(1), images(2)
    np.testing.assert_allclose(one[0], two[0], atol=1e-3)
    np.testing.assert_allclose(one[1], two[1], atol=1e-3)
