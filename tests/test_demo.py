"""`make demo` (python -m lung_diffusers.demo): outputs of every kind, all marked synthetic; clear errors."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel, is_synthetic
from lung_diffusers.demo import cli, main, parse_args


@pytest.fixture
def demo_pipeline(tmp_path, reference_labels):
    torch.manual_seed(0)
    unet = SemanticUNet2DModel(sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
                               attention_downsample_factors=(2,), attention_head_dim=16)
    folder = tmp_path / "pipe"
    LungSDMPipeline(unet, DDPMScheduler(variance_type="learned_range", clip_sample=True)).save_pretrained(folder)
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
    assert side.size == (3 * 256, 256)  # mask | two samples, upscaled for viewing
    assert "mask" in side.text["Columns"]
    assert PIL.Image.open(tmp_path / "out" / "nodule_seed1.png").text["mask"] == "test map"


def test_demo_errors_are_one_line(tmp_path, capsys):
    assert cli(["--pipeline", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


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
