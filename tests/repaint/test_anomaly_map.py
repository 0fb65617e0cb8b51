"""Mask-free anomaly maps (AnoDDPM-style partial noising and denoising with the prior): the hook for item 3."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from diffusers import DDIMScheduler, RePaintScheduler
from repaint_support import make_pipe, tiny_sdm, tiny_unet

from lung_diffusers import is_synthetic
from lung_diffusers.inpainting import anomaly_map, reconstruct_from_noise_level


@pytest.fixture
def slice32():
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 0.6, (32, 32)).astype(np.float32)


def test_the_noise_level_sets_how_far_the_reconstruction_strays(prior_pipe, slice32):
    # At the slice's own size (32 px) with a 16-px prior: the convolutional prior runs on the whole slice.
    near = reconstruct_from_noise_level(prior_pipe, slice32, noise_level=0.02, num_inference_steps=50, generator=0)
    far = reconstruct_from_noise_level(prior_pipe, slice32, noise_level=0.9, num_inference_steps=50, generator=0)
    assert near.shape == far.shape == (1, 32, 32)
    assert np.abs(near[0] - slice32).mean() < 0.5 * np.abs(far[0] - slice32).mean()


def test_anomaly_maps_with_samples_and_their_files(prior_pipe, slice32, tmp_path):
    prior_pipe.scheduler = DDIMScheduler.from_config(prior_pipe.scheduler.config)
    result = anomaly_map(prior_pipe, slice32, noise_level=0.3, num_inference_steps=10, num_samples=2, generator=0)
    assert result.reconstructions.shape == (2, 32, 32) and result.uncertainty.shape == (32, 32) and result.synthetic
    written = result.save(tmp_path / "anomaly")
    assert all(is_synthetic(path) for path in written.values())
    with PIL.Image.open(written["figure.png"]) as figure:
        assert figure.text["real_panels"] == "1" and figure.text["noise_level"] == "0.3"


def test_anomaly_maps_refuse_what_cannot_work(prior_pipe, slice32):
    with pytest.raises(ValueError, match="noise_level must be a fraction"):
        anomaly_map(prior_pipe, slice32, noise_level=0)
    with pytest.raises(ValueError, match="below the first of 2 steps"):
        anomaly_map(prior_pipe, slice32, noise_level=0.1, num_inference_steps=2)
    with pytest.raises(ValueError, match="multiples of 2"):
        anomaly_map(prior_pipe, slice32[:31], noise_level=0.3, num_inference_steps=4)
    with pytest.raises(ValueError, match="not a Semantic Diffusion Model"):
        anomaly_map(make_pipe(tiny_sdm()), slice32)
    prior_pipe.scheduler = RePaintScheduler.from_config(prior_pipe.scheduler.config)
    with pytest.raises(ValueError, match="need a DDPMScheduler or DDIMScheduler"):
        anomaly_map(prior_pipe, slice32)


def test_the_anomaly_map_command(tmp_path, capsys):
    from diffusers import DDPMPipeline
    from repaint_support import prior_scheduler

    from lung_diffusers.cli import main

    DDPMPipeline(unet=tiny_unet(), scheduler=prior_scheduler()).save_pretrained(tmp_path / "prior")
    grey = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    PIL.Image.fromarray(grey).save(tmp_path / "slice.png")
    argv = [
        "anomaly-map",
        "--pipeline",
        tmp_path / "prior",
        "--image",
        tmp_path / "slice.png",
        "--image-size",
        "32",
        "--noise-level",
        "0.2",
        "--steps",
        "20",
        "--output",
        tmp_path / "out",
        "--quiet",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "at noise level 0.2: 32x32 px" in out
    assert {"reconstruction-0.png", "reconstruction.nii.gz", "anomaly.png", "anomaly.nii.gz", "figure.png"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }
