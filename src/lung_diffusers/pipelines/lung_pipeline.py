"""What every lung-diffusers pipeline shares: the HU window, scheduler checks, the call state of diffusers'
contract, latents, the denoising step's model output, step-end callbacks, output conversion and publishing.

:class:`LungSDMPipeline`, :class:`LungSDMUpscalePipeline` and :class:`LungRePaintPipeline` subclass
:class:`LungDiffusionPipeline`; each keeps only its own inputs and sampling loop.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import warnings

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

from ..ct import check_hu_window, model_range_from_image
from ..learned_variance import check_variance_setting, scheduler_reads_learned_variance, split_noise_and_variance
from ..scheduler_registry import check_scheduler
from .denoised_clipping import clip_denoised_epsilon, scheduler_clips_itself
from .noise_schedule import pin_noise_schedule
from .pipeline_folders import check_pipeline_folder
from .synthetic_output import postprocess_samples


def scheduler_model_output(
    scheduler,
    sample: torch.Tensor,
    unet_output: torch.Tensor,
    timestep,
    *,
    guidance_scale: float = 1.0,
    clip_denoised: bool = True,
) -> torch.Tensor:
    """What ``scheduler.step`` gets from one U-Net pass: the denoising step every pipeline shares.

    Splits noise and learned variance by the sample's channels; with guidance (``unet_output`` holds the
    conditional then the null pass) mixes the noise as ``null + s * (cond - null)`` and keeps the conditional
    variance; clips x0 to [-1, 1] when the scheduler does not (guided-diffusion's ``clip_denoised``); and appends
    the variance only for schedulers that read it.
    """
    noise, variance = split_noise_and_variance(unet_output, sample)
    if guidance_scale != 1.0:
        noise_cond, noise_null = noise.chunk(2)
        noise = noise_null + guidance_scale * (noise_cond - noise_null)
        variance = variance[: sample.shape[0]]
    if clip_denoised and not scheduler_clips_itself(scheduler):
        noise = clip_denoised_epsilon(scheduler, sample, noise, timestep)
    return torch.cat([noise, variance], dim=1) if scheduler_reads_learned_variance(scheduler) else noise


class LungDiffusionPipeline(DiffusionPipeline):
    """The base of lung-diffusers pipelines (see the module docstring). Subclasses set:

    * ``_repaint`` (`bool`): whether the scheduler must be able to step back up the chain (RePaint);
    * ``_unet_classes``: the U-Net class names of the saved folders the pipeline loads;
    * ``_pipeline_classes``: the saved pipeline classes (``model_index.json``'s ``_class_name``) it loads.
    """

    _repaint = False
    _unet_classes: tuple[str, ...] = ("SemanticUNet2DModel",)
    _pipeline_classes: tuple[str, ...] = ()
    _callback_tensor_inputs = ["latents"]

    def _init_pipeline(self, hu_window, **modules) -> None:
        """``register_modules`` after checking the scheduler (diffusers would fail on a string with an
        ``AttributeError``), the pinned noise schedule and the HU window; then the call state."""
        hu_window = list(check_hu_window(hu_window))
        self.check_scheduler_class(modules["scheduler"])
        self.register_modules(**modules)
        pin_noise_schedule(modules["scheduler"])  # so that Heun/LMS.from_config(pipe.scheduler.config) keep the betas
        self.register_to_config(hu_window=hu_window)
        self._guidance_scale = 1.0
        self._num_timesteps = 0
        self._interrupt = False
        self._warnings_given: set[str] = set()

    # ------------------------------------------------------------------ schedulers and folders

    @classmethod
    def check_scheduler_class(cls, scheduler) -> None:
        """Refuse anything but a scheduler this pipeline can sample with; run whenever ``scheduler`` is set."""
        check_scheduler(scheduler, repaint=cls._repaint)

    def __setattr__(self, name, value):
        # register_modules (so from_pretrained) and users' `pipe.scheduler = ...` all come through here.
        if name == "scheduler":
            self.check_scheduler_class(value)
        super().__setattr__(name, value)

    def check_scheduler(self) -> None:
        """Refuse scheduler settings that cannot work with this U-Net (its class is checked when assigned)."""
        prediction = self.scheduler.config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(f"these models predict the noise (epsilon): the scheduler has prediction_type={prediction!r}")
        check_variance_setting(self.scheduler, self.unet.config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """As diffusers' ``from_pretrained``; a folder of a pipeline this class cannot load is refused with a clear
        error naming the class that loads it."""
        from ..sources import local_or_hub

        # A missing local folder is "does not exist", not diffusers' "invalid repo id".
        with local_or_hub(pretrained_model_name_or_path, "pretrained_model_name_or_path") as where:
            where = os.fspath(where)
            check_pipeline_folder(where, cls.__name__, cls._unet_classes, kwargs, cls._pipeline_classes)
            return super().from_pretrained(where, **kwargs)

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

    # ------------------------------------------------------------------ image inputs

    def prepare_image(self, image) -> torch.Tensor:
        """An image or batch -> float ``(B, C, H, W)`` in [-1, 1], validated.

        Accepted: torch tensors in [-1, 1] (``(B, C, H, W)``, ``(H, W)``, or ``(B, H, W)`` for 1-channel models);
        numpy arrays, float in [0, 1] or uint8 (``(H, W)``, ``(B, H, W)``, ``(H, W, C)`` or ``(B, H, W, C)``);
        PIL images (mode ``L``; ``RGB`` is converted to grey for 1-channel models); or a list of images.
        """
        channels = self.unet.config.in_channels
        if isinstance(image, (list, tuple)):
            if not image:
                raise ValueError("image is an empty list")
            parts = [self.prepare_image(item) for item in image]
            if len({tuple(p.shape[1:]) for p in parts}) != 1:
                raise ValueError(
                    f"images in a list must share one size, got {sorted({tuple(p.shape[2:]) for p in parts})}"
                )
            return torch.cat(parts)
        if isinstance(image, PIL.Image.Image):
            if image.mode not in ("L", "RGB"):
                raise ValueError(
                    f"a PIL image must have mode L (grey) or RGB, got {image.mode}; for HU data pass a tensor in [-1, 1] "
                    "(lung_diffusers.inpainting.image_from_hu)"
                )
            image = image.convert("L" if channels == 1 else "RGB")
            image = np.asarray(image)
        if isinstance(image, np.ndarray):
            if image.dtype == np.uint8:
                array = image.astype(np.float32) / 255.0
            elif image.dtype.kind == "f":
                array = image.astype(np.float32)
                self._check_range(array, 0.0, 1.0, "a float numpy image", "[0, 1] (as diffusers' image processors)")
            else:
                raise TypeError(f"numpy images must be uint8 or float in [0, 1], got dtype {image.dtype}")
            if array.ndim == 2:
                array = array[None, ..., None]
            elif array.ndim == 3:
                # (H, W, C) when the last axis holds the model's channels (or 1), else a batch (B, H, W) of grey images
                has_channel_axis = array.shape[-1] == 1 or (channels > 1 and array.shape[-1] == channels)
                array = array[None] if has_channel_axis else array[..., None]
            if array.ndim != 4:
                raise ValueError(
                    f"a numpy image must be (H, W), (B, H, W), (H, W, C) or (B, H, W, C), got {image.shape}"
                )
            return model_range_from_image(torch.from_numpy(array).permute(0, 3, 1, 2))
        if not torch.is_tensor(image):
            raise TypeError(
                f"image must be a torch tensor in [-1, 1], a numpy array, a PIL image or a list of them, got {type(image).__name__}"
            )
        if not image.is_floating_point():
            raise TypeError(f"tensor images must be floating point in [-1, 1], got dtype {image.dtype}")
        if image.ndim == 2:
            image = image[None, None]
        elif image.ndim == 3:
            image = image[:, None] if channels == 1 else image[None]
        if image.ndim != 4:
            raise ValueError(f"a tensor image must be (B, C, H, W), (H, W) or (B, H, W), got {tuple(image.shape)}")
        self._check_range(image, -1.0, 1.0, "a tensor image", "[-1, 1] (as diffusers' RePaintPipeline)")
        return image

    @staticmethod
    def _check_range(values, low: float, high: float, what: str, expected: str, tolerance: float = 1e-4) -> None:
        values = torch.as_tensor(values)
        if not torch.isfinite(values).all():
            raise ValueError(f"{what} contains NaN or infinite values")
        lo, hi = float(values.min()), float(values.max())
        if lo < low - tolerance or hi > high + tolerance:
            hint = (
                " (Hounsfield units? convert with lung_diffusers.inpainting.image_from_hu)"
                if hi > 100 or lo < -100
                else ""
            )
            raise ValueError(f"{what} must lie in {expected}; got values from {lo:g} to {hi:g}{hint}")

    # ------------------------------------------------------------------ sampling pieces

    def prepare_latents(self, shape, dtype, device, generator, latents: torch.Tensor | None) -> torch.Tensor:
        """Initial noise of ``shape`` (drawn, or the given ``latents`` checked), scaled for the scheduler."""
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != tuple(shape):
            raise ValueError(f"latents must have shape {tuple(shape)} for this call, got {tuple(latents.shape)}")
        elif not torch.isfinite(latents).all():
            raise ValueError("latents contain NaN or infinite values; pass finite Gaussian noise (randn_tensor)")
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

    def scheduler_model_output(self, sample, unet_output, timestep, clip_denoised: bool = True) -> torch.Tensor:
        """:func:`scheduler_model_output` with this pipeline's scheduler and guidance scale."""
        return scheduler_model_output(
            self.scheduler,
            sample,
            unet_output,
            timestep,
            guidance_scale=self._guidance_scale,
            clip_denoised=clip_denoised,
        )

    @staticmethod
    def callback_tensor_inputs(callback_on_step_end, names: list[str]) -> list[str]:
        """The tensors a step-end callback asked for (a callback object names its own)."""
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            return callback_on_step_end.tensor_inputs
        return names

    def check_callback_inputs(self, names: list[str]) -> None:
        unknown = [k for k in names if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown} are not among {self._callback_tensor_inputs}")

    def run_step_end_callback(self, callback_on_step_end, step: int, timestep, names: list[str], latents):
        """diffusers' ``callback_on_step_end(pipe, step, timestep, callback_kwargs)``; returns the (possibly
        replaced) latents."""
        if callback_on_step_end is None:
            return latents
        step_tensors = {"latents": latents}
        outputs = callback_on_step_end(self, step, timestep, {k: step_tensors[k] for k in names}) or {}
        return outputs.pop("latents", latents)

    def postprocess(self, latents: torch.Tensor, output_type: str):
        return postprocess_samples(latents, output_type, self.config.hu_window)

    # ------------------------------------------------------------------ hub

    def model_card(self, repo_id: str = "path/to/pipeline", training=None, fidelity: str | None = None):
        """The pipeline's model card (synthetic-data warning, configuration); subclasses describe themselves."""
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | os.PathLike, *args, push_to_hub: bool = False, **kwargs):
        """Save the pipeline as diffusers does, plus a ``README.md`` model card that says the images are synthetic."""
        from ..hub import push_folder

        hub_kwargs = {k: kwargs.pop(k) for k in ("commit_message", "private", "create_pr", "token") if k in kwargs}
        repo_id = kwargs.pop("repo_id", None)
        super().save_pretrained(save_directory, *args, **kwargs)
        self.model_card(repo_id or os.fspath(save_directory)).save(os.path.join(save_directory, "README.md"))
        if push_to_hub:
            push_folder(save_directory, repo_id or os.path.basename(os.path.normpath(save_directory)), **hub_kwargs)

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
        from ..hub import push_folder

        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant, repo_id=repo_id)
            return push_folder(
                folder, repo_id, commit_message=commit_message, private=private, token=token, create_pr=create_pr
            )
