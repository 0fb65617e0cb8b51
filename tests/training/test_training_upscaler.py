"""``train_sdm.py --model upscaler``: the cascade's second stage trained on crops with noise-conditioning
augmentation, with train_sdm.py's guarantees (exact resume, EMA, checkpoints, validation grids, a card) and a final
folder that loads as LungSDMUpscalePipeline and samples whole slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from training_support import (
    TINY_MODEL,
    assert_same_checkpoint,
    assert_same_weights,
    kill_in_the_middle_of_a_step,
    run_training,
)

from lung_diffusers import LungSDMUpscalePipeline, is_synthetic, load_pipeline

STEPS = 4
# TINY_MODEL without its attention options: stage 2 has no attention.
OPTIONS = dict(zip(TINY_MODEL[::2], TINY_MODEL[1::2]))
del OPTIONS["--attention_downsample_factors"], OPTIONS["--attention_head_dim"]
UPSCALER = [
    *(word for pair in OPTIONS.items() for word in pair),
    "--model", "upscaler",
    "--attention_downsample_factors", "",
    "--no_mid_block_attention",
    "--resolution", "32",
    "--crop_size", "16",
    "--low_res_resolution", "8",
    "--max_noise_level", "250",
    "--random_flip",
    "--condition_dropout", "0.2",
    "--seed", "3",
]


@pytest.fixture(scope="module")
def upscaler_run(train_sdm, phantom_dataset, datasets_cache, built_once) -> Path:
    def build(folder: Path) -> None:
        run_training(
            train_sdm,
            [*UPSCALER, "--dataset_name", phantom_dataset, "--cache_dir", datasets_cache, "--output_dir", folder / "run",
             "--max_train_steps", STEPS, "--checkpointing_steps", 2, "--validation_steps", 2],
        )

    return built_once("upscaler-run", build) / "run"


def test_the_upscaler_trains_on_crops_and_ships_a_stage_two_pipeline(upscaler_run):
    pipe = load_pipeline(upscaler_run / "pipeline")
    assert isinstance(pipe, LungSDMUpscalePipeline)
    config = pipe.unet.config
    assert config.low_res_channels == 1 and config.training_crop_size == 16 and config.sample_size == 32
    assert not config.add_attention and config.attention_downsample_factors == []
    assert config.pixel_spacing_mm is None  # the phantom rows have no spacing column
    card = (upscaler_run / "pipeline" / "README.md").read_text()
    assert "LungSDMUpscalePipeline" in card and "16-px crops" in card and "synthetic" in card.lower()
    labels = np.ones((32, 32), np.uint8)
    out = pipe(torch.zeros(1, 1, 8, 8), labels, num_inference_steps=2, noise_level=50, output_type="np")
    assert out.images.shape == (1, 32, 32, 1) and out.synthetic


def test_validation_grids_show_the_low_res_input_and_are_marked_synthetic(upscaler_run):
    grid = upscaler_run / "validation" / "step-0000002.png"
    assert is_synthetic(grid)
    with PIL.Image.open(grid) as image:
        assert image.size == (4 * 32, 2 * 32)  # real | mask | low-res input | sample, two masks
        assert "upscaler" in image.text["Columns"]


def test_stopping_and_resuming_gives_the_uninterrupted_run(train_sdm, upscaler_run, phantom_dataset, datasets_cache, tmp_path):
    output = tmp_path / "run"
    common = [*UPSCALER, "--dataset_name", phantom_dataset, "--cache_dir", datasets_cache, "--output_dir", output,
              "--checkpointing_steps", 2]
    run_training(train_sdm, [*common, "--max_train_steps", 2])
    run_training(train_sdm, [*common, "--max_train_steps", STEPS, "--resume_from_checkpoint", "latest"])
    assert_same_checkpoint(output / f"checkpoint-{STEPS}", upscaler_run / f"checkpoint-{STEPS}")


def test_a_run_killed_in_the_middle_of_a_step_resumes_as_the_uninterrupted_run(
    train_sdm, upscaler_run, phantom_dataset, datasets_cache, tmp_path
):
    output = tmp_path / "run"
    common = [*UPSCALER, "--dataset_name", phantom_dataset, "--cache_dir", datasets_cache, "--output_dir", output,
              "--max_train_steps", STEPS, "--checkpointing_steps", 2]
    # Inside step 3's loss: its crops, low-res augmentation and forward pass done, the optimizer not stepped.
    kill_in_the_middle_of_a_step(common, pause_at=3, marker=tmp_path / "paused")
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (output / "pipeline").exists()
    run_training(train_sdm, [*common, "--resume_from_checkpoint", "latest"])
    assert_same_checkpoint(output / f"checkpoint-{STEPS}", upscaler_run / f"checkpoint-{STEPS}")
    assert_same_weights(
        output / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
        upscaler_run / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
    )
