"""Which differences between two runs' settings refuse a resume: content, not the spelling of paths."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace

from lung_diffusers.synthesis.checkpoint import configs_sha256, weights_sha256
from lung_diffusers.synthesis.settings import SynthesisSettings

STORED = SynthesisSettings(
    pipeline="../models/sdm", pipeline_revision=None, weights_sha256="a" * 64, image_size=32, num_classes=6,
    masks_dataset="data/masks", masks_config="healthy", masks_split="train", masks_rows=6, masks_sha256="b" * 64,
    num_images=10, batch_size=4, seed=3, scheduler="dpm", scheduler_class="DPMSolverMultistepScheduler",
    num_inference_steps=4, guidance_scale=1.0, nodule_fraction=0.5, malignant_fraction=None,
    nodule_diameter_mm=(6.0, 14.0), torch_threads=1, configs_sha256="c" * 64,
)


def test_local_paths_are_compared_by_content_not_spelling():
    respelled = replace(STORED, pipeline="/home/me/models/sdm", masks_dataset="/home/me/project/data/masks")
    assert respelled.differences(STORED) == []
    assert replace(respelled, weights_sha256="d" * 64).differences(STORED) == ["weights_sha256"]
    assert replace(respelled, configs_sha256="d" * 64).differences(STORED) == ["configs_sha256"]
    assert replace(respelled, masks_sha256="d" * 64).differences(STORED) == ["masks_sha256"]


def test_a_hub_checkpoint_is_its_repo_id_at_its_commit():
    hub = replace(STORED, pipeline="someone/lung-sdm", pipeline_revision="1" * 40)
    assert replace(hub, pipeline="other/lung-sdm").differences(hub) == ["pipeline"]
    assert replace(hub, pipeline_revision="2" * 40).differences(hub) == ["pipeline_revision"]
    assert replace(hub, pipeline="../models/sdm", pipeline_revision=None).differences(hub) == [
        "pipeline",
        "pipeline_revision",
    ]


def test_settings_files_written_before_the_configs_hash_still_resume():
    old = {key: value for key, value in asdict(STORED).items() if key != "configs_sha256"}
    stored = SynthesisSettings.from_json(json.dumps(old))
    assert stored.configs_sha256 is None
    assert replace(STORED, pipeline="/elsewhere/sdm").differences(stored) == []


def test_the_configs_hash_follows_the_noise_schedule_and_not_the_weights(inputs, tmp_path):
    copy = shutil.copytree(inputs.checkpoint, tmp_path / "sdm")
    assert (configs_sha256(copy), weights_sha256(copy)) == (configs_sha256(inputs.checkpoint), weights_sha256(inputs.checkpoint))
    config = copy / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "beta_end": 0.03}))
    assert configs_sha256(copy) != configs_sha256(inputs.checkpoint)
    assert weights_sha256(copy) == weights_sha256(inputs.checkpoint)


def test_the_sampler_defaults_follow_the_stages():
    from pathlib import Path

    from lung_diffusers.scheduler_registry import CASCADE_SCHEDULER, CASCADE_STEPS, DEFAULT_SCHEDULER, DEFAULT_STEPS
    from lung_diffusers.synthesis.settings import SynthesisRequest

    one_stage = SynthesisRequest(pipeline="sdm", masks="data", num_images=1, output=Path("out"))
    assert (one_stage.scheduler, one_stage.steps) == (DEFAULT_SCHEDULER, DEFAULT_STEPS)  # the sampler study's
    cascade = SynthesisRequest(pipeline="sdm", masks="data", num_images=1, output=Path("out"), upscaler="up")
    assert (cascade.scheduler, cascade.steps) == (CASCADE_SCHEDULER, CASCADE_STEPS)  # what 256 px was measured at
    chosen = SynthesisRequest(pipeline="sdm", masks="data", num_images=1, output=Path("out"), scheduler="unipc", steps=7)
    assert (chosen.scheduler, chosen.steps) == ("unipc", 7)
