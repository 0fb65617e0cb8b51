"""``LungSDMPipeline``: synthetic lung CT slices from semantic label maps with a Semantic Diffusion Model."""

from __future__ import annotations

import inspect
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import psutil
import torch
import torch.nn.functional as F
from diffusers import DDPMParallelScheduler, DDPMScheduler, DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import create_repo

from ..label_maps import as_label_tensor, check_label_map_size
from ..labels import HU_WINDOW, label_names
from ..model_card import build_model_card
from ..models import SemanticUNet2DModel
from .denoised_clipping import clip_denoised_epsilon, scheduler_clips_itself
from .noise_schedule import pin_noise_schedule
from .pipeline_folders import check_pipeline_folder
from .scheduler_support import SDM_SCHEDULERS, check_scheduler
from .synthetic_output import check_output_type, postprocess_samples

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
    """Whether ``scheduler.step`` reads the learned-variance channels after epsilon.

    Only the DDPM schedulers with ``variance_type="learned_range"`` do (they split the output by the sample's
    channel count). The others either ignore them or, like DPMSolverMultistep with ``variance_type`` set,
    slice ``[:, :3]`` assuming RGB, which is wrong for 1-channel CT; they must get the epsilon half alone.
    """
    return (
        isinstance(scheduler, (DDPMScheduler, DDPMParallelScheduler))
        and scheduler.config.variance_type == "learned_range"
    )


