"""Mask-free anomaly maps (AnoDDPM-style partial noising and denoising with the prior): the hook for item 3."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from diffusers import DDIMScheduler, RePaintScheduler
from lung_support import repaint_pipe, save_tiny_prior, tiny_sdm

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
        anomaly_map(repaint_pipe(tiny_sdm()), slice32)
    prior_pipe.scheduler = RePaintScheduler.from_config(prior_pipe.scheduler.config)
    with pytest.raises(ValueError, match="need a DDPMScheduler or DDIMScheduler"):
        anomaly_map(prior_pipe, slice32)


def test_the_anomaly_map_command(tmp_path, capsys):
    from lung_diffusers.cli import main

    save_tiny_prior(tmp_path / "prior")
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


def _reference_reconstruction(pipe, window, noise_level, num_inference_steps, num_samples, seed, eta):
    """The hand-written U-Net loop anomaly reconstruction used before it became a LungRePaintPipeline call."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    from lung_diffusers.pipelines.denoised_clipping import clip_denoised_epsilon, scheduler_clips_itself

    scheduler, unet = pipe.scheduler, pipe.unet
    generator = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(num_inference_steps)
    kept = min(int(num_inference_steps * noise_level), num_inference_steps)
    timesteps = scheduler.timesteps[num_inference_steps - kept :]
    clean = (torch.from_numpy(window)[None, None] * 2 - 1).repeat(num_samples, 1, 1, 1)
    alpha = scheduler.alphas_cumprod[int(timesteps[0])].to(torch.float32)
    noise = randn_tensor(clean.shape, generator=generator, dtype=clean.dtype)
    sample = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise
    reads_variance = type(scheduler).__name__ == "DDPMScheduler" and scheduler.config.variance_type == "learned_range"
    extra = pipe.prepare_extra_step_kwargs(generator, eta)
    with torch.no_grad():
        for t in timesteps:
            t = int(t)
            output = unet(scheduler.scale_model_input(sample, t), t).sample
            epsilon, variance = output[:, :1], output[:, 1:]
            if not scheduler_clips_itself(scheduler):
                epsilon = clip_denoised_epsilon(scheduler, sample, epsilon, t)
            model_output = torch.cat([epsilon, variance], dim=1) if reads_variance else epsilon
            sample = scheduler.step(model_output, t, sample, **extra).prev_sample
    return (sample.float()[:, 0] / 2 + 0.5).clamp(0, 1).numpy()


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_reconstruction_is_the_repaint_pipeline_in_image_to_image_mode_and_unchanged(prior_pipe, slice32, scheduler):
    # Anomaly reconstruction is a LungRePaintPipeline call (mask_image=None, strength=noise level); for fixed
    # seeds it gives exactly what the former hand-written U-Net loop gave.
    if scheduler == "ddim":
        prior_pipe.scheduler = DDIMScheduler.from_config(prior_pipe.scheduler.config)
    got = reconstruct_from_noise_level(prior_pipe, slice32, noise_level=0.4, num_inference_steps=10, num_samples=2, generator=5, eta=0.5)
    expected = _reference_reconstruction(prior_pipe, slice32, 0.4, 10, 2, 5, 0.5)
    np.testing.assert_array_equal(got, expected)
