"""LungSDMPipeline on a tiny converted SDM: schedulers, guidance, inputs, outputs, and diffusers' common pipeline checks."""

import inspect
import warnings

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
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor

from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel
from lung_diffusers.learned_variance import scheduler_reads_learned_variance
from lung_diffusers.models import SemanticUNet2DOutput

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


def oracle_unet(target: torch.Tensor, learned_variance: bool = True) -> SemanticUNet2DModel:
    """A U-Net whose noise prediction is exact for data concentrated at one image ``target`` (in [-1, 1] scale).

    From any model input ``x = alpha_t x0 + sigma_t eps`` (variance-preserving, what ``scale_model_input`` gives) it
    returns ``eps = (x - alpha_t target) / sigma_t``, so its x0 estimate is ``target`` at every step and every correct
    sampler ends exactly at ``target`` (at ``clip(target, -1, 1)`` when x0 is clipped). Fractional timesteps (Euler)
    use the same linear interpolation of sigma as diffusers' Karras-style schedulers.
    """
    unet = SemanticUNet2DModel(sample_size=32, out_channels=2 if learned_variance else 1, block_out_channels=(32, 64),
                               layers_per_block=1, attention_downsample_factors=(), attention_head_dim=16)
    alphas_cumprod = DDPMScheduler().alphas_cumprod.double()
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().numpy()

    def forward(sample, timestep, segmentation=None, segmentation_features=None, return_dict=True, **kwargs):
        sigma = float(np.interp(float(timestep), np.arange(len(sigmas)), sigmas))
        alpha_t, sigma_t = 1 / np.sqrt(1 + sigma**2), sigma / np.sqrt(1 + sigma**2)
        x0 = target.double().repeat(sample.shape[0] // target.shape[0], 1, 1, 1)  # guidance doubles the batch
        eps = ((sample.double() - alpha_t * x0) / sigma_t).to(sample.dtype)
        out = torch.cat([eps, torch.zeros_like(eps)], dim=1) if learned_variance else eps
        return SemanticUNet2DOutput(sample=out)

    unet.forward = forward
    return unet


ORACLE_TARGET = torch.linspace(-2.0, 2.0, 32 * 32).reshape(1, 1, 32, 32).repeat(2, 1, 1, 1)


@pytest.mark.parametrize("scheduler_class, options", SCHEDULERS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_scheduler_ends_at_the_clipped_x0_estimate(reference_labels, scheduler_class, options):
    """Each scheduler, guided or not, lands on the oracle's x0 clipped to [-1, 1]; without clipping on the raw x0.

    Catches a scheduler fed the wrong model input (e.g. without Euler's ``scale_model_input``), the wrong x0 clip,
    or the variance channels going to the wrong scheduler.
    """
    # A scheduler built with default betas: the pipeline must still hand them on to Heun (whose defaults differ).
    # clip_sample=True explicitly, as saved pipelines have it: it travels into other schedulers' configs unused.
    pipe = LungSDMPipeline(oracle_unet(ORACLE_TARGET), DDPMScheduler(variance_type="learned_range", clip_sample=True))
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **options)
    torch.testing.assert_close(pipe.scheduler.alphas_cumprod, DDPMScheduler().alphas_cumprod)
    pipe.set_progress_bar_config(disable=True)
    clipped = generate(pipe, reference_labels, output_type="latent", guidance_scale=1.5)
    torch.testing.assert_close(clipped, ORACLE_TARGET.clamp(-1, 1), rtol=0, atol=2e-3)

    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, clip_sample=False, **options)
    raw = generate(pipe, reference_labels, output_type="latent", clip_denoised=False)
    torch.testing.assert_close(raw, ORACLE_TARGET, rtol=0, atol=2e-3)


def test_every_scheduler_runs_a_real_model_with_guidance(tiny_pipe, reference_labels):
    for scheduler_class, options in SCHEDULERS:
        tiny_pipe.scheduler = scheduler_class.from_config(tiny_pipe.scheduler.config, **options)
        images = generate(tiny_pipe, reference_labels, guidance_scale=1.5, num_inference_steps=3)
        assert images.shape == (2, 32, 32, 1) and images.dtype == np.float32 and np.isfinite(images).all()
        assert images.std() > 0.01, scheduler_class.__name__  # not collapsed to a constant


