"""Tiny SDM and DDPM-prior runs on real recipe data write what users load, read and share.

The final pipeline loads with ``LungSDMPipeline`` / diffusers' ``DDPMPipeline``; the model card states the data,
steps and wall time and that the images are synthetic; validation grids are marked synthetic; tensorboard logs
the losses; checkpoints are complete ``checkpoint-<step>`` folders, as many as the limit keeps; and
``--push_to_hub`` uploads that very folder (upload patched: nothing leaves the machine).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from huggingface_hub import HfApi
from lung_support import one_thread, reset_accelerate, run_script
from safetensors.torch import load_file
from training_support import CHECKPOINT_FILES, TINY_MODEL, TRAIN_DDPM, assert_same_weights, files_of, run_training

from lung_diffusers import LungSDMPipeline, is_synthetic

# ------------------------------------------------------------------------------------------ SDM


SDM_OPTIONS = [*TINY_MODEL, "--dataset_config", "healthy", "nodule", "--resolution", 32, "--crop_size", 16, "--random_flip"]


@pytest.fixture(scope="module")
def sdm_run(train_sdm, real_mini_dataset, datasets_cache, built_once) -> Path:
    """3 steps on 16-px crops of 32-px real slices, every output switched on (tensorboard, grids, checkpoints)."""

    def build(folder: Path) -> None:
        run_training(
            train_sdm,
            [*SDM_OPTIONS, "--dataset_name", real_mini_dataset, "--cache_dir", datasets_cache,
             "--output_dir", folder / "sdm-lung-test", "--max_train_steps", 3,
             "--checkpointing_steps", 1, "--checkpoints_total_limit", 2, "--validation_steps", 3,
             "--logger", "tensorboard"],
        )

    return built_once("end-to-end-sdm", build) / "sdm-lung-test"


def test_the_sdm_pipeline_loads_and_makes_synthetic_whole_slices(sdm_run, real_mini_dataset):
    pipe = LungSDMPipeline.from_pretrained(sdm_run / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    # Trained on 16-px crops, the model makes the 32-px slices it was cropped from; 6 classes (healthy + nodule).
    assert (pipe.unet.config.num_classes, pipe.unet.config.sample_size, pipe.unet.learned_variance) == (6, 32, True)
    assert pipe.scheduler.config.variance_type == "learned_range"
    assert pipe.config.hu_window == [-1000.0, 400.0]
    # The pipeline holds the EMA weights of the last step.
    assert_same_weights(
        sdm_run / "checkpoint-3" / "unet_ema" / "diffusion_pytorch_model.safetensors",
        sdm_run / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors",
    )
    masks = np.stack(_real_masks(real_mini_dataset, 2))
    out = pipe(masks, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (2, 32, 32, 1) and np.isfinite(out.images).all()
    assert out.synthetic


def _training_spacing_mm(dataset: Path) -> float:
    """The median pixel spacing of the run's training rows (healthy and nodule), stored at the model's 32 px."""
    import datasets

    rows = [datasets.Dataset.from_parquet(str(f)) for config in ("healthy", "nodule")
            for f in sorted((dataset / "data" / config).glob("train-*.parquet"))]
    spacings = [np.mean(row["spacing"]["pixel_mm"]) for part in rows for row in part]
    assert {row["mask"].size for part in rows for row in part} == {(32, 32)}
    return float(np.median(spacings))


def test_the_sdm_records_the_pixel_spacing_of_its_training_slices(sdm_run, real_mini_dataset):
    config = json.loads((sdm_run / "pipeline" / "unet" / "config.json").read_text())
    expected = _training_spacing_mm(real_mini_dataset)
    assert 5 < expected < 20  # LIDC-IDRI-0003's ~0.7-mm pixels at 512 px, stored at 32 px
    assert config["pixel_spacing_mm"] == pytest.approx(expected, abs=1e-4)
    # The checkpoints carry it too (export_pipeline.py reads them).
    assert json.loads((sdm_run / "checkpoint-3" / "unet_ema" / "config.json").read_text())["pixel_spacing_mm"] == config["pixel_spacing_mm"]


def _real_masks(dataset: Path, count: int) -> list[np.ndarray]:
    import datasets

    rows = datasets.Dataset.from_parquet(str(next((dataset / "data" / "nodule").glob("train-*.parquet"))))
    return [np.asarray(rows[i]["mask"]) for i in range(count)]


def test_the_model_card_states_data_steps_wall_time_and_that_images_are_synthetic(sdm_run, real_mini_dataset):
    card = (sdm_run / "pipeline" / "README.md").read_text()
    facts = json.loads((sdm_run / "pipeline" / "training.json").read_text())
    assert facts["steps"] == 3 and facts["configs"] == ["healthy", "nodule"] and facts["wall_time_s"] > 0
    rows = facts["num_slices"]
    assert f"| data | `{real_mini_dataset}`, configs healthy, nodule, split `train` ({rows} slices) |" in card
    assert "| image size | 32 px, random 16-px crops |" in card
    assert "| steps | 3 at batch 2 |" in card
    assert "| weights | EMA |" in card
    assert "| wall time |" in card and " min |" in card
    assert "Every image this model makes is synthetic" in card and "must not be used" in card
    assert 'LungSDMPipeline.from_pretrained("sdm-lung-test")' in card
    assert "--max_train_steps 3" in card  # the exact command
    args = json.loads((sdm_run / "pipeline" / "training_args.json").read_text())
    assert args["max_train_steps"] == 3 and "hub_token" not in args


def test_validation_grids_are_marked_synthetic(sdm_run):
    grid = sdm_run / "validation" / "step-0000003.png"
    assert is_synthetic(grid)
    with PIL.Image.open(grid) as image:
        # real slice | mask | sample, one row per validation mask, at the slice size (not the crop size)
        assert image.size == (3 * 32, 2 * 32) and image.mode == "RGB"
        assert "real slice" in image.text["Columns"]


def test_tensorboard_logs_the_losses_and_the_validation_grid(sdm_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = sdm_run / "logs" / "train_sdm"  # accelerate's tracker folder: <logging_dir>/<project name>
    assert list(run.glob("events.out.tfevents.*")), "no tensorboard event file"
    accumulator = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = accumulator.Tags()
    assert {"loss", "mse", "vb", "lr", "ema_decay"} <= set(tags["scalars"])
    assert [event.step for event in accumulator.Scalars("loss")] == [1, 2, 3]
    assert all(np.isfinite(event.value) for event in accumulator.Scalars("loss"))
    assert "validation" in tags["images"]


def test_the_checkpoint_limit_keeps_the_newest_complete_checkpoints(sdm_run):
    names = sorted(p.name for p in sdm_run.iterdir() if "checkpoint" in p.name)
    assert names == ["checkpoint-2", "checkpoint-3"]  # no staging folder left behind
    for name in names:
        folder = sdm_run / name
        assert files_of(folder) == CHECKPOINT_FILES
        assert json.loads((folder / "training_state.json").read_text())["global_step"] == int(name.split("-")[1])


# ------------------------------------------------------------------------------------------ DDPM prior


@pytest.fixture(scope="module")
def ddpm_run(train_sdm, real_mini_dataset, datasets_cache, built_once) -> tuple[Path, Path, dict]:
    """``training/train_ddpm.py`` run as a script, in this process, with the Hub upload patched.

    Returns the output folder, a copy of the uploaded folder, and the arguments of the Hub calls.
    """

    def build(folder: Path) -> None:
        calls = {}

        def fake_create_repo(self, repo_id, **kwargs):
            calls["create_repo"] = {"repo_id": repo_id, **kwargs}
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
            calls["upload_folder"] = {"repo_id": repo_id, "folder_path": str(folder_path), **kwargs}
            shutil.copytree(folder_path, folder / "uploaded")
            return f"https://huggingface.co/{repo_id}/commit/fake"

        argv = [*TINY_MODEL, "--dataset_name", real_mini_dataset, "--cache_dir", datasets_cache,
                "--output_dir", folder / "ddpm-prior-test", "--resolution", 32, "--crop_size", 16,
                "--max_train_steps", 2, "--checkpointing_steps", 2, "--validation_steps", 2,
                "--push_to_hub", "--hub_model_id", "someone/lung-prior-test", "--hub_private_repo"]
        with pytest.MonkeyPatch.context() as patch:
            # Every push goes through lung_diffusers.hub, which uploads with HfApi: patched.
            patch.setattr(HfApi, "create_repo", fake_create_repo)
            patch.setattr(HfApi, "upload_folder", fake_upload_folder)
            try:
                with one_thread():
                    assert run_script(TRAIN_DDPM, argv) == 0
            finally:
                reset_accelerate()
        (folder / "hub_calls.json").write_text(json.dumps(calls))

    folder = built_once("end-to-end-ddpm", build)
    return folder / "ddpm-prior-test", folder / "uploaded", json.loads((folder / "hub_calls.json").read_text())


def test_train_ddpm_trains_the_healthy_prior_on_crops_and_it_loads_in_diffusers(ddpm_run):
    from diffusers import DDPMPipeline, UNet2DModel

    output, _, _ = ddpm_run
    args = json.loads((output / "pipeline" / "training_args.json").read_text())
    assert (args["model"], args["dataset_config"]) == ("ddpm", ["healthy"])
    pipe = DDPMPipeline.from_pretrained(output / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.unet, UNet2DModel)
    assert (pipe.unet.config.sample_size, pipe.unet.config.in_channels, pipe.unet.config.out_channels) == (16, 1, 2)
    assert pipe.scheduler.config.variance_type == "learned_range"
    images = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 16, 16, 1) and np.isfinite(images).all()
    assert is_synthetic(output / "validation" / "step-0000002.png")
    card = (output / "pipeline" / "README.md").read_text()
    assert "DDPMPipeline.from_pretrained" in card and "nodule-free" in card and "synthetic" in card
    assert "| steps | 2 at batch 2 |" in card and "| wall time |" in card


def test_push_to_hub_uploads_the_final_folder_with_its_training_card(ddpm_run):
    output, uploaded, calls = ddpm_run
    assert calls["create_repo"]["repo_id"] == "someone/lung-prior-test" and calls["create_repo"]["private"] is True
    assert calls["upload_folder"]["repo_id"] == "someone/lung-prior-test"
    assert Path(calls["upload_folder"]["folder_path"]) == output / "pipeline"
    files = files_of(uploaded)
    assert files == files_of(output / "pipeline")
    assert {"model_index.json", "README.md", "training.json", "unet/diffusion_pytorch_model.safetensors"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    card = (uploaded / "README.md").read_text()
    assert 'DDPMPipeline.from_pretrained("someone/lung-prior-test")' in card
    assert "## Training" in card and "| steps | 2 at batch 2 |" in card and "synthetic" in card


def test_export_ships_the_newest_checkpoint_as_a_small_pipeline_with_example_masks(sdm_run, real_mini_dataset, tmp_path):
    """training/export_pipeline.py: the EMA weights of the newest checkpoint, in fp16, with card and example masks;
    it loads in float32 and draws what the run's own final pipeline draws."""
    from lung_diffusers.training import pipeline_export as export

    folder = export.main(export.parse_args([
        "--run", str(sdm_run), "--output", str(tmp_path / "lung-sdm-test"),
        "--example_masks", str(real_mini_dataset), "--example_split", "train",
    ]))
    weights = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}
    card = (folder / "README.md").read_text()
    assert "| steps | 3 at batch" in card and 'from_pretrained("lung-sdm-test")' in card
    facts = json.loads((folder / "example_masks" / "examples.json").read_text())
    assert set(facts) == {"healthy.png", "nodule.png"} and "LIDC-IDRI-0003" in facts["nodule.png"]["source"]
    nodule = np.asarray(PIL.Image.open(folder / "example_masks" / "nodule.png"))
    assert nodule.shape == (32, 32) and (nodule == 5).any()

    config = json.loads((folder / "unet" / "config.json").read_text())
    assert not {"decay", "optimization_step", "power"} & set(config)  # EMAModel's settings would warn on each load
    exported = LungSDMPipeline.from_pretrained(folder)
    trained = LungSDMPipeline.from_pretrained(sdm_run / "pipeline")
    assert exported.unet.dtype == torch.float32
    for pipe in (exported, trained):
        pipe.set_progress_bar_config(disable=True)
    with one_thread():
        a, b = (p(nodule, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images
                for p in (exported, trained))
    np.testing.assert_allclose(a, b, atol=2e-2)  # the same weights, up to float16 rounding


def _run_without_spacing(run: Path, folder: Path) -> Path:
    """A copy of ``run`` (options and last checkpoint) as a run started before training recorded the spacing."""
    shutil.copytree(run / "checkpoint-3", folder / "checkpoint-3")
    shutil.copy(run / "training_args.json", folder / "training_args.json")
    for weights in ("unet", "unet_ema"):
        config_file = folder / "checkpoint-3" / weights / "config.json"
        config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "pixel_spacing_mm": None}))
    return folder


