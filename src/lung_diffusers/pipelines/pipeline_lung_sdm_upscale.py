"""``LungSDMUpscalePipeline``: the second stage of a cascade, a full-resolution slice drawn from a low-resolution
one and the full-resolution label map (as DeepFloyd IF's ``IFSuperResolutionPipeline``, with SDM's mask input)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

from ..cascade import upsample_low_res
from ..ct import HU_WINDOW
from ..models import SemanticUNet2DModel
from .lung_pipeline import LungDiffusionPipeline
from .pipeline_lung_sdm import LungSDMPipeline, LungSDMPipelineOutput

# The augmentation level the low-resolution image is noised to before it conditions the model (a step of the
# image-noising scheduler). Training drew levels below ``max_noise_level`` (250); a level well inside that range
# lets stage 2 correct stage 1's errors, a low one follows stage 1 more closely.
DEFAULT_NOISE_LEVEL = 100

# The share of the chain stage 2 runs (diffusers' image-to-image ``strength``): it starts from the upsampled image
# noised to that depth, not from pure noise. Measured on the demo upscaler (trained on 64-px crops): from pure
# noise (1.0) its whole-slice samples drift by about 250 HU (background near -700 HU), because the U-Net's group
# norms see whole-slice statistics it never met in training while the noisiest steps still set the brightness;
# and even on crops, noise predictions good to a few thousandths at t=999 leave x0 off by hundreds of HU. From
# 0.4 (t about 400, where its x0 estimate is within 20-40 HU on crops and whole slices alike) its output follows
# stage 1 to about 35 HU with real-looking sharpness. As "Come-Closer-Diffuse-Faster" (Chung et al. 2022)
# starts conditional diffusion from a forward-diffused estimate.
DEFAULT_STRENGTH = 0.4


class LungSDMUpscalePipeline(LungSDMPipeline):
    r"""
    The super-resolution stage of a two-stage (cascade) lung CT model: draws a ``mask_image``-sized slice (e.g.
    256 px) from a low-resolution slice (e.g. the 64-px :class:`LungSDMPipeline`'s output) and the full-resolution
    label map.

    The low-resolution image is upsampled (:func:`lung_diffusers.cascade.upsample_low_res`, as in training), noised
    to ``noise_level`` by ``image_noising_scheduler`` (noise-conditioning augmentation, Ho et al. 2021) and given
    to the U-Net beside the sample; the level is embedded like a timestep. Everything else is
    :class:`LungSDMPipeline`'s contract: any of its schedulers with x0 clipping, classifier-free guidance on the
    label map, output types (``pil``, ``np``, ``pt``, ``hu``, ``latent``) marked synthetic, callbacks, offload.

    A stage trained on crops of whole slices (``unet.config.training_crop_size``) samples whole slices: it has no
    self-attention, and starting part-way down the chain (``strength``, default 0.4) keeps its group norms'
    whole-slice statistics from setting the brightness (see ``DEFAULT_STRENGTH``).

    Parameters:
        unet ([`SemanticUNet2DModel`]): a U-Net with ``low_res_channels > 0``.
        scheduler: the sampler, e.g. [`~diffusers.DDPMScheduler`] (``variance_type="learned_range"``) or
            [`~diffusers.DPMSolverMultistepScheduler`].
        image_noising_scheduler ([`~diffusers.DDPMScheduler`]): the schedule of the augmentation noise (the one
            training used).
        hu_window (`tuple[float, float]`, defaults to `(-1000, 400)`): the HU window of the training data.

    Example:
        ```py
        >>> import numpy as np
        >>> import torch
        >>> from diffusers import DDPMScheduler
        >>> from lung_diffusers import LungSDMUpscalePipeline, SemanticUNet2DModel

        >>> # A small random stage 2 (noise until trained): 32-px slices from 8-px ones.
        >>> unet = SemanticUNet2DModel(sample_size=32, block_out_channels=(32, 32), layers_per_block=1,
        ...                            attention_downsample_factors=(), add_attention=False, low_res_channels=1)
        >>> schedule = DDPMScheduler(variance_type="learned_range")
        >>> pipe = LungSDMUpscalePipeline(unet=unet, scheduler=schedule, image_noising_scheduler=schedule)
        >>> low_res = torch.zeros(1, 1, 8, 8)          # stage 1's output in [-1, 1] (output_type="latent")
        >>> labels = np.ones((32, 32), dtype=np.uint8)  # the full-resolution label map (all body here)
        >>> out = pipe(low_res, labels, num_inference_steps=4, noise_level=50)
        >>> out.images[0].size, out.synthetic
        ((32, 32), True)
        ```
    """

    model_cpu_offload_seq = "unet"
    _pipeline_classes = ("LungSDMUpscalePipeline",)

    def __init__(
        self,
        unet: SemanticUNet2DModel,
        scheduler,
        image_noising_scheduler: DDPMScheduler,
        hu_window: tuple[float, float] | list[float] = HU_WINDOW,
    ):
        LungDiffusionPipeline.__init__(self)
        if not getattr(unet, "is_super_resolution", False):
            raise ValueError(
                "LungSDMUpscalePipeline needs a super-resolution U-Net (SemanticUNet2DModel with low_res_channels > 0); "
                "a plain SDM samples with LungSDMPipeline"
            )
        if not isinstance(image_noising_scheduler, DDPMScheduler):
            raise TypeError(
                f"image_noising_scheduler must be a DDPMScheduler (it only adds noise), got {type(image_noising_scheduler).__name__}"
            )
        self._init_pipeline(hu_window, unet=unet, scheduler=scheduler, image_noising_scheduler=image_noising_scheduler)
        self._low_res_call = self._start_image = None

    # ------------------------------------------------------------------ inputs

    def check_noise_level(self, noise_level) -> int:
        steps = self.image_noising_scheduler.config.num_train_timesteps
        if isinstance(noise_level, bool) or not isinstance(noise_level, (int, np.integer)) or not 0 <= noise_level < steps:
            raise ValueError(
                f"noise_level must be an integer step of the image-noising schedule, 0 to {steps - 1} (0: no "
                f"augmentation), got {noise_level!r}"
            )
        return int(noise_level)

    def prepare_low_res(self, image, labels: torch.Tensor, num_images_per_prompt: int) -> torch.Tensor:
        """The low-resolution image(s), checked, one per label map, repeated per image: ``(B, C, h, w)`` in [-1, 1]."""
        low_res = self.prepare_image(image)
        maps = labels.shape[0]
        if low_res.shape[0] not in (1, maps):
            raise ValueError(f"got {low_res.shape[0]} low-resolution images for {maps} label maps; pass one or one per map")
        height, width = labels.shape[-2:]
        if low_res.shape[-2] > height or low_res.shape[-1] > width:
            raise ValueError(
                f"the low-resolution image ({low_res.shape[-2]}x{low_res.shape[-1]}) is larger than the label map "
                f"({height}x{width}): pass stage 1's output and the full-resolution map"
            )
        return low_res.expand(maps, -1, -1, -1).repeat_interleave(num_images_per_prompt, dim=0)

    @staticmethod
    def kept_steps(num_inference_steps: int, strength: float) -> int:
        # As diffusers' image-to-image pipelines (the last strength share of the steps), but at least one step, so
        # that a short call (e.g. 2 steps at 0.4) still denoises.
        return max(1, min(int(num_inference_steps * strength), num_inference_steps))

    def check_strength(self, strength) -> float:
        if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)) or not 0 < strength <= 1:
            raise ValueError(f"strength must be a share of the chain in (0, 1] (1: start from pure noise), got {strength!r}")
        return float(strength)

    # ------------------------------------------------------------------ sampling

    def __call__(
        self,
        image: torch.Tensor | np.ndarray | PIL.Image.Image | list,
        mask_image: np.ndarray | torch.Tensor | PIL.Image.Image | list,
        noise_level: int = DEFAULT_NOISE_LEVEL,
        num_inference_steps: int = 25,
        strength: float = DEFAULT_STRENGTH,
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
        Draw full-resolution slices from low-resolution ones and full-resolution label maps.

        Args:
            image: The low-resolution slice(s): a tensor in [-1, 1] (``(B, 1, h, w)``, ``(h, w)``; e.g.
                :class:`LungSDMPipeline`'s ``output_type="latent"``), a numpy array (uint8, or float in [0, 1];
                its ``"np"`` output), a PIL image (mode ``L``), or a list. One image for every map, or one per map.
            mask_image: The full-resolution label map(s), as :class:`LungSDMPipeline`'s ``segmentation``; they set
                the output size.
            noise_level (`int`, defaults to 100): The augmentation step the upsampled image is noised to.
            strength (`float`, defaults to 0.4): As diffusers' image-to-image ``strength``: the chain starts from the
                upsampled image noised to the last ``strength`` share of the ``num_inference_steps`` and runs only
                those (10 of 25 at 0.4; at least one). 1.0 starts from pure noise, as the cascade papers sample.
            num_inference_steps, guidance_scale, generator, latents, output_type, num_images_per_prompt,
            return_dict, callback_on_step_end, callback_on_step_end_tensor_inputs, eta, clip_denoised,
            reuse_mask_features: as in :meth:`LungSDMPipeline.__call__`. The augmentation noise is drawn from
                ``generator`` after the initial latents, so one seed reproduces the call.

        Returns:
            [`LungSDMPipelineOutput`] (``images``, ``synthetic=True``), or the tuple ``(images, True)``.
        """
        # The image and level reach prepare_unet_inputs, which runs once LungSDMPipeline has checked the maps.
        self._low_res_call = (
            image, self.check_noise_level(noise_level), self.check_strength(strength), num_inference_steps
        )
        try:
            return super().__call__(
                mask_image,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generator,
                latents=latents,
                output_type=output_type,
                num_images_per_prompt=num_images_per_prompt,
                return_dict=return_dict,
                callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                eta=eta,
                clip_denoised=clip_denoised,
                reuse_mask_features=reuse_mask_features,
            )
        finally:
            self._low_res_call = self._start_image = None

    def prepare_unet_inputs(self, labels, latents, generator, num_images_per_prompt):
        """The initial latents, then the upsampled low-resolution image noised to the call's level (both drawn from
        the caller's generator, in that order), and that level."""
        image, noise_level = self._low_res_call[:2]
        low_res = self.prepare_low_res(image, labels, num_images_per_prompt)
        device, dtype = self._execution_device, self.unet.dtype
        batch, channels = low_res.shape[0], self.unet.config.in_channels
        height, width = labels.shape[-2:]
        if latents is None:
            latents = randn_tensor((batch, channels, height, width), generator=generator, device=device, dtype=dtype)
        upsampled = upsample_low_res(low_res.to(device, dtype), (height, width))
        noise = randn_tensor(upsampled.shape, generator=generator, device=device, dtype=dtype)
        levels = torch.full((batch,), noise_level, device=device, dtype=torch.long)
        noised = self.image_noising_scheduler.add_noise(upsampled, noise, levels)
        self._start_image = upsampled
        return latents, {"low_res_sample": noised, "noise_level": levels}

    def start_of_chain(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """With ``strength < 1``, the last ``strength`` share of the timesteps, and the upsampled (clean)
        low-resolution image noised to the first of them with the call's initial noise (as diffusers'
        image-to-image pipelines start)."""
        strength, steps = self._low_res_call[2:]
        timesteps = self.scheduler.timesteps
        if strength >= 1:
            return timesteps, latents
        start = (steps - self.kept_steps(steps, strength)) * self.scheduler.order
        timesteps = timesteps[start:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        noise = latents / self.scheduler.init_noise_sigma
        start_image = self._start_image.to(latents.device, latents.dtype)
        return timesteps, self.scheduler.add_noise(start_image, noise, timesteps[:1].repeat(latents.shape[0]))

    # ------------------------------------------------------------------ hub

    _card_tags = ("semantic-diffusion-model", "super-resolution", "cascade")

    def _card_summary(self) -> str:
        return (
            f"The second stage of a two-stage Semantic Diffusion Model: **synthetic** {self.unet.config.sample_size}-px "
            "lung CT slices from a low-resolution slice and the full-resolution label map, packaged as a diffusers "
            "pipeline by lung-diffusers. Use it after a LungSDMPipeline, or both through LungSDMCombinedPipeline."
        )

    def _card_usage(self) -> str:
        side = self.unet.config.sample_size
        return (
            f"labels = np.zeros(({side}, {side}), dtype=np.uint8)  # the full-size label map\n"
            "# stage 2 runs the last 40% of its 25 steps, from low_res_image (stage 1's output) upsampled and noised\n"
            "image = pipe(low_res_image, labels, noise_level=100, num_inference_steps=25, strength=0.4).images[0]\n"
            'save_synthetic_png(image, "synthetic.png")  # keeps the synthetic mark'
        )