def test_only_ddpm_receives_the_variance_channels(tiny_pipe):
    assert scheduler_reads_learned_variance(tiny_pipe.scheduler)
    # DPMSolver inherits variance_type="learned_range" from the DDPM config and would slice [:, :3] (RGB).
    dpm = DPMSolverMultistepScheduler.from_config(tiny_pipe.scheduler.config)
    assert dpm.config.variance_type == "learned_range" and not scheduler_reads_learned_variance(dpm)
    assert not scheduler_reads_learned_variance(DDPMScheduler(variance_type="fixed_small"))


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
        (np.zeros((32, 32)), {"output_type": "latents"}, ValueError, "output_type"),
        (np.zeros((32, 32)), {"guidance_scale": -1.0}, ValueError, ">= 0"),
        (np.zeros((32, 32, 3), dtype=np.uint8), {}, ValueError, "colour image"),
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


def test_sampling_reports_progress(tiny_pipe, reference_labels, capsys):
    tiny_pipe.set_progress_bar_config(disable=False)
    generate(tiny_pipe, reference_labels, num_inference_steps=3)
    assert "3/3" in capsys.readouterr().err


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
    pipe.to(torch.float32)  # weights keep their bf16 rounding
    assert pipe.unet.dtype == torch.float32
    assert np.abs(generate(pipe, reference_labels, num_inference_steps=3, guidance_scale=1.5) - full).mean() < 0.05


def test_guided_sampling_after_an_ema_weight_swap_equals_a_fresh_model(tiny_pipe, reference_labels):
    """EMAModel.copy_to / restore write through param.data: the pipeline must use the swapped-in weights everywhere,
    including the null map's features of guidance."""
    from diffusers.training_utils import EMAModel

    unet = tiny_pipe.unet
    ema = EMAModel(unet.parameters())
    torch.manual_seed(3)
    for shadow in ema.shadow_params:  # EMA weights that differ from the live ones
        shadow.add_(0.05 * torch.randn_like(shadow))
    before = generate(tiny_pipe, reference_labels, guidance_scale=2.0)
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        swapped = generate(tiny_pipe, reference_labels, guidance_scale=2.0)
        fresh = LungSDMPipeline(SemanticUNet2DModel.from_config(unet.config), tiny_pipe.scheduler)
        fresh.unet.load_state_dict(unet.state_dict())
        fresh.set_progress_bar_config(disable=True)
        expected = generate(fresh, reference_labels, guidance_scale=2.0)
    finally:
        ema.restore(unet.parameters())
    np.testing.assert_allclose(swapped, expected, rtol=0, atol=0)
    assert np.abs(swapped - before).max() > 0.01
    np.testing.assert_allclose(generate(tiny_pipe, reference_labels, guidance_scale=2.0), before, rtol=0, atol=0)


def test_each_distinct_map_is_encoded_once_and_released(tiny_pipe, reference_labels, monkeypatch):
    """Guided, 3 images per map: 2 maps + 1 null map are encoded (not 12), once per call, and not kept afterwards."""
    import gc
    import weakref

    from lung_diffusers.models import SPADEResnetBlock2D

    encoded, returned = [], []
    encode = SPADEResnetBlock2D.encode_segmentation
    forward = SemanticUNet2DModel.forward

    def spy_encode(self, one_hot, size):
        encoded.append(one_hot.shape[0])
        return encode(self, one_hot, size)

    def spy_forward(self, *args, **kwargs):
        result = forward(self, *args, **kwargs)
        if result.segmentation_features is not None:
            returned.append(weakref.ref(result.segmentation_features))
        return result

    monkeypatch.setattr(SPADEResnetBlock2D, "encode_segmentation", spy_encode)
    monkeypatch.setattr(SemanticUNet2DModel, "forward", spy_forward)
    blocks = len(tiny_pipe.unet._spade_resnets)
    reused = generate(tiny_pipe, reference_labels, guidance_scale=1.5, num_images_per_prompt=3, reuse_mask_features=True)
    assert encoded == [3] * blocks and len(returned) == 1
    gc.collect()
    assert returned[0]() is None

    encoded.clear()
    recomputed = generate(tiny_pipe, reference_labels, guidance_scale=1.5, num_images_per_prompt=3,
                          reuse_mask_features=False)
    assert encoded == [3] * blocks * STEPS  # the memory-saving mode re-runs the mask branch, block by block
    np.testing.assert_allclose(recomputed, reused, rtol=0, atol=0)


