"""A resumed run is the uninterrupted run: stopped at half way, or killed (SIGKILL) in the middle of a step.

Same seed, same options: the step count, the optimizer, LR-scheduler, EMA and RNG states and the weights of
the final checkpoint and pipeline must be bit-identical on CPU (one thread, fp32). The runs use dropout,
mask dropout, random crops and flips, an LR warm-up and gradient accumulation, so that every one of those
states matters.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from training_support import (
    CHECKPOINT_FILES,
    TINY_MODEL,
    assert_same_checkpoint,
    assert_same_weights,
    files_of,
    kill_in_the_middle_of_a_step,
    run_training,
)

STEPS = 4
ACCUMULATION = 2
OPTIONS = [
    *TINY_MODEL,
    "--resolution", "32",
    "--crop_size", "16",
    "--random_flip",
    "--dropout", "0.1",
    "--condition_dropout", "0.2",
    "--noise_offset", "0.1",
    "--lr_scheduler", "constant_with_warmup",
    "--lr_warmup_steps", "3",
    "--gradient_accumulation_steps", str(ACCUMULATION),
    "--seed", "7",
]
# What the code before issue 16 wrote with these options (see its README).
PRE_ISSUE_16_RUN = Path(__file__).parent / "data" / "pre-issue-16-run"


def step_of(checkpoint: Path) -> int:
    return json.loads((checkpoint / "training_state.json").read_text())["global_step"]


@pytest.fixture(scope="module")
def straight_run(train_sdm, phantom_dataset, datasets_cache, built_once) -> Path:
    """STEPS steps without a stop, checkpoints every 2 steps, validation grids every 2 steps."""

    def build(folder: Path) -> None:
        run_training(
            train_sdm,
            [*OPTIONS, "--dataset_name", phantom_dataset, "--cache_dir", datasets_cache, "--output_dir", folder / "run",
             "--max_train_steps", STEPS, "--checkpointing_steps", 2, "--validation_steps", 2],
        )

    return built_once("resume-straight-run", build) / "run"


def test_the_straight_run_saves_each_checkpoint_and_the_final_pipeline(straight_run):
    assert sorted(p.name for p in straight_run.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-2", "checkpoint-4"]
    assert step_of(straight_run / "checkpoint-4") == STEPS
    assert files_of(straight_run / "checkpoint-4") >= CHECKPOINT_FILES
    # The final pipeline carries the EMA weights of the last step.
    assert_same_weights(
        straight_run / "checkpoint-4" / "unet_ema" / "diffusion_pytorch_model.safetensors",
        straight_run / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
    )


def test_stopping_half_way_and_resuming_gives_the_uninterrupted_run(train_sdm, straight_run, phantom_dataset, datasets_cache, tmp_path):
    output = tmp_path / "run"
    common = [*OPTIONS, "--dataset_name", phantom_dataset, "--cache_dir", datasets_cache, "--output_dir", output,
              "--checkpointing_steps", 2]
    run_training(train_sdm, [*common, "--max_train_steps", STEPS // 2])
    assert_same_checkpoint(output / f"checkpoint-{STEPS // 2}", straight_run / f"checkpoint-{STEPS // 2}")

    # Say the first half took two hours: the card of the resumed run counts them.
    state_file = output / f"checkpoint-{STEPS // 2}" / "training_state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "wall_time_s": 7200.0}))
    started = time.monotonic()
    run_training(train_sdm, [*common, "--max_train_steps", STEPS, "--resume_from_checkpoint", "latest"])
    second_half = time.monotonic() - started
    assert_same_checkpoint(output / f"checkpoint-{STEPS}", straight_run / f"checkpoint-{STEPS}")
    assert_same_weights(
        output / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
        straight_run / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
    )
    facts = json.loads((output / "pipeline" / "training.json").read_text())
    assert facts["steps"] == STEPS
    assert 7200 < facts["wall_time_s"] < 7200 + second_half
    assert "| wall time | 2.00 h |" in (output / "pipeline" / "README.md").read_text()


def test_a_run_killed_in_the_middle_of_a_step_resumes_as_the_uninterrupted_run(
    train_sdm, straight_run, phantom_dataset, datasets_cache, tmp_path
):
    output, marker = tmp_path / "run", tmp_path / "paused"
    common = [*OPTIONS, "--dataset_name", phantom_dataset, "--cache_dir", datasets_cache, "--output_dir", output,
              "--max_train_steps", STEPS, "--checkpointing_steps", 1, "--checkpoints_total_limit", 2]
    kill_in_step = STEPS // 2 + 1
    # In its second micro-batch: the first one's gradients are accumulated, the optimizer has not stepped.
    pause_at = ACCUMULATION * (kill_in_step - 1) + 2
    kill_in_the_middle_of_a_step(common, pause_at, marker)
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert not (output / "pipeline").exists()

    # What a kill while saving leaves: staging folders. `latest` must not take them for checkpoints.
    for staging in (output / f".checkpoint-{kill_in_step}.tmp", output / ".checkpoint-99.tmp"):
        staging.mkdir()
        (staging / "optimizer.bin").write_bytes(b"half written")
    run_training(train_sdm, [*common, "--resume_from_checkpoint", "latest"])

    assert_same_checkpoint(output / f"checkpoint-{STEPS}", straight_run / f"checkpoint-{STEPS}")
    assert_same_weights(
        output / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
        straight_run / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
    )
    # The limit keeps the newest two; the checkpoint saved over the stale staging folder is complete.
    assert sorted(p.name for p in output.glob("checkpoint-*")) == [f"checkpoint-{kill_in_step}", f"checkpoint-{STEPS}"]
    assert files_of(output / f"checkpoint-{kill_in_step}") == files_of(straight_run / f"checkpoint-{STEPS}")
    assert not (output / f".checkpoint-{kill_in_step}.tmp").exists()


def tensor_layout(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as weights:
        return {name: f"{weights.get_slice(name).get_dtype()}{weights.get_slice(name).get_shape()}".replace(" ", "") for name in weights.keys()}


def test_a_run_written_before_issue_16_resumes(train_sdm, straight_run, phantom_dataset, datasets_cache, tmp_path):
    """The training code moved into ``lung_diffusers.training`` (issue 16); runs it left behind still resume: the
    same checkpoint files, tensors and optimizer groups, the recorded options still parse, and a checkpoint made of
    the old run's own state files (with this run's weights) continues to the uninterrupted run's step 4."""
    from lung_diffusers.training.pipeline_export import recorded_argv

    old, new = PRE_ISSUE_16_RUN / "checkpoint-2", straight_run / "checkpoint-2"
    layout = json.loads((old / "weights_layout.json").read_text())
    state_files = files_of(old) - {"weights_layout.json"}
    assert files_of(new) == state_files | {
        "optimizer.bin", "unet/diffusion_pytorch_model.safetensors", "unet_ema/diffusion_pytorch_model.safetensors",
    }  # fmt: skip
    for weights in ("unet", "unet_ema"):
        assert tensor_layout(new / weights / "diffusion_pytorch_model.safetensors") == layout["weights"]
        old_config = json.loads((old / weights / "config.json").read_text())
        new_config = json.loads((new / weights / "config.json").read_text())
        assert {k: v for k, v in old_config.items() if k != "_diffusers_version"}.items() <= new_config.items()
    optimizer = torch.load(new / "optimizer.bin", weights_only=True)
    state = {str(i): {k: f"{v.dtype}{list(v.shape)}".replace(" ", "") for k, v in s.items()} for i, s in optimizer["state"].items()}
    assert state == layout["optimizer_state"]
    settings = ("lr", "betas", "eps", "weight_decay", "initial_lr", "params")  # others vary with the torch version
    groups = json.loads(json.dumps([{k: group[k] for k in settings} for group in optimizer["param_groups"]]))
    assert groups == [{k: group[k] for k in settings} for group in layout["optimizer_param_groups"]]
    assert json.loads((old / "training_state.json").read_text()).keys() <= json.loads((new / "training_state.json").read_text()).keys()

    # The recorded options: the same keys and values (paths aside), and they still parse (export_pipeline.py).
    recorded = json.loads((PRE_ISSUE_16_RUN / "training_args.json").read_text())
    current = json.loads((straight_run / "training_args.json").read_text())
    paths = {"dataset_name", "cache_dir", "output_dir", "command"}
    assert recorded.keys() <= current.keys()
    assert {k: v for k, v in recorded.items() if k not in paths} == {k: current[k] for k in recorded if k not in paths}
    parsed = vars(train_sdm.parse_args(recorded_argv(recorded), model=recorded["model"]))
    assert json.loads(json.dumps({k: parsed[k] for k in recorded if k != "command"})) == {k: v for k, v in recorded.items() if k != "command"}

    output = tmp_path / "run"
    shutil.copytree(new, output / "checkpoint-2")
    for name in state_files:
        shutil.copy(old / name, output / "checkpoint-2" / name)
    run_training(
        train_sdm,
        [*OPTIONS, "--dataset_name", phantom_dataset, "--cache_dir", datasets_cache, "--output_dir", output,
         "--max_train_steps", STEPS, "--checkpointing_steps", 2, "--resume_from_checkpoint", "latest"],
    )  # fmt: skip
    assert_same_checkpoint(output / f"checkpoint-{STEPS}", straight_run / f"checkpoint-{STEPS}")
