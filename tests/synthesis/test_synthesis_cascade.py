"""``synthesize --upscaler``: full-resolution images through both stages of a cascade (a tiny random 16-px first
stage and a 32-px second stage stand in for the 64-px SDM and the 256-px upscaler; their images are noise, the
plumbing is what is tested)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from lung_support import tiny_sdm, tiny_upscaler
from synthesis_support import PIXEL_MM, STORED_SIZE, rows_of, run_in_process, synthesize_argv

from lung_diffusers import is_synthetic
from lung_diffusers.ct import NODULE
from lung_diffusers.synthesis import runner
from lung_diffusers.synthesis.checkpoint import weights_sha256

LOW, SIDE = 16, 32
NUM_IMAGES, BATCH_SIZE = 6, 4  # batches of 4 and 2


def save_stages(folder: Path) -> tuple[Path, Path, Path]:
    """A 16-px first stage, a 32-px second stage, and another second stage (other weights)."""
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMPipeline, LungSDMUpscalePipeline

    def schedule():
        return DDPMScheduler(variance_type="learned_range", clip_sample=True)

    LungSDMPipeline(tiny_sdm(LOW), schedule()).save_pretrained(folder / "base")
    for name, seed in (("upscaler", 1), ("other-upscaler", 2)):
        upscaler = tiny_upscaler(SIDE, training_crop_size=LOW, seed=seed)
        LungSDMUpscalePipeline(upscaler, schedule(), schedule()).save_pretrained(folder / name)
    return folder / "base", folder / "upscaler", folder / "other-upscaler"


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return save_stages(tmp_path_factory.mktemp("cascade-stages"))


def cascade_argv(inputs, stages, output: Path, **options) -> list[str]:
    base, upscaler, _ = stages
    values = dict(num_images=NUM_IMAGES, batch_size=BATCH_SIZE, steps=2, upscaler=upscaler, upscaler_steps=2)
    return synthesize_argv(base, f"{inputs.masks}:healthy", output, inputs.cache, **{**values, **options})


@pytest.fixture(scope="module")
def cascade_run(inputs, stages, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("cascade-run") / "cascade"
    run_in_process(cascade_argv(inputs, stages, output))
    return output


def decoded(value: dict) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(value["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)


def test_images_come_through_both_stages_at_the_upscalers_size(cascade_run, stages, tmp_path):
    _, upscaler, _ = stages
    rows = rows_of(cascade_run)
    assert [r["global_index"] for r in rows] == list(range(NUM_IMAGES))
    for index, row in enumerate(rows):
        assert decoded(row["image"]).shape == decoded(row["mask"]).shape == (SIDE, SIDE)
        path = tmp_path / f"{index}.png"
        path.write_bytes(row["image"]["bytes"])
        assert is_synthetic(path)
        with PIL.Image.open(path) as image:
            assert image.info["upscaler"] == f"{upscaler}@local sha256:{weights_sha256(upscaler)}"
        assert (row["upscaler"], row["upscaler_revision"], row["upscaler_sha256"]) == (
            str(upscaler), None, weights_sha256(upscaler)
        )
        assert (row["num_inference_steps"], row["upscaler_num_inference_steps"], row["noise_level"]) == (2, 2, 100)
        assert row["upscaler_strength"] == 0.4  # the pipeline's default, resolved and recorded

    settings = json.loads((cascade_run / "synthesis_settings.json").read_text())
    assert (settings["image_size"], settings["low_res_size"]) == (SIDE, LOW)
    assert settings["upscaler_weights_sha256"] == weights_sha256(upscaler) and settings["upscaler_configs_sha256"]
    assert settings["upscaler_strength"] == 0.4

    # Masks are taken at the second stage's size, so nodules placed in mm are sized with its pixel spacing.
    pixel_mm = PIXEL_MM * STORED_SIZE / SIDE
    placed = [r for r in rows if r["edit"]["kind"] == "add_nodule"]
    assert [r["global_index"] for r in placed] == [1, 3, 5]
    for row in placed:
        assert row["spacing"]["pixel_mm"] == [pixel_mm, pixel_mm]
        assert row["edit"]["diameter_px"] == pytest.approx(row["edit"]["diameter_mm"] / pixel_mm)
        assert (decoded(row["mask"]) >= NODULE).any()

    card = (cascade_run / "README.md").read_text()
    assert "This dataset is synthetic" in card
    assert f"every image is a {SIDE}-px output of the second stage" in card and "two-stage cascade" in card
    assert f"stage 2 (`{upscaler}`" in card and f"weights sha256 `{weights_sha256(upscaler)}`" in card
    assert "noise level 100, strength 0.4 (it starts from the first stage's image upsampled and noised" in card


def test_an_interrupted_cascade_run_resumes_to_the_same_rows(cascade_run, inputs, stages, tmp_path, monkeypatch):
    output = tmp_path / "resumed"
    argv = cascade_argv(inputs, stages, output)
    write_shard = runner.write_shard

    def write_then_stop(folder, batch_index, *args):
        write_shard(folder, batch_index, *args)
        raise KeyboardInterrupt  # the user's Ctrl-C after the first shard

    monkeypatch.setattr(runner, "write_shard", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_in_process(argv)
    monkeypatch.undo()
    assert [p.name for p in (output / "shards").glob("*.parquet")] == ["batch-000000.parquet"]
    assert run_in_process(argv).batches == [1]
    assert rows_of(output) == rows_of(cascade_run)


def test_a_cascade_row_regenerates_bit_exactly_and_checks_the_upscalers_weights(cascade_run, stages, tmp_path):
    import datasets

    from lung_diffusers.synthesis import regenerate_batch, regenerate_row
    from lung_diffusers.synthesis.checkpoint import load_pipeline, resolve_checkpoint

    # A cache of its own: datasets keys a local folder's cache by the folder's name, which other tests' runs share.
    dataset = datasets.load_dataset(str(cascade_run), split="train", cache_dir=str(tmp_path / "cache"))
    stored = dataset.cast_column("image", datasets.Image(decode=False))
    assert regenerate_row(dataset, 5) == stored[5]["image"]["bytes"]  # both stages loaded from the row's columns

    batch = [dataset[i] for i in (4, 5)]
    # The row's strength reaches the pipeline: at 1 (the whole chain) the same seeds give other images. Rows from
    # before the strength was recorded (no such column) ran the whole chain, and regenerate so.
    pipe = load_pipeline(resolve_checkpoint(str(stages[0])), "DPMSolverMultistepScheduler", upscaler=resolve_checkpoint(str(stages[1])))
    whole_chain = regenerate_batch([{**row, "upscaler_strength": 1.0} for row in batch], pipe=pipe)
    assert whole_chain[1] != stored[5]["image"]["bytes"]
    unrecorded = [{k: v for k, v in row.items() if k != "upscaler_strength"} for row in batch]
    assert regenerate_batch(unrecorded, pipe=pipe) == whole_chain
    with pytest.raises(ValueError, match="made by both stages of a cascade, and pipe= is not such a pipeline"):
        regenerate_batch(batch, pipe=load_pipeline(resolve_checkpoint(str(stages[0])), "DPMSolverMultistepScheduler"))
    batch[0] = {**batch[0], "upscaler_sha256": "0" * 64}
    with pytest.raises(ValueError, match="the upscaler changed since"):
        regenerate_batch(batch)


def test_a_resume_compares_the_upscaler_by_content(cascade_run, inputs, stages, tmp_path, monkeypatch):
    base, upscaler, other = stages
    output = shutil.copytree(cascade_run, tmp_path / "copy")
    with pytest.raises(ValueError, match="holds another run .*upscaler_weights_sha256"):
        run_in_process(cascade_argv(inputs, stages, output, upscaler=other))
    with pytest.raises(ValueError, match="holds another run .*image_size: 32 there, 16 now"):
        run_in_process(cascade_argv(inputs, stages, output, upscaler=None, upscaler_steps=None))
    with pytest.raises(ValueError, match="holds another run .*upscaler_num_inference_steps: 2 there, 3 now"):
        run_in_process(cascade_argv(inputs, stages, output, upscaler_steps=3))
    with pytest.raises(ValueError, match="holds another run .*upscaler_strength: 0.4 there, 1.0 now"):
        run_in_process(cascade_argv(inputs, stages, output, upscaler_strength=1))
    # A cascade run from before the strength was recorded ran stage 2's whole chain: no flag resumes it as it was.
    old = shutil.copytree(cascade_run, tmp_path / "old")
    settings = json.loads((old / "synthesis_settings.json").read_text())
    del settings["upscaler_strength"]
    (old / "synthesis_settings.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="from before synthesize recorded --upscaler-strength .*new --output folder"):
        run_in_process(cascade_argv(inputs, stages, old, upscaler_strength=1))

    monkeypatch.chdir(upscaler.parent)  # the same upscaler, spelled another way: the same run, nothing to make
    respelled = cascade_argv(inputs, stages, output, upscaler=os.path.relpath(upscaler))
    assert run_in_process(respelled).batches == []
    assert rows_of(output) == rows_of(cascade_run)


def test_stage_two_options_need_an_upscaler_and_each_stage_its_own_flag(inputs, stages, tmp_path, capsys):
    from lung_diffusers.cli import main
    from lung_diffusers.pipelines.pipeline_lung_sdm_upscale import DEFAULT_NOISE_LEVEL, DEFAULT_STRENGTH
    from lung_diffusers.synthesis.settings import DEFAULT_NOISE_LEVEL as SETTINGS_NOISE_LEVEL
    from lung_diffusers.synthesis.settings import DEFAULT_UPSCALER_STRENGTH

    base, upscaler, _ = stages
    # The --help defaults are the pipeline's.
    assert (SETTINGS_NOISE_LEVEL, DEFAULT_UPSCALER_STRENGTH) == (DEFAULT_NOISE_LEVEL, DEFAULT_STRENGTH)
    output = tmp_path / "refused"
    for options, message in (
        ({"upscaler": None, "upscaler_steps": 3}, "--upscaler-steps sets the cascade's second stage; give --upscaler as well"),
        ({"upscaler": None, "upscaler_steps": None, "noise_level": 50}, "--noise-level sets the cascade's second"),
        ({"upscaler_steps": 0}, "--upscaler-steps must be a positive integer, got 0"),
        ({"noise_level": -1}, "--noise-level must be an integer >= 0"),
        ({"noise_level": 5000}, "--noise-level: noise_level must be an integer step of the image-noising schedule, 0 to 999"),
        ({"upscaler": None, "upscaler_steps": None, "upscaler_strength": 0.5}, "--upscaler-strength sets the cascade's second"),
        ({"upscaler_strength": 0}, r"--upscaler-strength must be a share of the second stage's steps in \(0, 1\] .*got 0.0"),
        ({"upscaler_strength": 1.5}, r"--upscaler-strength must be a share .*got 1.5"),
        ({"upscaler": base}, f"--upscaler {base} is a LungSDMPipeline folder; .*pass this one as --pipeline"),
        ({"pipeline": upscaler}, f"--pipeline {upscaler} is a LungSDMUpscalePipeline folder; .*as --upscaler"),
    ):
        with pytest.raises(SystemExit) as exit_status:
            main(cascade_argv(inputs, stages, output, **options))
        assert exit_status.value.code == 2, options
        assert re.search(message, capsys.readouterr().err), message
    assert not output.exists()
