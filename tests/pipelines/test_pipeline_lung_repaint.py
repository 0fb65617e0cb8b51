"""LungRePaintPipeline: equivalence with diffusers' RePaintPipeline, scheduler swapping, learned variance, sizes,
outputs, batches, callbacks, loading, and input validation (tiny random U-Nets)."""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, RePaintScheduler
from lung_support import FAST, prior_scheduler, repaint_pipe, save_tiny_prior, tiny_prior_unet, tiny_sdm

from lung_diffusers import LungRePaintPipeline, LungSDMPipeline, is_synthetic, save_synthetic_png
from lung_diffusers.pipelines.pipeline_lung_repaint import repaint_schedule


def image_and_mask(batch: int = 2, size: int = 16, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 1, size, size, generator=generator) * 2 - 1
    mask = torch.ones(batch, 1, size, size)
    mask[..., 4:10, 5:12] = 0  # 1 = keep, 0 = regenerate
    return image, mask


def reference_pipeline(unet):
    from diffusers.pipelines.deprecated.repaint.pipeline_repaint import RePaintPipeline

    pipe = RePaintPipeline(unet=unet, scheduler=RePaintScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_reference(unet, image, mask, seed, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecated pipeline warns about its preprocessing
        return reference_pipeline(unet)(
            image, mask, generator=torch.Generator().manual_seed(seed), output_type="np", **settings
        ).images


# ------------------------------------------------------------------------------------- reference equivalence


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_equals_diffusers_repaint_pipeline_with_the_repaint_scheduler(eta):
    # The reference's conditions: epsilon-only UNet2DModel, tensors in [-1, 1], (B, 1, H, W) mask with 1 = keep,
    # one torch.Generator, float32.
    unet = tiny_prior_unet(learned_variance=False)
    image, mask = image_and_mask()
    settings = {"num_inference_steps": 20, "jump_length": 3, "jump_n_sample": 3, "eta": eta}
    expected = run_reference(unet, image, mask, seed=3, **settings)
    pipe = repaint_pipe(unet, RePaintScheduler())
    ours = pipe(image, mask, generator=torch.Generator().manual_seed(3), output_type="np", **settings).images
    assert ours.shape == expected.shape == (2, 16, 16, 1)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_a_learned_variance_model_gives_the_repaint_scheduler_its_epsilon_half_only():
    # diffusers' RePaintPipeline would pass both channels as epsilon; we must equal it run on the epsilon half.
    unet = tiny_prior_unet(learned_variance=True)

    class EpsilonHalf(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        @property
        def dtype(self):
            return self.inner.dtype

        @property
        def device(self):
            return self.inner.device

        def forward(self, sample, t):
            return type("Out", (), {"sample": self.inner(sample, t).sample[:, :1]})

    image, mask = image_and_mask(batch=1)
    settings = {"num_inference_steps": 10, "jump_length": 2, "jump_n_sample": 2}
    expected = run_reference(EpsilonHalf(unet), image, mask, seed=1, **settings)
    ours = repaint_pipe(unet, RePaintScheduler())(
        image, mask, generator=torch.Generator().manual_seed(1), output_type="np", **settings
    )
    np.testing.assert_allclose(ours.images, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("settings", [(20, 3, 3), (50, 5, 5), (250, 10, 10), (10, 1, 4), (7, 3, 1)])
def test_the_jump_schedule_is_the_repaint_schedulers(settings):
    scheduler = RePaintScheduler()
    scheduler.set_timesteps(*settings)
    expected = scheduler.timesteps.numpy()
    assert np.array_equal(np.array(repaint_schedule(*settings)) * (1000 // settings[0]), expected)


def test_the_generic_loop_on_ddim_equals_the_repaint_scheduler_without_jumps():
    # Without jumps, eta 0 and clipping, RePaint's step is DDIM's, and the known region is noised with one draw
    # per step in both: the generic loop (written against the DDIM API) must give the same images.
    unet = tiny_prior_unet(learned_variance=False)
    image, mask = image_and_mask()
    settings = {"num_inference_steps": 10, "jump_length": 2, "jump_n_sample": 1}
    runs = []
    for scheduler in (
        RePaintScheduler(clip_sample=False),
        DDIMScheduler(clip_sample=False, timestep_spacing="leading"),
    ):
        pipe = repaint_pipe(unet, scheduler)
        runs.append(
            pipe(
                image,
                mask,
                generator=torch.Generator().manual_seed(5),
                output_type="np",
                clip_denoised=False,
                **settings,
            ).images
        )
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("kind", [DDPMScheduler, DDIMScheduler, RePaintScheduler])
def test_schedulers_swap_the_diffusers_way_and_keep_the_known_region(prior_pipe, kind):
    prior_pipe.scheduler = kind.from_config(prior_pipe.scheduler.config)
    assert prior_pipe.scheduler.config.beta_end == 0.02  # the pinned noise schedule survives the swap
    image, mask = image_and_mask()
    out = prior_pipe(image, mask, generator=torch.Generator().manual_seed(0), output_type="pt", eta=0.5, **FAST)
    known = mask.bool().expand_as(out.images)
    np.testing.assert_allclose(out.images[known], (image[known] + 1) / 2, atol=1e-5)
    assert (out.images[~known] - (image[~known] + 1) / 2).abs().max() > 0.05
    again = prior_pipe(image, mask, generator=torch.Generator().manual_seed(0), output_type="pt", eta=0.5, **FAST)
    assert torch.equal(out.images, again.images)


@pytest.mark.parametrize(("kind", "channels"), [(DDPMScheduler, 2), (DDIMScheduler, 1), (RePaintScheduler, 1)])
def test_only_ddpm_with_learned_range_gets_the_variance_channels(prior_pipe, kind, channels, monkeypatch):
    prior_pipe.scheduler = kind.from_config(prior_pipe.scheduler.config)
    seen = []
    step = prior_pipe.scheduler.step
    monkeypatch.setattr(
        prior_pipe.scheduler, "step", lambda output, *a, **k: seen.append(output.shape[1]) or step(output, *a, **k)
    )
    prior_pipe(*image_and_mask(batch=1), output_type="np", **FAST)
    assert set(seen) == {channels}


def test_unusable_schedulers_are_refused_with_a_way_out(prior_pipe):
    image, mask = image_and_mask(batch=1)
    with pytest.raises(ValueError, match="cannot run RePaint.*DDIMScheduler"):  # when assigned, not at the next call
        prior_pipe.scheduler = DPMSolverMultistepScheduler.from_config(prior_pipe.scheduler.config)
    assert isinstance(prior_pipe.scheduler, DDPMScheduler)
    for value, message in (("ddim", "got 'ddim'"), (DDIMScheduler, "got the class DDIMScheduler"), (None, "got None")):
        with pytest.raises(TypeError, match=message):
            prior_pipe.scheduler = value
        with pytest.raises(TypeError, match=message):
            LungRePaintPipeline(prior_pipe.unet, value)
    prior_pipe.scheduler = DDPMScheduler.from_config(prior_pipe.scheduler.config, variance_type="learned")
    with pytest.raises(ValueError, match="learned_range"):
        prior_pipe(image, mask, **FAST)
    epsilon_only = repaint_pipe(tiny_prior_unet(learned_variance=False))  # with the prior's learned_range scheduler
    with pytest.raises(ValueError, match="needs a learned-variance model"):
        epsilon_only(image, mask, **FAST)


# ------------------------------------------------------------------------------------- sizes


def test_crop_inpaints_a_model_sized_window_around_the_region_and_pastes_it_back(prior_pipe):
    image = torch.rand(1, 1, 48, 40) * 2 - 1
    mask = torch.ones(1, 1, 48, 40)
    mask[..., 30:36, 31:37] = 0  # near the right edge: the window is clamped inside the image
    out = prior_pipe(image, mask, generator=torch.Generator().manual_seed(0), output_type="latent", **FAST)
    assert out.images.shape == (1, 1, 48, 40)
    changed = (out.images != image)[0, 0].nonzero()
    assert changed[:, 0].min() >= 25 and changed[:, 0].max() < 41  # the 16-px window centred on rows 30-35
    assert changed[:, 1].min() >= 24 and changed[:, 1].max() < 40
    assert out.regenerated_masks.shape == (1, 48, 40) and out.regenerated_masks[0, 30:36, 31:37].all()
    np.testing.assert_allclose(out.input_images[0, ..., 0], (image[0, 0].numpy() + 1) / 2, atol=1e-6)


def test_resize_gives_the_models_size_and_none_runs_at_the_input_size(prior_pipe):
    image = torch.rand(1, 1, 32, 32) * 2 - 1
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 10:13, 10:13] = 0
    resized = prior_pipe(image, mask, size_handling="resize", output_type="np", **FAST)
    assert resized.images.shape == (1, 16, 16, 1)
    assert resized.regenerated_masks[0].sum() == 4  # 3x3 pixels at 10-12 touch output pixels 5-6
    np.testing.assert_allclose(
        resized.input_images[0, ..., 0], torch.nn.functional.avg_pool2d((image + 1) / 2, 2)[0, 0], atol=1e-6
    )
    full = prior_pipe(image, mask, size_handling="none", output_type="np", **FAST)
    assert full.images.shape == (1, 32, 32, 1)


def test_regions_and_images_that_do_not_fit_are_refused(prior_pipe):
    image = torch.zeros(1, 1, 48, 48)
    mask = torch.ones(1, 1, 48, 48)
    mask[..., 5:30, 5:8] = 0
    with pytest.raises(ValueError, match="spans 25 rows, more than the model's 16-px window"):
        prior_pipe(image, mask, **FAST)
    with pytest.raises(ValueError, match="smaller than the model's 16x16"):
        prior_pipe(torch.zeros(1, 1, 12, 12), torch.ones(1, 1, 12, 12), **FAST)
    with pytest.raises(ValueError, match="multiples of 2"):
        prior_pipe(torch.zeros(1, 1, 17, 17), torch.ones(1, 1, 17, 17), size_handling="none", **FAST)


# ------------------------------------------------------------------------------------- outputs, batches, callbacks


def test_output_types_are_marked_synthetic(prior_pipe):
    image, mask = image_and_mask(batch=1)

    def run(kind):
        return prior_pipe(image, mask, generator=torch.Generator().manual_seed(0), output_type=kind, **FAST)

    pil = run("pil")
    assert pil.synthetic and pil.images[0].mode == "L" and pil.images[0].info["synthetic"] == "true"
    np_images, pt, hu, latent = (run(kind).images for kind in ("np", "pt", "hu", "latent"))
    assert np_images.shape == (1, 16, 16, 1) and pt.shape == latent.shape == (1, 1, 16, 16)
    np.testing.assert_allclose(hu[0], -1000 + np_images[0, ..., 0] * 1400, atol=1e-3)
    np.testing.assert_allclose(pt, ((latent + 1) / 2).clamp(0, 1))
    images, synthetic = prior_pipe(image, mask, output_type="np", return_dict=False, **FAST)
    assert synthetic is True and images.shape == (1, 16, 16, 1)


def test_grey_pil_and_numpy_inputs_work(prior_pipe, tmp_path):
    # diffusers' RePaintPipeline fails on grey PIL images; CT slices are grey.
    grey = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    keep = np.full((16, 16), 255, np.uint8)
    keep[4:9, 4:9] = 0
    out = prior_pipe(PIL.Image.fromarray(grey), PIL.Image.fromarray(keep), output_type="np", **FAST)
    assert out.images.shape == (1, 16, 16, 1)
    same = prior_pipe(grey, keep, output_type="np", **FAST)  # numpy uint8, mask 0/255
    np.testing.assert_allclose(same.input_images, out.input_images)
    path = save_synthetic_png(
        prior_pipe(grey.astype(np.float32) / 255, keep > 0, **FAST).images[0], tmp_path / "x.png"
    )
    assert is_synthetic(path)


def test_a_list_of_generators_gives_each_image_what_it_gives_alone(prior_pipe):
    image, mask = image_and_mask(batch=2)
    batch = prior_pipe(
        image, mask, generator=[torch.Generator().manual_seed(s) for s in (1, 2)], output_type="np", **FAST
    )
    for index, seed in enumerate((1, 2)):
        alone = prior_pipe(
            image[index : index + 1],
            mask[index : index + 1],
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
            **FAST,
        )
        np.testing.assert_allclose(batch.images[index], alone.images[0], atol=1e-5)


def test_several_samples_per_input(prior_pipe):
    image, mask = image_and_mask(batch=1)
    out = prior_pipe(
        image, mask, num_images_per_prompt=3, generator=torch.Generator().manual_seed(0), output_type="np", **FAST
    )
    assert out.images.shape == (3, 16, 16, 1) and out.regenerated_masks.shape == (3, 16, 16)
    assert np.abs(out.images[0] - out.images[1]).max() > 0.01


def test_callbacks_see_every_schedule_entry_and_can_stop_the_loop(prior_pipe):
    image, mask = image_and_mask(batch=1)
    seen = []

    def callback(pipe, i, t, tensors):
        seen.append((i, t))
        if i == 5:
            pipe._interrupt = True
        return {"latents": tensors["latents"]}

    prior_pipe(image, mask, callback_on_step_end=callback, **FAST)
    assert prior_pipe.num_timesteps == len(repaint_schedule(8, 2, 2)) == 20
    assert [i for i, _ in seen] == list(range(6))
    with pytest.raises(ValueError, match="not among"):
        prior_pipe(image, mask, callback_on_step_end_tensor_inputs=["noise"], **FAST)


# ------------------------------------------------------------------------------------- loading


def test_loads_a_ddpm_prior_folder_and_an_sdm_folder(tmp_path):
    save_tiny_prior(tmp_path / "prior")
    prior = LungRePaintPipeline.from_pretrained(tmp_path / "prior")
    assert type(prior.unet).__name__ == "UNet2DModel" and prior.scheduler.config.variance_type == "learned_range"
    LungSDMPipeline(unet=tiny_sdm(), scheduler=prior_scheduler(), hu_window=(-900, 300)).save_pretrained(
        tmp_path / "sdm"
    )
    sdm = LungRePaintPipeline.from_pretrained(tmp_path / "sdm")
    assert sdm.is_semantic and sdm.config.hu_window == [-900.0, 300.0]
    sdm.save_pretrained(tmp_path / "again")
    again = LungRePaintPipeline.from_pretrained(tmp_path / "again")
    assert again.is_semantic and again.default_size_handling() == "resample" and prior.default_size_handling() == "crop"


def test_a_folder_of_another_pipeline_is_refused_with_the_class_that_loads_it(tmp_path):
    import json

    save_tiny_prior(tmp_path / "prior")
    with pytest.raises(
        ValueError,
        match=r"prior is a DDPMPipeline folder \(its unet is an unconditional U-Net, such as the healthy prior\), "
        r"which LungSDMPipeline cannot load: load it with LungRePaintPipeline\.from_pretrained",
    ):
        LungSDMPipeline.from_pretrained(tmp_path / "prior")
    (tmp_path / "sd").mkdir()
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
    (tmp_path / "sd" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="StableDiffusionPipeline folder .*UNet2DConditionModel.*loads folders whose"):
        LungRePaintPipeline.from_pretrained(tmp_path / "sd")


# ------------------------------------------------------------------------------------- the SDM (insertion mechanics)


def test_the_sdm_is_conditioned_on_the_label_map_and_keeps_the_rest(sdm_pipe):
    image, mask = image_and_mask(batch=1)
    labels = np.ones((16, 16), np.uint8)
    labels[3:13, 3:13] = 2
    edited = labels.copy()
    edited[6:9, 7:10] = 5

    def run(label_map):
        generator = torch.Generator().manual_seed(0)
        return sdm_pipe(image, mask, segmentation=label_map, generator=generator, output_type="pt", **FAST).images

    with_nodule, without = run(edited), run(labels)
    known = mask.bool()
    np.testing.assert_allclose(with_nodule[known], (image[known] + 1) / 2, atol=1e-5)
    assert (with_nodule - without).abs().max() > 1e-3  # the map reaches the generated region


# ------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i, m: (i, m[..., :8]), r"mask_image is \(16, 8\) \(H, W\) but the image is \(16, 16\)"),
        (lambda i, m: (i * 300, m), r"\[-1, 1\].*Hounsfield units"),
        (lambda i, m: (i.numpy()[0, 0] + 1, m), r"float numpy image must lie in \[0, 1\]"),
        (lambda i, m: (i, torch.ones_like(m)), "all 1 \\(keep everything\\): there is nothing to regenerate"),
        (lambda i, m: (i, torch.zeros_like(m)), "all 0 \\(regenerate everything\\): there is no known region"),
        (lambda i, m: (i, m * 2), r"mask_image must lie in \[0, 1\]"),
        (lambda i, m: (i, torch.cat([m, m])), "got 2 masks for 1 images"),
        (lambda i, m: (i[:, :, :, :, None], m), "tensor image must be"),
    ],
)
def test_bad_images_and_masks_are_refused(prior_pipe, change, message):
    image, mask = change(*image_and_mask(batch=1))
    with pytest.raises(ValueError, match=message):
        prior_pipe(image, mask, **FAST)


def test_an_all_keep_mask_in_a_batch_names_the_image(prior_pipe):
    image, mask = image_and_mask(batch=2)
    mask[1] = 1
    with pytest.raises(ValueError, match=r"mask_image \(image 1\) is all 1"):
        prior_pipe(image, mask, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer >= 1"),
        ({"num_inference_steps": 1001}, "at most the scheduler's 1000"),
        ({"jump_length": 8, "num_inference_steps": 8}, "jump_length \\(8\\) must be smaller"),
        ({"eta": -1.0}, "eta must be a finite number >= 0"),
        ({"output_type": "jpeg"}, "output_type must be one of"),
        ({"size_handling": "pad"}, "size_handling must be one of"),
        ({"generator": [torch.Generator()] * 3}, "3 generators for 1 images"),
        ({"latents": torch.zeros(1, 1, 8, 8)}, r"latents must have shape \(1, 1, 16, 16\)"),
        ({"latents": torch.full((1, 1, 16, 16), float("inf"))}, "latents contain NaN or infinite values"),
        (
            {"callback_on_step_end": lambda pipe, i, t, tensors: {"latents": tensors["latents"] * float("nan")}},
            "sampling produced NaN or infinite values",
        ),
    ],
)
def test_bad_settings_are_refused(prior_pipe, kwargs, message):
    settings = {**FAST, **kwargs}
    with pytest.raises(ValueError, match=message):
        prior_pipe(*image_and_mask(batch=1), **settings)


def test_label_maps_must_fit_the_model(prior_pipe, sdm_pipe):
    image, mask = image_and_mask(batch=1)
    labels = np.ones((16, 16), np.uint8)
    with pytest.raises(ValueError, match="unconditional .* takes no label map"):
        prior_pipe(image, mask, segmentation=labels, **FAST)
    with pytest.raises(ValueError, match="Semantic Diffusion Model: pass the \\(edited\\) label map"):
        sdm_pipe(image, mask, **FAST)
    malignant = labels.copy()
    malignant[5, 5] = 6
    with pytest.raises(
        ValueError,
        match=r"labels 1 to 6, but this SDM has 6 classes \(0 to 5\) \(6 = malignant nodule needs a 7-class model",
    ):
        sdm_pipe(image, mask, segmentation=malignant, **FAST)
    with pytest.raises(ValueError, match="segmentation is \\(8, 16\\)"):
        sdm_pipe(image, mask, segmentation=labels[:8], **FAST)
    scaled = labels * 50  # saved x50 for viewing
    scaled[3:13, 3:13] = 100
    with pytest.raises(ValueError, match=r"labels 50 to 100, .*look like labels x50 .*divide the map by 50"):
        sdm_pipe(image, mask, segmentation=scaled, **FAST)
