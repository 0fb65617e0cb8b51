"""Official SDM checkpoints convert exactly (shared/fixtures numeric references)."""

import argparse
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel, convert_sdm, convert_sdm_checkpoint
from lung_diffusers.convert_sdm import load_sdm_checkpoint, sdm_config_to_unet_config, sdm_scheduler_from_config
from lung_diffusers.convert_sdm import main as convert_main

TOLERANCE = 1e-5  # max|out_hat - out| / max|out|; each known porting mistake moves it by > 0.3


def relative_error(model, io, y_key, out_key):
    with torch.no_grad():
        out = model(io["x"], io["timesteps"], io[y_key]).sample
    return ((out - io[out_key]).abs().max() / io[out_key].abs().max()).item()


@pytest.mark.parametrize("fixture", ["small_reference", "rgb_reference"])
def test_fixture_converts_within_tolerance(fixture, request):
    state_dict, config, io = request.getfixturevalue(fixture)
    model = convert_sdm_checkpoint(state_dict, config)
    assert relative_error(model, io, "y", "out") <= TOLERANCE
    assert relative_error(model, io, "y_null", "out_null") <= TOLERANCE
    # Integer label maps are the same condition as the official one-hot maps.
    with torch.no_grad():
        from_labels = model(io["x"], io["timesteps"], io["labels"]).sample
        from_one_hot = model(io["x"], io["timesteps"], io["y"]).sample
    torch.testing.assert_close(from_labels, from_one_hot, rtol=0, atol=1e-6)


def test_rgb_fixture_config_details(rgb_reference):
    state_dict, config, _ = rgb_reference
    model = convert_sdm_checkpoint(state_dict, config)
    assert (model.config.in_channels, model.config.out_channels, model.config.num_classes) == (3, 6, 7)
    assert model.config.downsample_type == model.config.upsample_type == "conv"
    # num_heads=2 with num_head_channels=-1: two heads of 32 channels at the 64-channel level.
    assert model.config.attention_head_dim is None and model.config.num_attention_heads == 2
    assert model.down_blocks[1].attentions[0].heads == 2


def test_training_flag_form_converts_the_same_model(small_reference):
    """The official training scripts' flags: pixel attention resolutions, channel_mult string, in/out from weights."""
    state_dict, _, io = small_reference
    flags = {
        "image_size": 32,
        "num_channels": 32,
        "num_res_blocks": 1,
        "channel_mult": "1,2,2",
        "attention_resolutions": "16",
        "num_heads": 1,
        "num_head_channels": 16,
        "num_heads_upsample": -1,
        "num_classes": 6,
        "no_instance": True,
        "class_cond": True,
        "learn_sigma": True,
        "use_scale_shift_norm": True,
        "resblock_updown": True,
        "dropout": 0.0,
        "diffusion_steps": 1000,
        "noise_schedule": "linear",
    }
    model = convert_sdm_checkpoint(state_dict, flags)
    assert (model.config.in_channels, model.config.out_channels) == (1, 2)
    assert model.config.attention_downsample_factors == (2,)
    assert relative_error(model, io, "y", "out") <= TOLERANCE
    assert relative_error(model, io, "y_null", "out_null") <= TOLERANCE


def test_flag_form_empty_channel_mult_uses_official_defaults():
    flags = {"image_size": 256, "num_channels": 256, "channel_mult": "", "attention_resolutions": "32,16,8",
             "num_head_channels": 64, "num_classes": 6, "class_cond": True, "no_instance": True,
             "learn_sigma": True, "resblock_updown": True, "num_res_blocks": 2}
    config = sdm_config_to_unet_config(flags)
    assert config["block_out_channels"] == (256, 256, 512, 512, 1024, 1024)
    assert config["attention_downsample_factors"] == (8, 16, 32)
    assert (config["in_channels"], config["out_channels"]) == (3, 6)  # create_model builds RGB models


@pytest.mark.parametrize(
    "change, message",
    [
        ({"use_new_attention_order": True}, "new_attention_order"),
        ({"dims": 3}, "2-D"),
        ({"num_classes": None}, "not a semantic"),
    ],
)
def test_unsupported_options_are_refused(small_reference, change, message):
    state_dict, config, _ = small_reference
    with pytest.raises(ValueError, match=message):
        convert_sdm_checkpoint(state_dict, {**config, **change})


def test_instance_edge_channel_is_refused(small_reference):
    state_dict, _, _ = small_reference
    flags = {"image_size": 32, "num_channels": 32, "channel_mult": "1,2,2", "num_classes": 5, "class_cond": True,
             "no_instance": False}
    with pytest.raises(ValueError, match="instance-edge"):
        convert_sdm_checkpoint(state_dict, flags)


def test_unrecognised_config_is_refused(small_reference):
    with pytest.raises(ValueError, match="model_channels.*num_channels"):
        convert_sdm_checkpoint(small_reference[0], {"image_size": 32})


