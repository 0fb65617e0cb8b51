"""Official SDM checkpoints convert exactly (shared/fixtures numeric references)."""

import argparse
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel, convert_sdm_checkpoint
from lung_diffusers.convert_sdm import load_sdm_checkpoint, main as convert_main, sdm_config_to_unet_config, sdm_scheduler_from_config

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


def test_cli_writes_a_pipeline_folder(tmp_path, small_reference, shared_dir):
    fixture = shared_dir / "fixtures" / "sdm_reference_small"
    pipe_dir = tmp_path / "pipe"
    result = subprocess.run(
        [sys.executable, "-m", "lung_diffusers.convert_sdm", "--checkpoint", fixture / "weights.safetensors",
         "--config", fixture / "config.json", "--output", pipe_dir, "--pipeline"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    pipe = LungSDMPipeline.from_pretrained(pipe_dir)
    assert pipe.scheduler.config.variance_type == "learned_range"
    assert pipe.scheduler.config.num_train_timesteps == 1000
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
