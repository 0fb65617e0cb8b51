"""``LungSDMPipeline``: synthetic lung CT slices from semantic label maps with a Semantic Diffusion Model."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import psutil
import torch
import torch.nn.functional as F
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput

from ..ct import HU_WINDOW, as_label_tensor, check_label_map_size, label_names
from ..hub import build_model_card
from ..learned_variance import predicts_learned_variance, scheduler_reads_learned_variance
from ..models import SemanticUNet2DModel
from .lung_pipeline import LungDiffusionPipeline
from .synthetic_output import check_output_type

# Reuse the mask features when they take at most this share of the free memory of the execution device.
MASK_FEATURE_MEMORY_SHARE = 0.5
# Guidance scales above this saturate the image (the Space's slider stops here); larger ones get a warning.
MAX_USUAL_GUIDANCE_SCALE = 10.0


@dataclass
class LungSDMPipelineOutput(BaseOutput):
    """
    Output of :class:`LungSDMPipeline`.

    Args:
        images: ``output_type="pil"``: a list of PIL images (mode ``L``, or ``RGB`` for 3-channel models);
            ``"np"``: float32 ``(B, H, W, C)`` in [0, 1]; ``"pt"``: a tensor ``(B, C, H, W)`` in [0, 1];
            ``"hu"``: float32 ``(B, H, W)`` in Hounsfield units; ``"latent"``: the final sample ``(B, C, H, W)``
            in the model's [-1, 1] scale, untouched.
        synthetic (`bool`): Always `True`: these are generated images, not scans of patients.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    synthetic: bool = True


def scheduler_uses_learned_variance(scheduler) -> bool:
    """Deprecated alias of :func:`lung_diffusers.learned_variance.scheduler_reads_learned_variance`."""
    from .._deprecation import deprecate

    deprecate(
        "scheduler_uses_learned_variance",
        "1.0.0",
        "Use lung_diffusers.learned_variance.scheduler_reads_learned_variance instead.",
        standard_warn=False,
    )
    return scheduler_reads_learned_variance(scheduler)