def test_default_reuses_mask_features_only_when_they_fit(tiny_pipe, monkeypatch):
    import collections

    needed = tiny_pipe.unet.segmentation_feature_bytes(32, 32, num_maps=3)
    memory = collections.namedtuple("memory", "available")
    monkeypatch.setattr("psutil.virtual_memory", lambda: memory(available=10 * needed))
    assert tiny_pipe.should_reuse_mask_features(3, 32, 32, "cpu", torch.float32)
    monkeypatch.setattr("psutil.virtual_memory", lambda: memory(available=needed))
    assert not tiny_pipe.should_reuse_mask_features(3, 32, 32, "cpu", torch.float32)


def test_mask_is_encoded_by_forward_behind_the_offload_hook(tiny_pipe, reference_labels, monkeypatch):
    """Under model offload, accelerate's hook moves the U-Net to the execution device when forward is called:
    the mask must be encoded inside forward (and on the execution device), never before."""
    from accelerate.hooks import ModelHook, add_hook_to_module

    events = []

    class RecordingHook(ModelHook):  # what cpu_offload_with_hook installs, minus the device moves
        execution_device = torch.device("cpu")

        def pre_forward(self, module, *args, **kwargs):
            events.append("hook")
            return args, kwargs

    encode = SemanticUNet2DModel._encode_one_hot

    def spy_encode(self, one_hot):
        events.append(f"encode on {one_hot.device}")
        return encode(self, one_hot)

    monkeypatch.setattr(SemanticUNet2DModel, "_encode_one_hot", spy_encode)
    add_hook_to_module(tiny_pipe.unet, RecordingHook())
    assert tiny_pipe._execution_device == torch.device("cpu")
    generate(tiny_pipe, reference_labels, guidance_scale=1.5, num_inference_steps=2)
    assert events[:2] == ["hook", "encode on cpu"]


def test_learned_variance_type_is_refused_with_a_fix(tiny_pipe, reference_labels):
    tiny_pipe.scheduler = DDPMScheduler.from_config(tiny_pipe.scheduler.config, variance_type="learned")
    with pytest.raises(ValueError, match="learned_range"):
        tiny_pipe(reference_labels, num_inference_steps=2)


def test_latent_output_is_the_final_sample_untouched(tiny_pipe, reference_labels):
    final = {}

    def keep(pipe, step, timestep, callback_kwargs):
        final["latents"] = callback_kwargs["latents"].clone()
        return {}

    latents = generate(tiny_pipe, reference_labels, output_type="latent", callback_on_step_end=keep)
    torch.testing.assert_close(latents, final["latents"], rtol=0, atol=0)
    images = generate(tiny_pipe, reference_labels, output_type="pt")
    torch.testing.assert_close((latents / 2 + 0.5).clamp(0, 1), images, rtol=0, atol=0)


def test_call_state_properties_and_interrupt(tiny_pipe, reference_labels):
    seen = []

    def callback(pipe, step, timestep, callback_kwargs):
        seen.append((step, pipe.guidance_scale, pipe.do_classifier_free_guidance, pipe.num_timesteps))
        if step == 2:
            pipe._interrupt = True
        return {}

    generate(tiny_pipe, reference_labels, guidance_scale=2.5, callback_on_step_end=callback)
    assert seen == [(0, 2.5, True, STEPS), (1, 2.5, True, STEPS), (2, 2.5, True, STEPS)]  # stopped after step 2
    generate(tiny_pipe, reference_labels, num_inference_steps=2)
    assert tiny_pipe.interrupt is False and tiny_pipe.do_classifier_free_guidance is False