class LungSDMPipeline(DiffusionPipeline):
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
    _callback_tensor_inputs = ["latents"]

    def __init__(self, unet: SemanticUNet2DModel, scheduler, hu_window: tuple[float, float] | list[float] = HU_WINDOW):
        super().__init__()
        low, high = (float(v) for v in hu_window)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"hu_window must be two finite values (low, high) with low < high, got {hu_window}")
        self.check_scheduler_class(scheduler)  # before register_modules, which fails on a string with an AttributeError
        self.register_modules(unet=unet, scheduler=scheduler)
        pin_noise_schedule(scheduler)  # so that Heun/LMS.from_config(pipe.scheduler.config) keep the betas
        self.register_to_config(hu_window=[low, high])
        self._guidance_scale = 1.0
        self._num_timesteps = 0
        self._interrupt = False
        self._warnings_given: set[str] = set()

    @staticmethod
    def check_scheduler_class(scheduler) -> None:
        """Refuse anything but a scheduler this pipeline can sample with; run whenever ``scheduler`` is set."""
        check_scheduler(scheduler, SDM_SCHEDULERS, "sample LungSDMPipeline's models, which predict DDPM noise")

    def __setattr__(self, name, value):
        # register_modules (so from_pretrained) and users' `pipe.scheduler = ...` all come through here.
        if name == "scheduler":
            self.check_scheduler_class(value)
        super().__setattr__(name, value)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """As diffusers' ``from_pretrained``; a folder of another kind of pipeline (e.g. the healthy prior's
        ``DDPMPipeline``) is refused with the class that loads it."""
        check_pipeline_folder(pretrained_model_name_or_path, cls.__name__, ("SemanticUNet2DModel",), kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def warn_once(self, message: str) -> None:
        """A `UserWarning`, once per pipeline and message (batch jobs call the pipeline many times)."""
        if message not in self._warnings_given:
            self._warnings_given.add(message)
            warnings.warn(message, UserWarning, stacklevel=3)

    # ------------------------------------------------------------------ state during a call (diffusers' contract)

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale != 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from a step-end callback to skip the remaining steps."""
        return self._interrupt

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
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown} are not among {self._callback_tensor_inputs}")
        self.check_scheduler()
        # Warnings only once the call is known to run.
        if size_warning:
            self.warn_once(size_warning)
        if guidance_scale > MAX_USUAL_GUIDANCE_SCALE:
            self.warn_once(
                f"guidance_scale={guidance_scale:g} is above {MAX_USUAL_GUIDANCE_SCALE:g}: such scales saturate the "
                "image (SDM used 1.5)"
            )

    def check_scheduler(self) -> None:
        """Refuse scheduler settings that cannot work with this U-Net."""
        variance_type = self.scheduler.config.get("variance_type")
        if isinstance(self.scheduler, (DDPMScheduler, DDPMParallelScheduler)) and variance_type == "learned":
            raise ValueError(
                "variance_type='learned' reads the variance channel as a variance, which for SDM models is an "
                "interpolation value in [-1, 1] (its square root is NaN). SDM's parameterisation is 'learned_range': "
                "pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, variance_type='learned_range')"
            )
        if scheduler_uses_learned_variance(self.scheduler) and not self.unet.learned_variance:
            raise ValueError(
                f"the scheduler's variance_type={variance_type!r} needs a learned-variance model, "
                "but this U-Net predicts epsilon only; use e.g. DDPMScheduler.from_config(pipe.scheduler.config, "
                "variance_type='fixed_small')"
            )

    def prepare_latents(self, shape, dtype, device, generator, latents: torch.Tensor | None) -> torch.Tensor:
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def prepare_extra_step_kwargs(self, generator, eta: float) -> dict:
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        extra = {}
        if "generator" in accepted:
            extra["generator"] = generator
        if "eta" in accepted:
            extra["eta"] = eta
        if "use_clipped_model_output" in accepted:
            # Matches guided-diffusion's DDIM sampler, which recomputes epsilon from the clipped x0.
            extra["use_clipped_model_output"] = True
        return extra

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

    def postprocess(self, latents: torch.Tensor, output_type: str):
        return postprocess_samples(latents, output_type, self.config.hu_window)

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
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
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
        device, dtype = self._execution_device, self.unet.dtype
        num_classes, channels = self.unet.config.num_classes, self.unet.config.in_channels
        height, width = labels.shape[-2:]

        # Each distinct map is encoded once, however many images share it; the null map of guidance once for all.
        maps = F.one_hot(labels.to(device), num_classes).permute(0, 3, 1, 2).to(dtype)
        batch = maps.shape[0] * num_images_per_prompt
        repeats = (num_images_per_prompt,) * maps.shape[0]
        if self.do_classifier_free_guidance:
            maps = torch.cat([maps, maps.new_zeros(1, num_classes, height, width)])
            repeats += (batch,)
        if reuse_mask_features is None:
            reuse_mask_features = self.should_reuse_mask_features(maps.shape[0], height, width, device, dtype)

        latents = self.prepare_latents((batch, channels, height, width), dtype, device, generator, latents)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        pass_variance = scheduler_uses_learned_variance(self.scheduler)
        clip_here = clip_denoised and not scheduler_clips_itself(self.scheduler)

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
                )
                features = result.segmentation_features
            else:
                result = self.unet(model_input, t, segmentation_features=features)
            noise, variance = result.sample[:, :channels], result.sample[:, channels:]
            if self.do_classifier_free_guidance:
                noise_cond, noise_null = noise.chunk(2)
                noise = noise_null + self.guidance_scale * (noise_cond - noise_null)
                variance = variance[:batch]
            if clip_here:
                noise = clip_denoised_epsilon(self.scheduler, latents, noise, t)
            model_output = torch.cat([noise, variance], dim=1) if pass_variance else noise
            latents = self.scheduler.step(model_output, t, latents, **extra_step_kwargs).prev_sample

            if callback_on_step_end is not None:
                step_tensors = {"latents": latents}
                callback_kwargs = {k: step_tensors[k] for k in callback_on_step_end_tensor_inputs}
                callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                latents = callback_outputs.pop("latents", latents)

        del features  # nothing of the mask outlives the call
        images = self.postprocess(latents, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, True)
        return LungSDMPipelineOutput(images=images, synthetic=True)

    # ------------------------------------------------------------------ hub

    def model_card(self, repo_id: str = "path/to/pipeline", training=None, fidelity: str | None = None):
        """The pipeline's model card (synthetic-data warning, config summary, labels).

        ``training`` (``(fact, value)`` rows about the training run) and ``fidelity`` (markdown) add sections.
        """
        unet = self.unet.config
        names = label_names(unet.num_classes)
        return build_model_card(
            repo_id=repo_id,
            title=f"{repo_id.rstrip('/').split('/')[-1]}: LungSDMPipeline",
            summary=(
                "A Semantic Diffusion Model (SDM) that generates **synthetic** lung CT slices from semantic label "
                "maps, packaged as a diffusers pipeline by lung-diffusers."
            ),
            pipeline_class="LungSDMPipeline",
            usage=(
                f"mask = np.zeros(({unet.sample_size}, {unet.sample_size}), dtype=np.uint8)  # labels below\n"
                "image = pipe(mask, num_inference_steps=50).images[0]\n"
                'save_synthetic_png(image, "synthetic.png")  # keeps the synthetic mark'
            ),
            details=[
                ("image size", f"{unet.sample_size} x {unet.sample_size}, {unet.in_channels} channel(s)"),
                ("classes", str(unet.num_classes)),
                ("learned variance", str(self.unet.learned_variance)),
                ("U-Net channels", ", ".join(str(c) for c in unet.block_out_channels)),
                ("parameters", f"{sum(p.numel() for p in self.unet.parameters()) / 1e6:.1f} M"),
                ("scheduler", type(self.scheduler).__name__),
                ("HU window", f"[{self.config.hu_window[0]:g}, {self.config.hu_window[1]:g}]"),
            ],
            labels=[(value, name.replace("_", " ")) for value, name in enumerate(names)],
            tags=["semantic-diffusion-model", "image-generation"],
            training=training,
            fidelity=fidelity,
        )

    def save_pretrained(self, save_directory: str | os.PathLike, *args, push_to_hub: bool = False, **kwargs):
        """Save the pipeline as diffusers does, plus a ``README.md`` model card that says the images are synthetic."""
        hub_kwargs = {k: kwargs.pop(k) for k in ("commit_message", "private", "create_pr", "token") if k in kwargs}
        repo_id = kwargs.pop("repo_id", None)
        super().save_pretrained(save_directory, *args, **kwargs)
        self.model_card(repo_id or os.fspath(save_directory)).save(os.path.join(save_directory, "README.md"))
        if push_to_hub:
            self._push_folder(save_directory, repo_id or os.path.basename(os.path.normpath(save_directory)), **hub_kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
    ) -> str:
        """Upload the pipeline (safetensors weights, configs and the synthetic-data model card) to the Hub."""
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant, repo_id=repo_id)
            return self._push_folder(
                folder, repo_id, commit_message=commit_message, private=private, token=token, create_pr=create_pr
            )

    def _push_folder(self, folder, repo_id: str, commit_message=None, private=None, token=None, create_pr=False):
        repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        return self._upload_folder(folder, repo_id, token=token, commit_message=commit_message, create_pr=create_pr)