def test_export_sets_the_pixel_spacing_of_a_run_that_did_not_record_it(sdm_run, tmp_path):
    from lung_diffusers.training import pipeline_export as export

    old_run = _run_without_spacing(sdm_run, tmp_path / "old-run")
    recorded = json.loads((sdm_run / "pipeline" / "unet" / "config.json").read_text())["pixel_spacing_mm"]

    def exported_spacing(*flags) -> float | None:
        output = tmp_path / f"out{len(flags)}"
        export.main(export.parse_args(["--run", str(old_run), "--output", str(output), *flags]))
        return LungSDMPipeline.from_pretrained(output).unet.config.pixel_spacing_mm

    assert exported_spacing("--pixel_spacing_mm", "5.5") == 5.5
    # Without the flag, from the run's training rows by training's rule: what a new run records.
    assert exported_spacing() == pytest.approx(recorded, abs=1e-4)


def test_a_run_that_did_not_record_the_spacing_records_it_when_resumed(train_sdm, sdm_run, real_mini_dataset, datasets_cache, tmp_path):
    old_run = _run_without_spacing(sdm_run, tmp_path / "old-run")
    run_training(
        train_sdm,
        [*SDM_OPTIONS, "--dataset_name", real_mini_dataset, "--cache_dir", datasets_cache, "--output_dir", old_run,
         "--max_train_steps", 4, "--resume_from_checkpoint", "latest"],
    )  # fmt: skip
    recorded = json.loads((sdm_run / "pipeline" / "unet" / "config.json").read_text())["pixel_spacing_mm"]
    for config in (old_run / "pipeline" / "unet", old_run / "checkpoint-4" / "unet", old_run / "checkpoint-4" / "unet_ema"):
        assert json.loads((config / "config.json").read_text())["pixel_spacing_mm"] == recorded


