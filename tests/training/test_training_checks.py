"""Bad arguments and bad data fail with a clear error before a model is built or a step is spent.

The number of classes follows the dataset configs (healthy/nodule: 6, malignancy: 7), not the labels present.
"""

from __future__ import annotations

import numpy as np
import pytest
from lung_support import phantom_rows, reset_accelerate, write_slice_dataset
from training_support import TINY_MODEL


class ModelBuilt(Exception):
    """Raised by the patched ``build_model``: the run got past its checks."""


@pytest.fixture
def no_model(train_sdm, monkeypatch):
    """Make building a model fail loudly, and record the number of classes it was asked for."""
    asked = []

    def build_model(args, num_classes):
        asked.append(num_classes)
        raise ModelBuilt(f"a {num_classes}-class model was built")

    monkeypatch.setattr(train_sdm, "build_model", build_model)
    yield asked
    reset_accelerate()


def start(train_sdm, dataset, tmp_path, cache, *options, model="sdm"):
    """Parse and run the script up to the model (which ``no_model`` stops)."""
    argv = [*TINY_MODEL, "--resolution", "32", "--dataset_name", dataset, "--cache_dir", cache,
            "--output_dir", tmp_path / "run", "--max_train_steps", "1", *options]
    return train_sdm.main(train_sdm.parse_args([str(a) for a in argv], model))