def test_pipeline_callback_objects_are_accepted(tiny_pipe, reference_labels):
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    class Constant(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            if step_index == self.config.cutoff_step_index:
                return {"latents": torch.full_like(callback_kwargs["latents"], 0.5)}
            return callback_kwargs

    images = generate(tiny_pipe, reference_labels, callback_on_step_end=MultiPipelineCallbacks(
        [Constant(cutoff_step_ratio=None, cutoff_step_index=STEPS - 1)]))
    np.testing.assert_allclose(images, 0.75)


# ------------------------------------------------------------------ bad inputs that gave silent bad output


def test_a_map_half_the_trained_size_is_refused_and_other_sizes_are_warned_about_once(tiny_pipe):
    with pytest.raises(ValueError, match=r"16x16, but this model was trained on 32x32 .*resize_label_map\(labels, 32\)"):
        tiny_pipe(np.ones((16, 16), np.int64), num_inference_steps=1)
    with pytest.warns(UserWarning, match="label map is 32x40, but this model was trained on 32x32"):
        generate(tiny_pipe, np.ones((32, 40), np.int64), num_inference_steps=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate(tiny_pipe, np.ones((32, 40), np.int64), num_inference_steps=1)  # once per pipeline
        generate(tiny_pipe, np.ones((32, 32), np.int64), num_inference_steps=1)  # the trained size
    assert not [w for w in caught if "label map" in str(w.message)]


def test_non_finite_latents_are_refused_rather_than_returned_as_a_black_synthetic_image(tiny_pipe, reference_labels):
    latents = randn_tensor((2, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    latents[1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="latents contain NaN or infinite values"):
        tiny_pipe(reference_labels, num_inference_steps=2, latents=latents)

    def overflow(pipe, step, timestep, callback_kwargs):  # as a float16 overflow would
        return {"latents": callback_kwargs["latents"] * float("inf")}

    with pytest.raises(ValueError, match="sampling produced NaN or infinite values"):
        tiny_pipe(reference_labels, num_inference_steps=2, callback_on_step_end=overflow)


def test_a_guidance_scale_above_the_spaces_maximum_is_warned_about(tiny_pipe, reference_labels):
    with pytest.warns(UserWarning, match=r"guidance_scale=1e\+06 is above 10: such scales saturate"):
        tiny_pipe(reference_labels, num_inference_steps=1, guidance_scale=1e6)


@pytest.mark.parametrize(
    "value, error, message",
    [
        ("dpm", TypeError, r"got 'dpm' \(names such as 'dpm' are the command line's --scheduler choices\)"),
        (DDIMScheduler, TypeError, r"instance, got the class DDIMScheduler.*DDIMScheduler\.from_config"),
        (None, TypeError, "a diffusers scheduler instance, got None"),
        (LCMScheduler(), ValueError, r"LCMScheduler cannot sample .*DDIMScheduler.*DDPMScheduler"),
        (FlowMatchEulerDiscreteScheduler(), ValueError, "FlowMatchEulerDiscreteScheduler cannot sample"),
    ],
    ids=["name", "class", "none", "lcm", "flow-matching"],
)
def test_schedulers_are_checked_when_assigned(tiny_pipe, value, error, message):
    before = tiny_pipe.scheduler
    with pytest.raises(error, match=message):
        tiny_pipe.scheduler = value
    assert tiny_pipe.scheduler is before
    with pytest.raises(error, match=message):
        LungSDMPipeline(tiny_pipe.unet, value)


def test_every_command_line_scheduler_is_accepted_and_loading_still_works(tiny_pipe, tmp_path):
    from lung_diffusers.scheduler_registry import get_entry, make_scheduler, scheduler_names

    for name in scheduler_names():
        tiny_pipe.scheduler = make_scheduler(name, tiny_pipe.scheduler.config)
        assert type(tiny_pipe.scheduler).__name__ == get_entry(name).class_name
    tiny_pipe.scheduler = DDIMScheduler.from_config(tiny_pipe.scheduler.config)
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    loaded = LungSDMPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(loaded.scheduler, DDIMScheduler) and loaded.config.scheduler[1] == "DDIMScheduler"
    assert isinstance(LungSDMPipeline(**loaded.components).scheduler, DDIMScheduler)


def test_the_old_learned_variance_helper_still_works_and_warns(tiny_pipe):
    from lung_diffusers.pipelines import scheduler_uses_learned_variance

    with pytest.warns(FutureWarning, match="scheduler_reads_learned_variance"):
        assert scheduler_uses_learned_variance(tiny_pipe.scheduler)