@pytest.mark.parametrize(
    ("run", "flag", "message"),
    [
        ("sdm", "3.25", "the run recorded a pixel spacing of"),
        ("sdm", "0", "--pixel_spacing_mm must be a positive spacing in mm"),
        ("ddpm", "1.4", "--pixel_spacing_mm applies to sdm and upscaler runs"),
    ],
)
def test_export_refuses_a_pixel_spacing_it_cannot_use(sdm_run, ddpm_run, run, flag, message, tmp_path, capsys):
    from lung_diffusers.training import pipeline_export as export

    folder = sdm_run if run == "sdm" else ddpm_run[0]
    assert export.cli(["--run", str(folder), "--output", str(tmp_path / "out"), "--pixel_spacing_mm", flag]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_six_class_sdm_warm_starts_a_malignancy_model_that_first_draws_malignant_as_its_nodule(
    train_sdm, sdm_run, real_mini_dataset, datasets_cache, tmp_path
):
    from lung_diffusers import SemanticUNet2DModel
    from lung_diffusers.training.sdm_model import with_malignant_class

    six = SemanticUNet2DModel.from_pretrained(sdm_run / "pipeline", subfolder="unet")
    seven = with_malignant_class(six)
    assert seven.config.num_classes == 7 and seven.config.sample_size == six.config.sample_size
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, 4:28, 4:14], labels[:, 4:28, 18:28], labels[:, 10:16, 6:12] = 3, 2, 5
    sample, t = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([300])
    with torch.no_grad():
        nodule = six(sample, t, labels).sample
        for label in (5, 6):  # benign keeps the nodule's weights, malignant starts as their copy
            torch.testing.assert_close(seven(sample, t, torch.where(labels == 5, label, labels)).sample, nodule)
    with pytest.raises(ValueError, match="expected a 6-class SDM"):
        with_malignant_class(seven)

    # train_sdm.py does it when a 6-class --pretrained_model_name_or_path meets the malignancy config's 7 classes.
    final = run_training(
        train_sdm,
        [*TINY_MODEL, "--dataset_config", "healthy", "malignancy", "--resolution", 32, "--crop_size", 16,
         "--pretrained_model_name_or_path", sdm_run / "pipeline", "--dataset_name", real_mini_dataset,
         "--cache_dir", datasets_cache, "--output_dir", tmp_path / "malignancy", "--max_train_steps", 1,
         "--validation_steps", 0, "--logger", "none"],
    )
    pipe = LungSDMPipeline.from_pretrained(final)
    assert pipe.unet.config.num_classes == 7
    # Exported, its example nodule comes from the malignancy config: LIDC-IDRI-0003's nodules are rated >= 3.
    from lung_diffusers.training import pipeline_export as export

    folder = export.main(export.parse_args([
        "--run", str(tmp_path / "malignancy"), "--output", str(tmp_path / "lung-sdm-malignancy-test"),
        "--example_masks", str(real_mini_dataset), "--example_split", "train",
    ]))
    nodule = np.asarray(PIL.Image.open(folder / "example_masks" / "nodule.png"))
    assert (nodule == 6).any() and not (nodule == 5).any()
    malignant = np.zeros((32, 32), np.uint8)
    malignant[4:28, 4:14], malignant[4:28, 18:28], malignant[10:16, 6:12] = 3, 2, 6
    pipe.set_progress_bar_config(disable=True)
    out = pipe(malignant, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 32, 32, 1)