# ------------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dataset_config", "healthy", "lesions"], r"unknown dataset config\(s\) \['lesions'\]"),
        (["--dataset_config", "nodule", "malignancy"], r"'malignancy' config .* cannot be mixed"),
        (["--crop_size", "48"], r"--crop_size must be between 1 and --resolution \(32\), got 48"),
        (["--resolution", "31"], r"31 px must be a multiple of 2"),
        (["--crop_size", "15"], r"15 px must be a multiple of 2"),
        (["--block_out_channels", "32,32,32,32", "--resolution", "36"], r"36 px must be a multiple of 8"),
        # An SDM samples whole slices (validation grids, users), so the slice side must fit the U-Net too.
        (["--block_out_channels", "32,32,32", "--resolution", "34", "--crop_size", "16"], r"34 px must be a multiple of 4"),
        (["--model", "ddpm", "--condition_dropout", "0.2"], r"--condition_dropout applies to --model sdm only"),
        (["--max_train_steps", "0"], r"--max_train_steps must be at least 1"),
        (["--noise_offset", "1.5"], r"--noise_offset must be in \[0, 1\]"),
        (["--checkpoints_total_limit", "0"], r"--checkpoints_total_limit must be at least 1"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_loaded(train_sdm, no_model, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        start(train_sdm, tmp_path / "no-such-dataset", tmp_path, tmp_path / "cache", *options)
    assert no_model == [] and not (tmp_path / "run").exists()


def test_the_command_line_reports_errors_in_one_line_and_exits_with_2(train_sdm, no_model, tmp_path, capsys):
    status = train_sdm.cli(
        ["--dataset_name", str(tmp_path), "--output_dir", str(tmp_path / "run"), "--resolution", "64", "--crop_size", "96"]
    )
    assert status == 2
    assert capsys.readouterr().err.strip() == "error: --crop_size must be between 1 and --resolution (64), got 96"


def test_the_recorded_command_hides_the_hub_token(train_sdm):
    # The command goes into the model card and training_args.json, which --push_to_hub makes public.
    for token in (["--hub_token", "hf_secret"], ["--hub_token=hf_secret"]):
        args = train_sdm.parse_args(["--dataset_name", "d", "--output_dir", "o", *token, "--seed", "3"])
        assert args.hub_token == "hf_secret"
        assert "hf_secret" not in args.command and "--seed 3" in args.command and "***" in args.command


def test_a_folder_that_is_not_a_checkpoint_is_refused_before_a_model_is_built(
    train_sdm, no_model, tmp_path, phantom_dataset, datasets_cache
):
    (tmp_path / "run" / "checkpoint-5").mkdir(parents=True)  # e.g. from another training script
    with pytest.raises(ValueError, match=r"checkpoint-5 is not a training checkpoint of this script"):
        start(train_sdm, phantom_dataset, tmp_path, datasets_cache, "--resume_from_checkpoint", "latest")
    with pytest.raises(FileNotFoundError, match=r"no such checkpoint folder"):
        start(train_sdm, phantom_dataset, tmp_path, datasets_cache, "--resume_from_checkpoint", tmp_path / "nowhere")
    assert no_model == []


def test_a_ddpm_prior_may_crop_slices_whose_side_does_not_fit_the_unet(train_sdm):
    # The prior only ever sees (and samples) crops: its slices may have any size.
    args = train_sdm.parse_args(["--dataset_name", "d", "--output_dir", "o", "--resolution", "250", "--crop_size", "64"], "ddpm")
    assert (args.model, args.dataset_config, args.crop_size) == ("ddpm", ["healthy"], 64)


# ------------------------------------------------------------------------------------------ data


def healthy(columns) -> dict:
    return {"healthy": {"train": columns}}


def with_change(rows: dict, row: int, column: str, value) -> dict:
    rows = {name: list(values) for name, values in rows.items()}
    rows[column][row] = value
    return rows


BAD_DATA = {
    "missing mask column": (
        healthy({"image": phantom_rows(3)["image"], "label": phantom_rows(3)["mask"]}),
        r"lacks column\(s\) \['mask'\]",
    ),
    "label out of range": (
        healthy(with_change(phantom_rows(3), 2, "mask", np.full((32, 32), 6, np.uint8))),
        r"row 2 .*: mask label 6 is out of range for a 6-class model \(labels 0-5\)",
    ),
    "image and mask sizes differ": (
        healthy(with_change(phantom_rows(3), 1, "mask", np.zeros((16, 16), np.uint8))),
        r"row 1 .*: image is 32x32 but its mask is 16x16",
    ),
    "colour image": (
        healthy(with_change(phantom_rows(3), 0, "image", np.zeros((32, 32, 3), np.uint8))),
        r"row 0 .*single-channel",
    ),
    "non-square slices": (
        healthy({"image": [np.zeros((32, 48), np.uint8)], "mask": [np.zeros((32, 48), np.uint8)]}),
        r"row 0 .*48x32.*square",
    ),
    "empty split": (
        healthy({"image": [], "mask": []}),
        r"split 'train' of config 'healthy' .*no (data|rows)",
    ),
    "config not in the dataset": (
        {"nodule": {"train": phantom_rows(2, nodule_label=5)}},
        r"split 'train' of config 'healthy' .*BuilderConfig 'healthy' not found",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_refused_before_a_model_is_built(train_sdm, no_model, tmp_path, datasets_cache, case):
    shards, message = BAD_DATA[case]
    dataset = write_slice_dataset(tmp_path / "data", shards)
    with pytest.raises(ValueError, match=message):
        start(train_sdm, dataset, tmp_path, datasets_cache, "--dataset_config", "healthy")
    assert no_model == []


def test_a_missing_dataset_folder_is_refused(train_sdm, no_model, tmp_path, datasets_cache):
    with pytest.raises(ValueError, match=r"cannot load split 'train' of config 'healthy' from '.*not-here'"):
        start(train_sdm, tmp_path / "not-here", tmp_path, datasets_cache, "--dataset_config", "healthy")
    assert no_model == []


def test_bad_validation_data_is_refused_before_a_model_is_built(train_sdm, no_model, tmp_path, datasets_cache):
    bad_test = with_change(phantom_rows(2), 1, "mask", np.full((32, 32), 9, np.uint8))
    dataset = write_slice_dataset(tmp_path / "data", {"healthy": {"train": phantom_rows(2), "test": bad_test}})
    with pytest.raises(ValueError, match=r"row 1 of the test split .*mask label 9 is out of range"):
        start(train_sdm, dataset, tmp_path, datasets_cache, "--dataset_config", "healthy", "--validation_steps", "1")
    assert no_model == []


# ------------------------------------------------------------------------------------------ classes


@pytest.mark.parametrize(
    ("configs", "classes"),
    [(["healthy"], 6), (["nodule"], 6), (["healthy", "nodule"], 6), (["malignancy"], 7)],
)
def test_the_number_of_classes_follows_the_configs_not_the_labels_present(
    train_sdm, no_model, tmp_path, datasets_cache, configs, classes
):
    # Only labels 0-4 are present in every config: a healthy-only dataset still makes a 6-class model (the
    # nodule class exists), and the malignancy one a 7-class model.
    dataset = write_slice_dataset(tmp_path / "data", {config: {"train": phantom_rows(2)} for config in configs})
    with pytest.raises(ModelBuilt):
        start(train_sdm, dataset, tmp_path, datasets_cache, "--dataset_config", *configs)
    assert no_model == [classes]


def test_malignant_nodules_are_valid_labels_only_in_the_malignancy_config(train_sdm, no_model, tmp_path, datasets_cache):
    malignant = phantom_rows(2, nodule_label=6)
    dataset = write_slice_dataset(tmp_path / "data", {"malignancy": {"train": malignant}, "nodule": {"train": malignant}})
    with pytest.raises(ModelBuilt):
        start(train_sdm, dataset, tmp_path, datasets_cache, "--dataset_config", "malignancy")
    assert no_model == [7]
    with pytest.raises(ValueError, match=r"mask label 6 is out of range for a 6-class model"):
        start(train_sdm, dataset, tmp_path, datasets_cache, "--dataset_config", "nodule")
    assert no_model == [7]
