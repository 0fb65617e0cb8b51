"""LungSDMPipeline on a tiny converted SDM: schedulers, guidance, inputs, outputs, and diffusers' common pipeline checks."""

import inspect

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel
from lung_diffusers.pipelines import scheduler_uses_learned_variance

STEPS = 8


def generate(pipe, labels, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    return pipe(labels, generator=torch.Generator().manual_seed(seed), **kwargs).images


SCHEDULERS = [
    (DDPMScheduler, {}),
    (DDIMScheduler, {}),
    (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),
    (UniPCMultistepScheduler, {}),
    (EulerDiscreteScheduler, {}),
    (EulerAncestralDiscreteScheduler, {}),
    (HeunDiscreteScheduler, {}),
]


@pytest.mark.parametrize("scheduler_class, options", SCHEDULERS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_scheduler_gives_finite_images(tiny_pipe, reference_labels, scheduler_class, options):
    tiny_pipe.scheduler = scheduler_class.from_config(tiny_pipe.scheduler.config, **options)
    images = generate(tiny_pipe, reference_labels, guidance_scale=1.5)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.float32
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert images.std() > 0.01  # not collapsed to a constant


def test_only_ddpm_receives_the_variance_channels(tiny_pipe):
    assert scheduler_uses_learned_variance(tiny_pipe.scheduler)
    # DPMSolver inherits variance_type="learned_range" from the DDPM config and would slice [:, :3] (RGB).
    dpm = DPMSolverMultistepScheduler.from_config(tiny_pipe.scheduler.config)
    assert dpm.config.variance_type == "learned_range" and not scheduler_uses_learned_variance(dpm)
    assert not scheduler_uses_learned_variance(DDPMScheduler(variance_type="fixed_small"))


def manual_guided_ddpm(unet, labels, guidance_scale, steps, seed):
    """Classifier-free guidance written out: two separate passes, guidance on epsilon, variance from the conditional pass."""
    scheduler = DDPMScheduler(variance_type="learned_range")
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    latents = randn_tensor((labels.shape[0], 1, 32, 32), generator=generator)
    null = torch.zeros(labels.shape[0], unet.config.num_classes, 32, 32)
    with torch.no_grad():
        for t in scheduler.timesteps:
            cond = unet(latents, t, labels).sample
            eps = cond[:, :1]
            if guidance_scale != 1:
                uncond = unet(latents, t, null).sample
                eps = uncond[:, :1] + guidance_scale * (eps - uncond[:, :1])
            output = torch.cat([eps, cond[:, 1:]], dim=1)
            latents = scheduler.step(output, t, latents, generator=generator).prev_sample
    return (latents / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def test_guidance_matches_the_written_out_formula(tiny_pipe, reference_labels):
    guided = generate(tiny_pipe, reference_labels, guidance_scale=2.0)
    np.testing.assert_allclose(guided, manual_guided_ddpm(tiny_pipe.unet, reference_labels, 2.0, STEPS, 0), atol=1e-4)
    unguided = generate(tiny_pipe, reference_labels, guidance_scale=1.0)
    np.testing.assert_allclose(unguided, manual_guided_ddpm(tiny_pipe.unet, reference_labels, 1.0, STEPS, 0), atol=1e-4)
    # Guidance changes the image; a scale of 1 through the batched guidance path is the unguided image.
    assert np.abs(guided - unguided).max() > 0.05
    np.testing.assert_allclose(generate(tiny_pipe, reference_labels, guidance_scale=1.0 + 1e-7), unguided, atol=1e-4)


def test_each_label_map_shapes_its_image(tiny_pipe, reference_labels):
    same_noise = generate(tiny_pipe, reference_labels[[0, 0]])
    other_map = generate(tiny_pipe, reference_labels[[0, 1]])
    np.testing.assert_allclose(same_noise[0], other_map[0], atol=1e-5)
    assert np.abs(other_map[1] - same_noise[1]).max() > 0.05


def test_batch_equals_single_runs(tiny_pipe, reference_labels):
    generators = [torch.Generator().manual_seed(s) for s in (10, 11)]
    batch = tiny_pipe(reference_labels, num_inference_steps=STEPS, generator=generators, output_type="np").images
    for i, seed in enumerate((10, 11)):
        single = generate(tiny_pipe, reference_labels[i], seed=seed)
        np.testing.assert_allclose(batch[i], single[0], atol=1e-4)


def test_num_images_per_prompt(tiny_pipe, reference_labels):
    images = generate(tiny_pipe, reference_labels, num_images_per_prompt=3)
    assert images.shape == (6, 32, 32, 1)
    assert np.abs(images[0] - images[1]).max() > 0.01  # different noise for each image of one map
    pil = tiny_pipe(reference_labels[0], num_inference_steps=2, num_images_per_prompt=2).images
    assert len(pil) == 2


def test_dict_and_tuple_outputs_are_equivalent(tiny_pipe, reference_labels):
    as_dict = tiny_pipe(reference_labels, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="np")
    as_tuple = tiny_pipe(reference_labels, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                         output_type="np", return_dict=False)
    assert as_dict.synthetic is True and as_tuple[1] is True
    np.testing.assert_array_equal(as_dict.images, as_tuple[0])
    np.testing.assert_array_equal(as_dict.to_tuple()[0], as_tuple[0])


def test_given_latents_reproduce_the_generator_run(tiny_pipe, reference_labels):
    latents = randn_tensor((2, 1, 32, 32), generator=torch.Generator().manual_seed(5))
    tiny_pipe.scheduler = DDIMScheduler.from_config(tiny_pipe.scheduler.config)  # deterministic after the latents
    from_latents = tiny_pipe(reference_labels, num_inference_steps=STEPS, latents=latents, output_type="np").images
    np.testing.assert_allclose(from_latents, generate(tiny_pipe, reference_labels, seed=5), atol=1e-6)


def test_output_types(tiny_pipe, reference_labels):
    as_np = generate(tiny_pipe, reference_labels)
    as_pt = generate(tiny_pipe, reference_labels, output_type="pt")
    assert isinstance(as_pt, torch.Tensor) and as_pt.shape == (2, 1, 32, 32)
    np.testing.assert_allclose(as_pt.permute(0, 2, 3, 1).numpy(), as_np, atol=1e-6)

    hu = generate(tiny_pipe, reference_labels, output_type="hu")
    assert hu.shape == (2, 32, 32) and hu.dtype == np.float32
    np.testing.assert_allclose(hu, -1000 + 1400 * as_np[..., 0], atol=1e-3)

    pil = tiny_pipe(reference_labels, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0)).images
    assert [image.mode for image in pil] == ["L", "L"] and pil[0].size == (32, 32)
    assert pil[0].info["synthetic"] == "true"
    np.testing.assert_array_equal(np.asarray(pil[0]), (as_np[0, ..., 0] * 255).round().astype(np.uint8))


def test_hu_uses_the_pipeline_window_and_averages_rgb(rgb_reference):
    from lung_diffusers import convert_sdm_checkpoint

    state_dict, config, io = rgb_reference
    pipe = LungSDMPipeline(convert_sdm_checkpoint(state_dict, config), DDPMScheduler(variance_type="learned_range"),
                           hu_window=(-1200, 600))
    pipe.set_progress_bar_config(disable=True)
    labels = io["labels"][:1]
    rgb = generate(pipe, labels, num_inference_steps=3)
    hu = generate(pipe, labels, num_inference_steps=3, output_type="hu")
    assert rgb.shape == (1, 32, 32, 3) and hu.shape == (1, 32, 32)
    np.testing.assert_allclose(hu, -1200 + 1800 * rgb.mean(axis=-1), atol=1e-3)
    assert pipe(labels, num_inference_steps=2).images[0].mode == "RGB"
    with pytest.raises(ValueError, match="hu_window"):
        LungSDMPipeline(pipe.unet, pipe.scheduler, hu_window=(400, -1000))


def test_label_map_input_forms(tiny_pipe, reference_labels):
    expected = generate(tiny_pipe, reference_labels[:1])
    first = reference_labels[0].numpy()
    forms = [
        first,
        first.astype(np.uint8),
        first.astype(np.float32),
        torch.from_numpy(first)[None, None],
        [first],
        PIL.Image.fromarray(first.astype(np.uint8), mode="L"),
        PIL.Image.fromarray(first.astype(np.uint8), mode="L").convert("P"),
        PIL.Image.fromarray(first.astype(np.int32), mode="I"),
    ]
    for form in forms:
        np.testing.assert_allclose(generate(tiny_pipe, form), expected, atol=1e-6)
    two = generate(tiny_pipe, [reference_labels[0].numpy(), reference_labels[1].numpy()])
    np.testing.assert_allclose(two, generate(tiny_pipe, reference_labels), atol=1e-5)


@pytest.mark.parametrize(
    "segmentation, kwargs, error, message",
    [
        (np.full((32, 32), 6), {}, ValueError, r"\[0, 6\)"),
        (np.full((32, 32), -1), {}, ValueError, r"\[0, 6\)"),
        (np.full((32, 32), np.nan), {}, ValueError, "NaN"),
        (np.full((32, 32), 0.5), {}, ValueError, "fractional"),
        (np.zeros((1, 2, 32, 32), dtype=np.int64), {}, ValueError, "shape"),
        (np.zeros((2, 2, 2, 32, 32), dtype=np.int64), {}, ValueError, "shape"),
        (np.zeros(32, dtype=np.int64), {}, ValueError, "shape"),
        (np.zeros((30, 32), dtype=np.int64), {}, ValueError, "multiples of 4"),
        (np.zeros((32, 32), dtype=bool), {}, TypeError, "integer"),
        (PIL.Image.new("RGB", (32, 32)), {}, ValueError, "RGB"),
        ("mask.png", {}, TypeError, "numpy array"),
        ([np.zeros((32, 32)), np.zeros((16, 16))], {}, ValueError, "one size"),
        (np.zeros((32, 32)), {"num_inference_steps": 0}, ValueError, "num_inference_steps"),
        (np.zeros((32, 32)), {"num_inference_steps": 1001}, ValueError, "1000 training steps"),
        (np.zeros((32, 32)), {"guidance_scale": float("nan")}, ValueError, "finite"),
        (np.zeros((32, 32)), {"guidance_scale": float("inf")}, ValueError, "finite"),
        (np.zeros((32, 32)), {"output_type": "latent"}, ValueError, "output_type"),
        (np.zeros((32, 32)), {"latents": torch.zeros(1, 1, 16, 16)}, ValueError, "latents"),
        (np.zeros((32, 32)), {"generator": [torch.Generator()] * 2}, ValueError, "generators"),
        (np.zeros((32, 32)), {"num_images_per_prompt": 0}, ValueError, "num_images_per_prompt"),
        (np.zeros((32, 32)), {"callback_on_step_end_tensor_inputs": ["noise"]}, ValueError, "callback"),
    ],
)
def test_invalid_inputs_are_rejected(tiny_pipe, segmentation, kwargs, error, message):
    with pytest.raises(error, match=message):
        tiny_pipe(segmentation, **{"num_inference_steps": 2, **kwargs})


def test_learned_variance_scheduler_needs_a_learned_variance_model(reference_labels):
    unet = SemanticUNet2DModel(sample_size=32, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
                               attention_downsample_factors=(), attention_head_dim=16)
    pipe = LungSDMPipeline(unet, DDPMScheduler(variance_type="learned_range"))
    with pytest.raises(ValueError, match="fixed_small"):
        pipe(reference_labels, num_inference_steps=2)
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, variance_type="fixed_small")
    pipe.set_progress_bar_config(disable=True)
    assert generate(pipe, reference_labels, num_inference_steps=2).shape == (2, 32, 32, 1)


def test_callback_on_step_end_sees_and_replaces_latents(tiny_pipe, reference_labels):
    seen = []

    def callback(pipe, step, timestep, callback_kwargs):
        seen.append((step, int(timestep), tuple(callback_kwargs["latents"].shape)))
        if step == STEPS - 1:
            return {"latents": torch.full_like(callback_kwargs["latents"], 0.5)}
        return {}

    images = generate(tiny_pipe, reference_labels, callback_on_step_end=callback)
    assert [s[0] for s in seen] == list(range(STEPS)) and seen[0][2] == (2, 1, 32, 32)
    np.testing.assert_allclose(images, 0.75)  # (0.5 / 2 + 0.5)


def test_call_signature_and_components(tiny_pipe):
    parameters = inspect.signature(LungSDMPipeline.__call__).parameters
    for name in ("segmentation", "num_inference_steps", "guidance_scale", "generator", "latents", "output_type",
                 "num_images_per_prompt", "return_dict", "callback_on_step_end", "callback_on_step_end_tensor_inputs"):
        assert name in parameters
    assert set(tiny_pipe.components) == {"unet", "scheduler"}
    assert tiny_pipe.config.hu_window == [-1000.0, 400.0]


def test_progress_bar_can_be_configured(tiny_pipe, reference_labels, capsys):
    tiny_pipe.set_progress_bar_config(disable=False)
    generate(tiny_pipe, reference_labels, num_inference_steps=3)
    assert "3/3" in capsys.readouterr().err
    tiny_pipe.set_progress_bar_config(disable=True)
    generate(tiny_pipe, reference_labels, num_inference_steps=3)
    assert capsys.readouterr().err == ""


def test_dtype_moves(tiny_pipe, reference_labels):
    pipe = LungSDMPipeline(SemanticUNet2DModel.from_config(tiny_pipe.unet.config), tiny_pipe.scheduler)
    pipe.unet.load_state_dict(tiny_pipe.unet.state_dict())
    pipe.set_progress_bar_config(disable=True)
    full = generate(pipe, reference_labels, num_inference_steps=3, guidance_scale=1.5)
    pipe.to(torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.dtype == torch.bfloat16
    half = generate(pipe, reference_labels, num_inference_steps=3, guidance_scale=1.5)
    assert half.dtype == np.float32 and np.isfinite(half).all()
    assert np.abs(half - full).mean() < 0.05  # same picture at lower precision
    pipe.to(torch.float32)  # weights keep their bf16 rounding; cached null features must follow the dtype
    assert pipe.unet.dtype == torch.float32
    assert np.abs(generate(pipe, reference_labels, num_inference_steps=3, guidance_scale=1.5) - full).mean() < 0.05