def test_loading_is_strict(small_reference):
    state_dict, config, _ = small_reference
    with pytest.raises(ValueError, match="not used"):
        convert_sdm_checkpoint({**state_dict, "extra.weight": torch.zeros(1)}, config)
    missing = {k: v for k, v in state_dict.items() if not k.startswith("output_blocks.5.")}
    with pytest.raises(ValueError, match="output_blocks.5"):
        convert_sdm_checkpoint(missing, config)
    # A config that does not match the weights names the offending tensor's shapes.
    with pytest.raises(ValueError, match="shape"):
        convert_sdm_checkpoint(state_dict, {**config, "channel_mult": [1, 2, 4]})
    with pytest.raises(ValueError, match="in_channels=3"):
        convert_sdm_checkpoint(state_dict, {**config, "in_channels": 3})


def test_pt_checkpoints_load_weights_only(tmp_path, small_reference):
    state_dict, _, _ = small_reference
    plain = tmp_path / "model.pt"
    torch.save({f"module.{k}": v for k, v in state_dict.items()}, plain)  # DDP-style prefix is stripped
    assert set(load_sdm_checkpoint(plain)) == set(state_dict)

    pickled = tmp_path / "with_objects.pt"  # arbitrary pickled objects are refused, not executed
    torch.save({"args": argparse.Namespace(lr=1e-4), **state_dict}, pickled)
    with pytest.raises(ValueError, match="weights_only"):
        load_sdm_checkpoint(pickled)
    with pytest.raises(FileNotFoundError):
        load_sdm_checkpoint(tmp_path / "missing.pt")


def test_scheduler_from_official_flags():
    scheduler = sdm_scheduler_from_config({}, learned_variance=True)
    assert scheduler.config.num_train_timesteps == 1000
    assert scheduler.config.variance_type == "learned_range"
    assert scheduler.config.beta_schedule == "linear"
    assert scheduler.config.beta_start == pytest.approx(1e-4) and scheduler.config.beta_end == pytest.approx(0.02)
    short = sdm_scheduler_from_config({"diffusion_steps": 250, "noise_schedule": "cosine", "learn_sigma": False},
                                      learned_variance=False)
    assert short.config.num_train_timesteps == 250 and short.config.beta_schedule == "squaredcos_cap_v2"
    assert short.config.variance_type == "fixed_large"
    with pytest.raises(ValueError, match="learn_sigma"):
        sdm_scheduler_from_config({"learn_sigma": False}, learned_variance=True)


def guided_diffusion_space_timesteps(num_timesteps, count):
    """guided-diffusion's `space_timesteps(num_timesteps, [count])` (respace.py, MIT licence): one section,
    `count` steps at a float stride of (num_timesteps - 1) / (count - 1), each rounded, so 0 and T-1 are in."""
    stride = (num_timesteps - 1) / (count - 1)
    steps, position = [], 0.0
    for _ in range(count):
        steps.append(round(position))
        position += stride
    return set(steps)


@pytest.mark.parametrize("steps", [25, 50, 100, 250, 1000])
def test_scheduler_steps_match_guided_diffusion_respacing(steps):
    # They agree exactly for these counts (at 999 steps, for one, rounding differs by 1).
    scheduler = sdm_scheduler_from_config({}, learned_variance=True)
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == sorted(guided_diffusion_space_timesteps(1000, steps), reverse=True)


