"""Bad arguments get one-line errors before anything is generated or written."""

from __future__ import annotations

import pytest

from lung_diffusers.cli import main


def test_help_lists_synthesize_without_loading_torch():
    import subprocess
    import sys

    code = (
        "import sys; from lung_diffusers.cli import build_parser; p = build_parser(); "
        "assert 'synthesize' in p.format_help(); assert 'torch' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def run_cli(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scheduler": "dpm-turbo"}, "unknown scheduler 'dpm-turbo'; choose one of dpm, unipc, ddim"),
        ({"num_images": 0}, "--num-images must be a positive integer, got 0"),
        ({"num_images": -5}, "--num-images must be a positive integer, got -5"),
        ({"batch_size": 0}, "--batch-size must be a positive integer"),
        ({"nodule_fraction": 1.5}, "--nodule-fraction must be between 0 and 1"),
        ({"guidance": -1}, "--guidance must be a finite number >= 0"),
        ({"scheduler": "ddpm", "steps": 2000}, "--steps must be between 1 and the scheduler's 1000 training steps"),
    ],
)
def test_bad_options_fail_before_anything_is_written(inputs, tmp_path, capsys, options, message):
    code, err = run_cli(inputs.argv(tmp_path / "out", **options), capsys)
    last = err.strip().splitlines()[-1]  # datasets may report loading the masks before
    assert code == 2 and last.startswith("lung-diffusers synthesize: error:") and message in last
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("masks", "checkpoint", "message"),
    [
        (":malignancy", "checkpoint", "the 'malignancy' config labels benign (5) and malignant (6) nodules, but this model has 6 classes"),
        (":nodule", "checkpoint_7", "the 'nodule' config labels any nodule 5, which this 7-class model reads as benign"),
        (":nodule", "checkpoint", "every mask of"),  # --nodule-fraction needs nodule-free masks
        ("/no/such/dataset", "checkpoint", "--masks /no/such/dataset: /no/such/dataset does not exist"),
    ],
)
def test_masks_that_do_not_fit_the_model_are_refused(inputs, tmp_path, capsys, masks, checkpoint, message):
    masks = masks if masks.startswith("/") else f"{inputs.masks}{masks}"
    code, err = run_cli(inputs.argv(tmp_path / "out", masks=masks, checkpoint=getattr(inputs, checkpoint)), capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("checkpoint", "./nopipe", "--pipeline ./nopipe: {cwd}/nopipe does not exist"),
        ("masks", "./missing", "--masks ./missing: {cwd}/missing does not exist"),
        ("masks", "./missing:healthy/train", "--masks ./missing: {cwd}/missing does not exist"),
        (
            "checkpoint",
            "someone/no-such-pipeline",
            "--pipeline someone/no-such-pipeline: neither a local folder nor a reachable Hub repo (there is no folder "
            "{cwd}/someone/no-such-pipeline; offline, and not in the local cache)",
        ),
        (
            "masks",
            "someone/no-such-masks",
            "--masks someone/no-such-masks: neither a local folder nor a reachable Hub repo (there is no folder "
            "{cwd}/someone/no-such-masks; offline, and not in the local cache)",
        ),
    ],
)
def test_a_missing_folder_is_not_called_a_bad_hub_repo(inputs, tmp_path, monkeypatch, capsys, option, value, message):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(inputs.argv(tmp_path / "out", **{option: value}), capsys)
    assert (code, err) == (2, f"lung-diffusers synthesize: error: {message.format(cwd=tmp_path)}\n")
    assert not (tmp_path / "out").exists()


def test_masks_without_the_lung_classes_are_refused(inputs, tmp_path, capsys):
    import datasets
    import numpy as np
    import PIL.Image

    folder = tmp_path / "binary-masks"
    (folder / "data").mkdir(parents=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1  # a foreground/background mask, not the recipe's label map
    datasets.Dataset.from_dict({"mask": [PIL.Image.fromarray(mask)] * 2}).to_parquet(str(folder / "data" / "train-0.parquet"))
    code, err = run_cli(inputs.argv(tmp_path / "out", masks=str(folder), nodule_fraction=None), capsys)
    assert code == 2 and "have no lung labels" in err, err


def test_an_output_folder_of_another_run_is_refused(reference_run, inputs, capsys):
    before = sorted(p.relative_to(reference_run) for p in reference_run.rglob("*"))
    code, err = run_cli(inputs.argv(reference_run, seed=4, steps=5), capsys)
    assert code == 2
    assert "holds another run" in err and "seed: 3 there, 4 now" in err and "num_inference_steps: 4 there, 5 now" in err
    assert sorted(p.relative_to(reference_run) for p in reference_run.rglob("*")) == before


def test_a_non_empty_folder_without_settings_is_refused(inputs, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    code, err = run_cli(inputs.argv(tmp_path / "out"), capsys)
    assert code == 2 and "is not empty and has no synthesis_settings.json" in err
