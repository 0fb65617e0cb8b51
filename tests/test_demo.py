"""`make demo` (python -m lung_diffusers.demo): outputs of every kind, all marked synthetic; clear errors."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler
from lung_support import tiny_sdm

from lung_diffusers import LungSDMCombinedPipeline, LungSDMPipeline, SemanticUNet2DModel, demo, is_synthetic
from lung_diffusers.demo import cli, main, parse_args


@pytest.fixture(autouse=True)
def no_default_upscaler(monkeypatch, tmp_path):
    """The demo takes pipelines/lung-sdm-upscaler-256 when the working tree has it; these tests name theirs."""
    monkeypatch.setattr(demo, "DEFAULT_UPSCALER", str(tmp_path / "no-default-upscaler"))


@pytest.fixture
def demo_pipeline(tmp_path, reference_labels):
    folder = tmp_path / "pipe"
    LungSDMPipeline(tiny_sdm(32), DDPMScheduler(variance_type="learned_range", clip_sample=True)).save_pretrained(folder)
    masks = folder / "example_masks"
    masks.mkdir()
    for name, labels in zip(("healthy", "nodule"), reference_labels.numpy()):
        PIL.Image.fromarray(labels.astype(np.uint8)).save(masks / f"{name}.png")
    (masks / "examples.json").write_text(json.dumps({"nodule.png": {"source": "test map", "pixel_mm": [2.0, 2.0]}}))
    return folder


def test_demo_writes_marked_png_nifti_and_side_by_side(demo_pipeline, tmp_path, capsys):
    written = main(parse_args(["--pipeline", str(demo_pipeline), "--output", str(tmp_path / "out"), "--steps", "2",
                               "--images-per-mask", "2"]))
    names = sorted(p.name for p in written)
    assert names == sorted(
        [f"{m}_seed{s}.{ext}" for m in ("healthy", "nodule") for s in (0, 1) for ext in ("png", "nii.gz")]
        + ["healthy_side_by_side.png", "nodule_side_by_side.png"]
    )
    assert all(is_synthetic(p) for p in written)
    printed = capsys.readouterr().out
    assert all(str(p) in printed for p in written) and "marked synthetic" in printed
    side = PIL.Image.open(tmp_path / "out" / "nodule_side_by_side.png")
    assert "mask" in side.text["Columns"]
    assert "2 SYNTHETIC seed 0: SYNTHETIC (generated)" in side.text["panels"] and side.text["real_panels"] == "none"
    assert PIL.Image.open(tmp_path / "out" / "nodule_seed1.png").text["mask"] == "test map"


def test_the_side_by_side_has_a_synthetic_banner_and_column_titles(demo_pipeline, tmp_path):
    main(parse_args(["--pipeline", str(demo_pipeline), "--output", str(tmp_path / "out"), "--steps", "1"]))
    side = np.asarray(PIL.Image.open(tmp_path / "out" / "nodule_side_by_side.png").convert("RGB")).astype(int)
    assert side.shape[1] == 3 * 256 + 2 * 4  # mask | two samples, upscaled for viewing, 4-px gaps
    # On top, a red band (as the Space's) with white text: "SYNTHETIC".
    band = side[: np.argmax(np.abs(side[:, 0] - (200, 16, 16)).sum(axis=1) > 30)]
    assert 20 <= len(band) <= 60 and (band[..., 0] > 240).sum() > 0.02 * band[..., 0].size
    assert (np.abs(band - (200, 16, 16)).sum(axis=2) < 30).mean() > 0.6 and (band.min(axis=2) > 200).any()
    # Below it, a title above every column: light text on a dark strip, before the pictures.
    titles = side[len(band) : len(band) + 22]
    assert all((titles[:, x : x + 256].min(axis=2) > 150).sum() > 50 for x in (0, 260, 520))
    assert side.shape[0] == len(band) + 22 + 256


def test_demo_errors_are_one_line(tmp_path, capsys):
    assert cli(["--pipeline", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_second_demo_needs_overwrite_and_leaves_no_stale_files(demo_pipeline, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = ["--pipeline", str(demo_pipeline), "--output", str(out), "--steps", "1"]
    main(parse_args([*argv, "--images-per-mask", "2"]))
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(LungSDMPipeline, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    assert cli(argv) == 2  # refused before the model loads
    assert "earlier demo run; pass --overwrite" in capsys.readouterr().err
    monkeypatch.undo()
    written = main(parse_args([*argv, "--images-per-mask", "1", "--overwrite"]))
    assert {p.name for p in out.iterdir()} == {p.name for p in written} | {"notes.txt", ".lung-diffusers-manifest.json"}
    assert not (out / "nodule_seed1.png").exists() and (out / "notes.txt").read_text() == "mine"
    # A folder of someone else's files is refused, even with --overwrite (`make demo` passes it).
    assert cli(["--pipeline", str(demo_pipeline), "--output", str(demo_pipeline), "--overwrite"]) == 2
    assert "is not empty" in capsys.readouterr().err


REPO = Path(__file__).resolve().parents[1]


def test_bundled_demo_checkpoints_load_and_run(tmp_path):
    """The committed pipelines/ folders: the SDM draws through `make demo`'s code, the prior loads in diffusers and
    in the RePaint pipeline, both marked as trained models with a card."""
    from diffusers import DDPMPipeline

    from lung_diffusers import LungRePaintPipeline

    sdm = REPO / "pipelines" / "lung-sdm-64"
    written = main(parse_args(["--pipeline", str(sdm), "--output", str(tmp_path), "--steps", "2",
                               "--images-per-mask", "1"]))
    assert len(written) == 6 and all(is_synthetic(p) for p in written)  # 2 masks x (PNG, NIfTI) + 2 side-by-side
    prior = REPO / "pipelines" / "lung-ddpm-prior-64"
    patches = DDPMPipeline.from_pretrained(prior)(batch_size=1, num_inference_steps=2, output_type="np").images
    assert patches.shape == (1, 64, 64, 1)
    assert LungRePaintPipeline.from_pretrained(prior).unet.config.out_channels == 2  # learned variance
    for folder in (sdm, prior):
        card = (folder / "README.md").read_text()
        assert "| steps |" in card and "synthetic" in card
        assert json.loads((folder / "training.json").read_text())["steps"] > 1000


def test_with_an_upscaler_the_demo_draws_full_resolution_slices_through_both_stages(
    demo_pipeline, tmp_path, capsys, monkeypatch
):
    from lung_diffusers import LungSDMUpscalePipeline

    torch.manual_seed(1)
    unet = SemanticUNet2DModel(sample_size=64, block_out_channels=(32, 32), layers_per_block=1,
                               attention_downsample_factors=(), add_attention=False, low_res_channels=1)
    schedule = DDPMScheduler(variance_type="learned_range", clip_sample=True)
    folder = tmp_path / "upscaler"
    LungSDMUpscalePipeline(unet, schedule, schedule).save_pretrained(folder)
    (folder / "example_masks").mkdir()
    labels = np.kron(np.asarray(PIL.Image.open(demo_pipeline / "example_masks" / "nodule.png")), np.ones((2, 2), np.uint8))
    PIL.Image.fromarray(labels).save(folder / "example_masks" / "nodule.png")

    calls = []
    call = LungSDMCombinedPipeline.__call__
    monkeypatch.setattr(LungSDMCombinedPipeline, "__call__", lambda pipe, *a, **k: calls.append(k) or call(pipe, *a, **k))
    written = main(parse_args(["--pipeline", str(demo_pipeline), "--upscaler", str(folder), "--output",
                               str(tmp_path / "out"), "--steps", "1", "--images-per-mask", "1",
                               "--upscaler-strength", "0.5"]))
    slices = [p for p in written if p.name == "nodule_seed0.png"]
    assert slices and all(is_synthetic(p) for p in written)
    with PIL.Image.open(slices[0]) as image:
        assert image.size == (64, 64)  # the upscaler's size, from its 32-px first stage
    printed = capsys.readouterr().out
    assert "64-px images" in printed and "1 steps per stage, upscaler strength 0.5)" in printed
    assert calls and {(k["noise_level"], k["upscaler_strength"]) for k in calls} == {(100, 0.5)}
    assert parse_args([]).upscaler_strength == 0.4  # the pipeline's default
    for bad in ("0", "1.5", "nan"):  # refused in one line before anything loads
        assert cli(["--pipeline", str(demo_pipeline), "--upscaler", str(folder), "--output", str(tmp_path / "bad"),
                    "--upscaler-strength", bad]) == 2
        assert "--upscaler-strength must be a share of the upscaler's steps in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="exclude each other"):
        main(parse_args(["--pipeline", str(demo_pipeline), "--upscaler", str(folder), "--no-upscaler",
                         "--output", str(tmp_path / "again")]))


def test_bundled_cascade_draws_256_px_slices_that_follow_its_first_stage(tmp_path):
    """pipelines/lung-sdm-64 then pipelines/lung-sdm-upscaler-256 on the upscaler's example mask, a few steps: a
    256-px slice, marked synthetic, with air, lungs and body where the mask puts them, that agrees with stage 1."""
    upscaler = REPO / "pipelines" / "lung-sdm-upscaler-256"
    pipe = LungSDMCombinedPipeline.from_stages(REPO / "pipelines" / "lung-sdm-64", upscaler)
    pipe.set_progress_bar_config(disable=True)
    labels = np.asarray(PIL.Image.open(upscaler / "example_masks" / "healthy.png"))
    out = pipe(labels, num_inference_steps=8, upscaler_num_inference_steps=5, generator=0, output_type="hu")
    hu = out.images[0]
    assert out.synthetic and hu.shape == labels.shape == (256, 256)
    assert np.median(hu[labels == 0]) < -900 and np.median(hu[np.isin(labels, (2, 3))]) < -600
    assert -200 < np.median(hu[labels == 1]) < 200
    low_hu = out.low_res_images[0] * 1400 - 1000
    down = hu.reshape(64, 4, 64, 4).mean(axis=(1, 3))
    body = out.low_res_label_maps[0] > 0
    # Within 100 HU at these few steps (the fidelity evaluation measures the 60-HU goal at the default steps).
    assert np.abs(down - low_hu)[body].mean() < 100
    card = (upscaler / "README.md").read_text()
    assert "| steps |" in card and "synthetic" in card and "64-px crops" in card
    assert json.loads((upscaler / "training.json").read_text())["steps"] >= 7000


def test_bundled_malignancy_sdm_draws_a_malignant_nodule_through_both_stages():
    """pipelines/lung-sdm-64-malignancy (7 classes, task b's generator) before the 6-class upscaler, on its example
    nodule mask (the held-out patient's malignant nodule, label 6) enlarged to 256 px: a synthetic slice whose
    nodule is brighter than the lung around it."""
    sdm = REPO / "pipelines" / "lung-sdm-64-malignancy"
    pipe = LungSDMCombinedPipeline.from_stages(sdm, REPO / "pipelines" / "lung-sdm-upscaler-256")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.num_classes == 7
    small = np.asarray(PIL.Image.open(sdm / "example_masks" / "nodule.png"))
    assert (small == 6).any() and not (small == 5).any()
    labels = np.kron(small, np.ones((4, 4), np.uint8))
    out = pipe(labels, num_inference_steps=8, upscaler_num_inference_steps=5, generator=0, output_type="hu")
    hu = out.images[0]
    assert out.synthetic and hu.shape == (256, 256)
    assert np.median(hu[labels == 6]) > np.median(hu[np.isin(labels, (2, 3))]) + 300
    training = json.loads((sdm / "training.json").read_text())
    assert training["configs"] == ["healthy", "malignancy"] and training["steps"] >= 3000
    assert "malignant nodule" in (sdm / "README.md").read_text()
