"""The cascade: LungSDMUpscalePipeline (stage 2), LungSDMCombinedPipeline (both stages) and the low-resolution map
rule, with tiny random models (their images are noise; the contracts are what is tested)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from lung_support import tiny_sdm, tiny_upscaler

from lung_diffusers import (
    LungSDMCombinedPipeline,
    LungSDMPipeline,
    LungSDMUpscalePipeline,
    is_synthetic,
    load_pipeline,
    save_synthetic_png,
)
from lung_diffusers.cascade import low_res_label_map, upsample_low_res

SIDE, LOW = 64, 16


def schedule():
    return DDPMScheduler(variance_type="learned_range", clip_sample=True, timestep_spacing="linspace")


@pytest.fixture(scope="module")
def base_pipe():
    pipe = LungSDMPipeline(tiny_sdm(LOW), schedule())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def upscale_pipe():
    pipe = LungSDMUpscalePipeline(tiny_upscaler(SIDE, training_crop_size=32), schedule(), schedule())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def chest(side=SIDE, nodule_px=2):
    labels = np.zeros((side, side), np.uint8)
    s = side // 16
    labels[s : 15 * s, s : 15 * s] = 1
    labels[3 * s : 12 * s, 2 * s : 7 * s] = 3
    labels[3 * s : 12 * s, 9 * s : 14 * s] = 2
    labels[8 * s : 8 * s + nodule_px, 11 * s : 11 * s + nodule_px] = 5
    return labels


def low_res_image(batch=1):
    return torch.rand(batch, 1, LOW, LOW, generator=torch.Generator().manual_seed(4)) * 2 - 1


def test_stage_two_makes_full_size_slices_marked_synthetic_in_every_output_type(upscale_pipe, tmp_path):
    kwargs = dict(num_inference_steps=2, noise_level=20, generator=torch.Generator().manual_seed(0))
    out = upscale_pipe(low_res_image(), chest(), output_type="pil", **kwargs)
    assert out.synthetic and out.images[0].size == (SIDE, SIDE) and out.images[0].info.get("synthetic")
    assert is_synthetic(save_synthetic_png(out.images[0], tmp_path / "slice.png"))
    hu = upscale_pipe(low_res_image(), chest(), output_type="hu", **{**kwargs, "generator": torch.Generator().manual_seed(0)})
    latent = upscale_pipe(low_res_image(), chest(), output_type="latent", **{**kwargs, "generator": torch.Generator().manual_seed(0)})
    assert hu.images.shape == (1, SIDE, SIDE) and -1000 <= hu.images.min() and hu.images.max() <= 400
    assert latent.images.shape == (1, 1, SIDE, SIDE)
    np.testing.assert_allclose(hu.images[0], -1000 + (latent.images[0, 0].numpy() / 2 + 0.5).clip(0, 1) * 1400, atol=1e-3)


def test_the_low_res_image_and_its_noise_level_steer_the_output(upscale_pipe):
    def run(image, level):
        return upscale_pipe(image, chest(), num_inference_steps=2, noise_level=level, output_type="latent",
                            generator=torch.Generator().manual_seed(0)).images

    base = run(low_res_image(), 20)
    assert not torch.allclose(base, run(-low_res_image(), 20))
    assert not torch.allclose(base, run(low_res_image(), 200))
    torch.testing.assert_close(base, run(low_res_image(), 20), rtol=0, atol=0)  # one seed, one result


def test_batches_guidance_schedulers_and_callbacks(upscale_pipe):
    maps = np.stack([chest(), chest(nodule_px=4)])
    steps = []
    out = upscale_pipe(
        low_res_image(2), maps, num_inference_steps=3, strength=1.0, guidance_scale=1.5, num_images_per_prompt=2,
        output_type="np", callback_on_step_end=lambda pipe, i, t, kw: steps.append(i) or kw,
    )
    assert out.images.shape == (4, SIDE, SIDE, 1) and steps == [0, 1, 2] and upscale_pipe.num_timesteps == 3
    original = upscale_pipe.scheduler
    try:
        for scheduler in (DDIMScheduler, DPMSolverMultistepScheduler):
            upscale_pipe.scheduler = scheduler.from_config(original.config)
            assert np.isfinite(upscale_pipe(low_res_image(), chest(), num_inference_steps=2, output_type="np").images).all()
    finally:
        upscale_pipe.scheduler = original


def test_strength_starts_the_chain_from_the_upsampled_image_noised_part_way(upscale_pipe):
    def run(strength, steps=25, **kwargs):
        return upscale_pipe(low_res_image(), chest(), num_inference_steps=steps, strength=strength, noise_level=20,
                            output_type="latent", generator=torch.Generator().manual_seed(0), **kwargs)

    steps = []
    run(0.4, callback_on_step_end=lambda pipe, i, t, kw: steps.append(int(t)) or kw)
    upscale_pipe.scheduler.set_timesteps(25)
    assert steps == upscale_pipe.scheduler.timesteps[15:].tolist() and upscale_pipe.num_timesteps == 10
    # One step from the least-noised end keeps the upsampled input (the random model barely moves it); the whole
    # chain, from pure noise, does not.
    upsampled = upsample_low_res(low_res_image(), SIDE)
    assert (run(0.04).images - upsampled).abs().mean() < 0.05
    assert (run(1.0).images - upsampled).abs().mean() > 0.2
    assert upscale_pipe(low_res_image(), chest(), num_inference_steps=2, output_type="latent").images.shape[-1] == SIDE
    original = upscale_pipe.scheduler
    try:  # a multistep solver and a second-order one start part-way too
        for name in ("DPMSolverMultistepScheduler", "HeunDiscreteScheduler"):
            upscale_pipe.scheduler = getattr(__import__("diffusers"), name).from_config(original.config)
            near, far = ((run(strength).images - upsampled).abs().mean() for strength in (0.04, 1.0))
            assert near < far / 2
    finally:
        upscale_pipe.scheduler = original


def test_a_stage_trained_on_crops_samples_whole_slices_without_a_size_warning(upscale_pipe, recwarn):
    upscale_pipe(low_res_image(), chest(), num_inference_steps=1, output_type="latent")
    assert not [w for w in recwarn if "trained" in str(w.message)]
    assert upscale_pipe.unet.config.training_crop_size == 32


def test_bad_inputs_get_clear_errors(upscale_pipe, base_pipe):
    with pytest.raises(ValueError, match="noise_level must be an integer step"):
        upscale_pipe(low_res_image(), chest(), noise_level=1000)
    for strength in (0, 1.5, True, "0.4"):
        with pytest.raises(ValueError, match="strength must be a share of the chain"):
            upscale_pipe(low_res_image(), chest(), strength=strength)
    with pytest.raises(ValueError, match="larger than the label map"):
        upscale_pipe(torch.zeros(1, 1, 128, 128), chest())
    with pytest.raises(ValueError, match="2 low-resolution images for 1 label maps"):
        upscale_pipe(low_res_image(2), chest())
    with pytest.raises(ValueError, match="must lie in"):
        upscale_pipe(low_res_image() * 300, chest())
    with pytest.raises(ValueError, match="needs a super-resolution U-Net"):
        LungSDMUpscalePipeline(base_pipe.unet, schedule(), schedule())
    with pytest.raises(ValueError, match="sample it with LungSDMUpscalePipeline"):
        LungSDMPipeline(upscale_pipe.unet, schedule())
    with pytest.raises(TypeError, match="diffusers scheduler instance"):
        upscale_pipe.scheduler = "dpm"


def test_the_low_res_map_keeps_nodules_smaller_than_a_pixel():
    labels = chest(SIDE, nodule_px=2)  # a 2x2 nodule: 1/4 of one 4x4 block, lost to a plain vote
    small = low_res_label_map(labels, LOW)
    assert small.shape == (LOW, LOW) and (small == 5).sum() == 1
    assert set(np.unique(small)) == {0, 1, 2, 3, 5}
    big = low_res_label_map(chest(SIDE, nodule_px=8), LOW)
    assert (big == 5).sum() == 4  # a nodule that wins the vote keeps its area
    malignant = chest(SIDE, nodule_px=2)
    malignant[malignant == 5] = 6
    assert (low_res_label_map(malignant, LOW, (5, 6)) == 6).sum() == 1


def test_upsampling_is_bicubic_and_stays_in_range():
    noise = torch.rand(2, 1, 8, 8) * 2 - 1
    up = upsample_low_res(noise, 32)
    assert up.shape == (2, 1, 32, 32) and up.min() >= -1 and up.max() <= 1  # bicubic overshoot clipped
    ramp = torch.linspace(-0.8, 0.8, 8).expand(1, 1, 8, 8)
    # A smooth image survives upsampling: area-downsampled back, it is the image again.
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(upsample_low_res(ramp, 32), 4), ramp, atol=0.02, rtol=0)


def test_the_combined_pipeline_runs_both_stages_and_one_seed_reproduces_them(base_pipe, upscale_pipe):
    pipe = LungSDMCombinedPipeline.from_stages(base_pipe, upscale_pipe)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=2, upscaler_num_inference_steps=2, noise_level=20, output_type="np")
    first = pipe(chest(), generator=7, **kwargs)
    again = pipe(chest(), generator=torch.Generator().manual_seed(7), **kwargs)
    other = pipe(chest(), generator=8, **kwargs)
    assert first.images.shape == (1, SIDE, SIDE, 1) and first.synthetic
    assert first.low_res_images.shape == (1, LOW, LOW) and (first.low_res_label_maps == 5).sum() == 1
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    # Stage 1 alone, on the same map and seed, is what stage 2 started from.
    stage_one = base_pipe(first.low_res_label_maps, num_inference_steps=2, output_type="latent",
                          generator=torch.Generator().manual_seed(7)).images
    np.testing.assert_allclose(first.low_res_images, (stage_one[:, 0].numpy() / 2 + 0.5).clip(0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of stage 1's 16 px"):
        pipe(chest()[:60, :60], **kwargs)
    with pytest.raises(ValueError, match="strength must be a share"):
        pipe(chest(), upscaler_strength=0, **kwargs)


def test_a_malignancy_stage_one_runs_before_the_nodule_upscaler_which_reads_both_nodules_as_one(upscale_pipe):
    base = LungSDMPipeline(tiny_sdm(LOW, num_classes=7), schedule())
    pipe = LungSDMCombinedPipeline.from_stages(base, upscale_pipe)
    pipe.set_progress_bar_config(disable=True)
    benign = chest(nodule_px=8)
    malignant = np.where(benign == 5, 6, benign).astype(np.uint8)
    np.testing.assert_array_equal(pipe.stage_two_labels(torch.from_numpy(malignant)), benign)
    kwargs = dict(noise_level=20, output_type="np")
    out = pipe(malignant, num_inference_steps=2, upscaler_num_inference_steps=2, generator=3,
               upscaler_generator=torch.Generator().manual_seed(5), **kwargs)
    assert (out.low_res_label_maps == 6).sum() > 0  # stage 1 drew a malignant nodule
    # Stage 2 alone, from stage 1's image with the nodule as its one nodule class, is what the cascade gave.
    alone = upscale_pipe(torch.from_numpy(out.low_res_images[:, None] * 2 - 1), benign[None], num_inference_steps=2,
                         generator=torch.Generator().manual_seed(5), **kwargs)
    np.testing.assert_allclose(out.images, alone.images, atol=1e-4)
    config = {k: v for k, v in upscale_pipe.unet.config.items() if not k.startswith("_")}
    seven_class_upscaler = type(upscale_pipe.unet).from_config({**config, "num_classes": 7})
    with pytest.raises(ValueError, match="only a 7-class malignancy stage 1 may run before a 6-class stage 2"):
        LungSDMCombinedPipeline(unet=tiny_sdm(LOW), scheduler=schedule(), upscaler_unet=seven_class_upscaler,
                                upscaler_scheduler=schedule(), image_noising_scheduler=schedule())


def test_stage_folders_and_combined_folders_load_by_their_class(base_pipe, upscale_pipe, tmp_path):
    upscale_pipe.save_pretrained(tmp_path / "upscaler")
    base_pipe.save_pretrained(tmp_path / "base")
    card = (tmp_path / "upscaler" / "README.md").read_text()
    assert "LungSDMUpscalePipeline" in card and "synthetic" in card.lower() and "32-px crops" in card
    loaded = load_pipeline(tmp_path / "upscaler")
    assert isinstance(loaded, LungSDMUpscalePipeline) and loaded.unet.config.low_res_channels == 1
    with pytest.raises(ValueError, match="LungSDMUpscalePipeline folder, which LungSDMPipeline cannot load"):
        LungSDMPipeline.from_pretrained(tmp_path / "upscaler")
    combined = LungSDMCombinedPipeline.from_stages(tmp_path / "base", tmp_path / "upscaler")
    combined.save_pretrained(tmp_path / "combined")
    again = load_pipeline(tmp_path / "combined")
    assert isinstance(again, LungSDMCombinedPipeline)
    again.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=1, upscaler_num_inference_steps=1, output_type="np", generator=0)
    np.testing.assert_array_equal(combined(chest(), **kwargs).images, again(chest(), **kwargs).images)