class LungSDMPipeline(LungDiffusionPipeline):
    r"""
    Pipeline for lung CT slices conditioned on a semantic label map (0 background, 1 body, 2 left lung,
    3 right lung, 4 trachea, 5 nodule; or 5 benign / 6 malignant nodule for 7-class models).

    Classifier-free guidance uses the all-zero map as the null condition and acts on the noise prediction
    only; learned-variance channels come from the conditional pass. The label map's SPADE features are
    computed once per call and reused at every step. The diffusers samplers of DDPM-trained models can be
    swapped in with ``pipe.scheduler = X.from_config(pipe.scheduler.config)`` (DDPM, DDIM, DPM-Solver++, UniPC,
    Euler, Euler ancestral, Heun, LMS, PNDM, DEIS); others (flow matching, LCM, ...) are refused at assignment.

    Label maps of the size the model was trained on (``unet.config.sample_size``) are expected: one of half that
    size or smaller is refused, and other sizes get a warning once per pipeline.

    Every output is synthetic: the output's ``synthetic`` flag is `True`, PIL images carry a ``synthetic``
    entry in ``image.info``, and :func:`~lung_diffusers.save_synthetic_png` /
    :func:`~lung_diffusers.save_synthetic_nifti` write the mark into the files.

    Parameters:
        unet ([`SemanticUNet2DModel`]): The semantic U-Net.
        scheduler ([`SchedulerMixin`]): A noise scheduler, e.g. [`DDPMScheduler`] (``variance_type="learned_range"``
            for learned-variance models), [`DDIMScheduler`] or [`DPMSolverMultistepScheduler`].
        hu_window (`tuple[float, float]`, defaults to `(-1000, 400)`): The HU window the model was trained on;
            image value 0 is its lower and 1 its upper bound. Used for ``output_type="hu"``.

    Example:
        ```py
        >>> import numpy as np
        >>> from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
        >>> from lung_diffusers import LungSDMPipeline, SemanticUNet2DModel, save_synthetic_png

        >>> # A small random model: its output is noise until it is trained.
        >>> unet = SemanticUNet2DModel(sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
        ...                            attention_downsample_factors=(2,), attention_head_dim=16)
        >>> pipe = LungSDMPipeline(unet=unet, scheduler=DDPMScheduler(variance_type="learned_range"))
        >>> pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)

        >>> mask = np.zeros((32, 32), dtype=np.uint8)
        >>> mask[4:28, 4:28] = 1          # body
        >>> mask[8:24, 6:15] = 3          # right lung (image left)
        >>> mask[8:24, 17:26] = 2         # left lung
        >>> mask[14:17, 19:22] = 5        # nodule
        >>> out = pipe(mask, num_inference_steps=20, guidance_scale=1.5)
        >>> out.synthetic, out.images[0].size
        (True, (32, 32))
        >>> path = save_synthetic_png(out.images[0], "synthetic_slice.png")
        ```
    """

    model_cpu_offload_seq = "unet"
    _unet_classes = ("SemanticUNet2DModel",)
    _pipeline_classes = ("LungSDMPipeline",)

    def __init__(self, unet: SemanticUNet2DModel, scheduler, hu_window: tuple[float, float] | list[float] = HU_WINDOW):
        super().__init__()
        if getattr(unet, "is_super_resolution", False):
            raise ValueError(
                "this U-Net takes a low-resolution image (low_res_channels > 0): it is a cascade's second stage; "
                "sample it with LungSDMUpscalePipeline, or both stages with LungSDMCombinedPipeline"
            )
        self._init_pipeline(hu_window, unet=unet, scheduler=scheduler)

    # ------------------------------------------------------------------ inputs

    def prepare_segmentation(self, segmentation) -> torch.Tensor:
        """Label map(s) -> a validated integer tensor ``(B, H, W)`` (shape, type and label values)."""
        return as_label_tensor(segmentation, self.unet.config.num_classes)

    def check_inputs(
        self,
        segmentation: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
        output_type: str,
        num_images_per_prompt: int,
        generator,
        latents: torch.Tensor | None,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> None:
        height, width = segmentation.shape[-2:]
        factor = self.unet.downsample_factor
        if height % factor or width % factor or not height or not width:
            raise ValueError(
                f"label map height and width must be positive multiples of {factor} (the U-Net downsamples "
                f"{factor}x); got {height}x{width}. Pad or resize the map."
            )
        size_warning = check_label_map_size(int(height), int(width), self.unet.config)
        train_steps = self.scheduler.config.num_train_timesteps
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)):
            raise TypeError(f"num_inference_steps must be an integer, got {num_inference_steps!r}")
        if not 1 <= num_inference_steps <= train_steps:
            raise ValueError(
                f"num_inference_steps must be between 1 and the scheduler's {train_steps} training steps, "
                f"got {num_inference_steps}"
            )
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float, np.number)):
            raise TypeError(f"guidance_scale must be a number, got {guidance_scale!r}")
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")
        if guidance_scale < 0:
            raise ValueError(
                f"guidance_scale must be >= 0 (1 disables guidance, SDM used 1.5), got {guidance_scale}: "
                "a negative scale pushes the image away from the mask"
            )
        check_output_type(output_type)
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, (int, np.integer)) or num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be an integer >= 1, got {num_images_per_prompt!r}")
        batch = segmentation.shape[0] * num_images_per_prompt
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(
                f"got a list of {len(generator)} generators for {batch} images "
                f"({segmentation.shape[0]} label maps x {num_images_per_prompt} per map); pass one per image or a single one"
            )
        shape = (batch, self.unet.config.in_channels, height, width)
        if latents is not None and tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape} for this call, got {tuple(latents.shape)}")
        if latents is not None and not torch.isfinite(latents).all():
            raise ValueError("latents contain NaN or infinite values; pass finite Gaussian noise (randn_tensor)")
        self.check_callback_inputs(callback_on_step_end_tensor_inputs)
        self.check_scheduler()
        # Warnings only once the call is known to run.
        if size_warning:
            self.warn_once(size_warning)
        if guidance_scale > MAX_USUAL_GUIDANCE_SCALE:
            self.warn_once(
                f"guidance_scale={guidance_scale:g} is above {MAX_USUAL_GUIDANCE_SCALE:g}: such scales saturate the "
                "image (SDM used 1.5)"
            )

    def should_reuse_mask_features(self, num_maps: int, height: int, width: int, device, dtype) -> bool:
        """The default of ``reuse_mask_features``: keep the features when they take at most half the free memory.

        At 64 px they are a few MiB; at the thesis' 256 px about 1.9 GiB per map in float32 (0.95 GiB in bf16),
        so on a small GPU a large guided batch recomputes them at each step instead.
        """
        needed = self.unet.segmentation_feature_bytes(height, width, num_maps, dtype)
        device = torch.device(device)
        if device.type == "cuda":
            free = torch.cuda.mem_get_info(device)[0]
        elif device.type == "cpu":
            free = psutil.virtual_memory().available
        else:
            return True
        return needed <= MASK_FEATURE_MEMORY_SHARE * free

    # ------------------------------------------------------------------ outputs

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(
        self,
        segmentation: np.ndarray | torch.Tensor | PIL.Image.Image | list,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        num_images_per_prompt: int = 1,
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        eta: float = 0.0,
        clip_denoised: bool = True,
        reuse_mask_features: bool | None = None,
    ) -> LungSDMPipelineOutput | tuple:
        r"""
        Generate synthetic CT slices that follow the given label maps.

        Args:
            segmentation: Integer label map(s): a numpy array or tensor ``(H, W)``, ``(B, H, W)`` or
                ``(B, 1, H, W)``, a PIL image of mode ``L``, ``P`` or ``I``, or a list of ``(H, W)`` maps.
                Values must lie in ``[0, num_classes)``; H and W must be multiples of the U-Net's downsampling.
            num_inference_steps (`int`, defaults to 50): Denoising steps (at most the training steps).
                DDPM needs many (SDM used 1000); DPM-Solver++ and UniPC work with about 20.
            guidance_scale (`float`, defaults to 1.0): Classifier-free guidance weight ``s >= 0`` in
                ``eps = eps_null + s * (eps_cond - eps_null)``. 1.0 disables guidance (one model pass per step);
                SDM used 1.5 with models fine-tuned with condition dropout.
            generator (`torch.Generator` or a list of them): One generator, or one per image, for reproducibility.
            latents (`torch.Tensor`, *optional*): Initial noise ``(B * num_images_per_prompt, C, H, W)``.
            output_type (`str`, defaults to `"pil"`): ``"pil"``, ``"np"`` (float32 ``(B, H, W, C)`` in [0, 1]),
                ``"pt"`` (``(B, C, H, W)`` in [0, 1]), ``"hu"`` (float32 ``(B, H, W)`` in Hounsfield units) or
                ``"latent"`` (the final sample, untouched).
            num_images_per_prompt (`int`, defaults to 1): Images per label map.
            return_dict (`bool`, defaults to `True`): Return a [`LungSDMPipelineOutput`] rather than a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called as
                ``callback_on_step_end(pipe, step, timestep, callback_kwargs)`` after every step; may return a
                dict whose ``"latents"`` replaces the current sample.
            callback_on_step_end_tensor_inputs (`list[str]`): Tensors passed to the callback (``"latents"``).
            eta (`float`, defaults to 0.0): DDIM's eta (0 is deterministic DDIM); ignored by other schedulers.
            clip_denoised (`bool`, defaults to `True`): Clip the denoised estimate x0 to [-1, 1] at every step, as
                guided-diffusion samples SDM. DDPM and DDIM clip themselves (their ``clip_sample``); for every
                other scheduler the pipeline clips x0 and passes the matching noise. `False` leaves the model
                output as it is (a scheduler's own ``clip_sample`` still applies).
            reuse_mask_features (`bool`, *optional*): Compute the mask's SPADE features once and reuse them at
                every step (about twice as fast), or recompute them per step (less memory). Default: reuse when
                they take at most half the free memory of the device (see ``should_reuse_mask_features``).

        Returns:
            [`LungSDMPipelineOutput`] (``images``, ``synthetic=True``), or the tuple ``(images, True)``.
        """
        callback_on_step_end_tensor_inputs = self.callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        labels = self.prepare_segmentation(segmentation)
        self.check_inputs(
            labels,
            num_inference_steps,
            guidance_scale,
            output_type,
            num_images_per_prompt,
            generator,
            latents,
            callback_on_step_end_tensor_inputs,
        )
        self._guidance_scale, self._interrupt = float(guidance_scale), False
        latents, unet_inputs = self.prepare_unet_inputs(labels, latents, generator, num_images_per_prompt)
        latents = self.denoise(
            labels,
            num_inference_steps=num_inference_steps,
            generator=generator,
            latents=latents,
            num_images_per_prompt=num_images_per_prompt,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            eta=eta,
            clip_denoised=clip_denoised,
            reuse_mask_features=reuse_mask_features,
            unet_inputs=unet_inputs,
        )
        images = self.postprocess(latents, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, True)
        return LungSDMPipelineOutput(images=images, synthetic=True)

    def prepare_unet_inputs(self, labels, latents, generator, num_images_per_prompt):
        """``(latents, extra U-Net inputs)`` for a call whose inputs are checked: none for an SDM; an upscaler's
        low-resolution image and noise level (:class:`LungSDMUpscalePipeline`)."""
        return latents, None

    def start_of_chain(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The timesteps to run (after ``set_timesteps``) and the sample they start from: the whole chain from the
        noise for an SDM; an upscaler with ``strength < 1`` starts part-way, from its upsampled input noised."""
        return self.scheduler.timesteps, latents

    def denoise(
        self,
        labels: torch.Tensor,
        *,
        num_inference_steps: int,
        generator,
        latents: torch.Tensor | None,
        num_images_per_prompt: int,
        callback_on_step_end,
        callback_on_step_end_tensor_inputs: list[str],
        eta: float,
        clip_denoised: bool,
        reuse_mask_features: bool | None,
        unet_inputs: dict | None = None,
    ) -> torch.Tensor:
        """The sampling loop on checked inputs: the final latents. ``unet_inputs`` are extra per-image U-Net inputs
        (an upscaler's low-resolution image and noise level), doubled here for guidance."""
        device, dtype = self._execution_device, self.unet.dtype
        num_classes, channels = self.unet.config.num_classes, self.unet.config.in_channels
        height, width = labels.shape[-2:]

        # Each distinct map is encoded once, however many images share it; the null map of guidance once for all.
        maps = F.one_hot(labels.to(device), num_classes).permute(0, 3, 1, 2).to(dtype)
        batch = maps.shape[0] * num_images_per_prompt
        repeats = (num_images_per_prompt,) * maps.shape[0]
        unet_inputs = dict(unet_inputs or {})
        if self.do_classifier_free_guidance:
            maps = torch.cat([maps, maps.new_zeros(1, num_classes, height, width)])
            repeats += (batch,)
            unet_inputs = {k: torch.cat([v] * 2) if torch.is_tensor(v) and v.ndim else v for k, v in unet_inputs.items()}
        if reuse_mask_features is None:
            reuse_mask_features = self.should_reuse_mask_features(maps.shape[0], height, width, device, dtype)

        latents = self.prepare_latents((batch, channels, height, width), dtype, device, generator, latents)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps, latents = self.start_of_chain(latents)
        self._num_timesteps = len(timesteps)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        features = None
        for i, t in enumerate(self.progress_bar(timesteps)):
            if self.interrupt:
                continue
            model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            if features is None:
                # The mask is encoded inside forward, so offload hooks move the SPADE weights for it.
                result = self.unet(
                    model_input,
                    t,
                    segmentation=maps,
                    segmentation_repeats=repeats,
                    return_segmentation_features=reuse_mask_features,
                    **unet_inputs,
                )
                features = result.segmentation_features
            else:
                result = self.unet(model_input, t, segmentation_features=features, **unet_inputs)
            model_output = self.scheduler_model_output(latents, result.sample, t, clip_denoised)
            latents = self.scheduler.step(model_output, t, latents, **extra_step_kwargs).prev_sample
            latents = self.run_step_end_callback(callback_on_step_end, i, t, callback_on_step_end_tensor_inputs, latents)
        del features  # nothing of the mask outlives the call
        return latents

    # ------------------------------------------------------------------ hub

    # What the card says; the upscaler overrides the summary, usage and tags.
    _card_tags = ("semantic-diffusion-model", "image-generation")

    def _card_summary(self) -> str:
        return (
            "A Semantic Diffusion Model (SDM) that generates **synthetic** lung CT slices from semantic label "
            "maps, packaged as a diffusers pipeline by lung-diffusers."
        )

    def _card_usage(self) -> str:
        side = self.unet.config.sample_size
        return (
            f"mask = np.zeros(({side}, {side}), dtype=np.uint8)  # labels below\n"
            "image = pipe(mask, num_inference_steps=50).images[0]\n"
            'save_synthetic_png(image, "synthetic.png")  # keeps the synthetic mark'
        )

    def model_card(self, repo_id: str = "path/to/pipeline", training=None, fidelity: str | None = None):
        """The pipeline's model card (synthetic-data warning, config summary, labels).

        ``training`` (``(fact, value)`` rows about the training run) and ``fidelity`` (markdown) add sections.
        """
        unet = self.unet.config
        names = label_names(unet.num_classes)
        details = [
            ("image size", f"{unet.sample_size} x {unet.sample_size}, {unet.in_channels} channel(s)"),
            ("classes", str(unet.num_classes)),
            ("learned variance", str(predicts_learned_variance(unet))),
            ("U-Net channels", ", ".join(str(c) for c in unet.block_out_channels)),
            ("parameters", f"{sum(p.numel() for p in self.unet.parameters()) / 1e6:.1f} M"),
            ("scheduler", type(self.scheduler).__name__),
            ("HU window", f"[{self.config.hu_window[0]:g}, {self.config.hu_window[1]:g}]"),
        ]
        if unet.get("training_crop_size"):
            details.insert(1, ("trained on", f"{unet.training_crop_size}-px crops of {unet.sample_size}-px slices"))
        name = type(self).__name__
        return build_model_card(
            repo_id=repo_id,
            title=f"{repo_id.rstrip('/').split('/')[-1]}: {name}",
            summary=self._card_summary(),
            pipeline_class=name,
            usage=self._card_usage(),
            details=details,
            labels=[(value, label.replace("_", " ")) for value, label in enumerate(names)],
            tags=list(self._card_tags),
            training=training,
            fidelity=fidelity,
        )