def test_cli_writes_a_pipeline_folder(tmp_path, small_reference, shared_dir):
    fixture = shared_dir / "fixtures" / "sdm_reference_small"
    pipe_dir = tmp_path / "pipe"
    result = subprocess.run(
        # -W error: `python -m` must not warn that the package root imported this module already.
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "lung_diffusers.convert_sdm",
         "--checkpoint", fixture / "weights.safetensors",
         "--config", fixture / "config.json", "--output", pipe_dir, "--pipeline"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    pipe = LungSDMPipeline.from_pretrained(pipe_dir)
    assert pipe.scheduler.config.variance_type == "learned_range"
    assert pipe.scheduler.config.num_train_timesteps == 1000
    assert pipe.scheduler.config.timestep_spacing == "linspace"
    assert relative_error(pipe.unet, small_reference[2], "y_null", "out_null") <= TOLERANCE
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_cli_model_folder_overwrite_and_errors(tmp_path, small_reference, shared_dir, capsys):
    config_path = shared_dir / "fixtures" / "sdm_reference_small" / "config.json"
    state_dict, _, io = small_reference
    checkpoint = tmp_path / "model.pt"
    torch.save(state_dict, checkpoint)
    model_dir = tmp_path / "unet"
    convert_main(["--checkpoint", str(checkpoint), "--config", str(config_path), "--output", str(model_dir)])
    assert relative_error(SemanticUNet2DModel.from_pretrained(model_dir), io, "y", "out") <= TOLERANCE

    # An existing output is kept unless --overwrite is given.
    with pytest.raises(SystemExit):
        convert_main(["--checkpoint", str(checkpoint), "--config", str(config_path), "--output", str(model_dir)])
    assert "--overwrite" in capsys.readouterr().err
    convert_main(["--checkpoint", str(checkpoint), "--config", str(config_path), "--output", str(model_dir), "--overwrite"])
    assert (model_dir / "diffusion_pytorch_model.safetensors").is_file()

    # A bad config fails with a message and leaves no output behind.
    bad_config = tmp_path / "bad.json"
    bad_config.write_text(json.dumps({"image_size": 32}))
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--checkpoint", str(checkpoint), "--config", str(bad_config), "--output", str(tmp_path / "never")])
    assert exit_info.value.code == 2 and "unrecognised SDM config" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_safetensors_checkpoint_round_trip(tmp_path, small_reference):
    state_dict, config, io = small_reference
    path = tmp_path / "model.safetensors"
    save_file(state_dict, path)
    model = convert_sdm_checkpoint(load_sdm_checkpoint(path), config)
    assert relative_error(model, io, "y", "out") <= TOLERANCE


def test_corrupt_safetensors_checkpoint_is_a_clear_error(tmp_path):
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors is not a valid safetensors file"):
        load_sdm_checkpoint(corrupt)


@pytest.fixture
def cli(shared_dir):
    """Run the converter in-process on the small fixture; returns the exit code (0 when it does not exit)."""
    fixture = shared_dir / "fixtures" / "sdm_reference_small"

    def run(*args, checkpoint=fixture / "weights.safetensors", config=fixture / "config.json"):
        try:
            convert_main(["--checkpoint", str(checkpoint), "--config", str(config), *map(str, args)])
        except SystemExit as exit_info:
            return exit_info.code
        except KeyboardInterrupt:  # escaping, it would stop the whole test run
            pytest.fail("KeyboardInterrupt escaped main(): Ctrl-C would print a traceback")
        return 0

    return run


def folder_snapshot(folder):
    """{relative path: bytes, or None for a folder} of everything under ``folder``, staging folders included."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def test_cli_overwrite_replaces_only_the_converters_files(tmp_path, cli):
    out = tmp_path / "pipe"
    assert cli("--output", out, "--pipeline") == 0
    (out / "notes.txt").write_text("the user's")
    (out / "scheduler" / "scheduler_config.json").write_text("{}")  # damaged: must be rewritten
    assert cli("--output", out, "--pipeline", "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "the user's"
    assert LungSDMPipeline.from_pretrained(out).scheduler.config.variance_type == "learned_range"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model_index.json", "notes.txt", "scheduler", "unet"]


def test_cli_output_current_directory(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the user's")
    assert cli("--output", ".", "--overwrite") == 0
    assert (tmp_path / "notes.txt").read_text() == "the user's"
    SemanticUNet2DModel.from_pretrained(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_cli_never_replaces_its_inputs(tmp_path, cli, shared_dir, monkeypatch, capsys):
    """A model folder holds a config.json: `--output .` beside the official config.json must not replace it."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(shared_dir / "fixtures" / "sdm_reference_small" / "config.json", "config.json")
    before = folder_snapshot(tmp_path)
    assert cli("--output", ".", "--overwrite", config="config.json") == 2
    assert "would replace the input" in capsys.readouterr().err
    assert folder_snapshot(tmp_path) == before


def test_cli_failed_overwrite_keeps_the_old_output(tmp_path, cli, monkeypatch):
    out = tmp_path / "pipe"
    assert cli("--output", out, "--pipeline") == 0
    before = folder_snapshot(out)
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    assert cli("--output", out, "--pipeline", "--overwrite", checkpoint=corrupt) == 2
    assert folder_snapshot(out) == before

    def save_part_then_fail(self, directory, **kwargs):  # e.g. the disk filling up mid-save
        (directory / "model_index.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LungSDMPipeline, "save_pretrained", save_part_then_fail)
    assert cli("--output", out, "--pipeline", "--overwrite") == 1
    assert folder_snapshot(out) == before


@pytest.mark.parametrize("case", ["corrupt checkpoint", "output is a file", "output under a file", "ctrl-c"])
def test_cli_errors_are_one_line_with_exit_code(tmp_path, cli, monkeypatch, capsys, case):
    (tmp_path / "file").write_text("")
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    if case == "corrupt checkpoint":
        code, expected = cli("--output", tmp_path / "out", checkpoint=corrupt), "not a valid safetensors file"
    elif case == "output is a file":
        code, expected = cli("--output", tmp_path / "file"), "is a file, not a folder"
    elif case == "output under a file":
        code, expected = cli("--output", tmp_path / "file" / "out"), "is a file, not a folder"
    else:
        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(convert_sdm, "convert_sdm_checkpoint", interrupt)
        code, expected = cli("--output", tmp_path / "out"), "interrupted"
    err = capsys.readouterr().err
    assert code == (130 if case == "ctrl-c" else 2)
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for markup in ("(default: None)", ":class:", ":func:", "``"):
        assert markup not in help_text
    # Every option has its own help text (argparse prints it after the option on the same or the next line).
    for option in ("--checkpoint PATH", "--config PATH", "--output DIR", "--pipeline", "--overwrite"):
        line = next(line for line in help_text.splitlines() if line.strip().startswith(option))
        assert len(line.strip()) > len(option) + 10, line
