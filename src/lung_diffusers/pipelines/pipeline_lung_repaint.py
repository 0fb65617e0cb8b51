"""``LungRePaintPipeline``: RePaint inpainting of lung CT slices, with a healthy prior or a Semantic Diffusion Model.

RePaint (Lugmayr et al., 2022, *RePaint: Inpainting using Denoising Diffusion Probabilistic Models*) inpaints
with an unconditional diffusion model: at every reverse step the known region is replaced by the real image
noised to the same level, and the sampler repeatedly jumps back up the noise schedule (``jump_length`` steps,
``jump_n_sample`` times) so that the generated region harmonises with the known one.

The jump schedule and the reverse step with :class:`~diffusers.RePaintScheduler` follow diffusers' (deprecated)
``RePaintPipeline`` (Apache-2.0), whose output this pipeline reproduces for epsilon models. The loop is written
against the plain scheduler API so that :class:`~diffusers.DDPMScheduler` (with learned variance) and
:class:`~diffusers.DDIMScheduler` work too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, RePaintScheduler, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..cascade import upsample_low_res
from ..ct import HU_WINDOW, as_label_tensor, image_from_model_range, label_names, label_scheme, scaled_labels_hint
from ..hub import build_model_card
from ..learned_variance import predicts_learned_variance
from ..models import SemanticUNet2DModel
from .lung_pipeline import LungDiffusionPipeline
from .synthetic_output import check_output_type

SIZE_HANDLING = ("crop", "resample", "resize", "none")

# RePaint settings: `pipe(image, mask, **REPAINT_PRESETS["paper"])`. "cpu" (the call's defaults) inpaints a
# 64-px crop in well under a minute on 2 CPU cores (about 230 U-Net passes); "paper" is Lugmayr et al.'s
# setting (about 2,400 passes), which diffusers' RePaintPipeline also defaults to.
REPAINT_PRESETS: dict[str, dict[str, int]] = {
    "cpu": {"num_inference_steps": 50, "jump_length": 5, "jump_n_sample": 5},
    "paper": {"num_inference_steps": 250, "jump_length": 10, "jump_n_sample": 10},
}


@dataclass
class LungRePaintPipelineOutput(BaseOutput):
    """
    Output of :class:`LungRePaintPipeline`.

    Args:
        images: The inpainted images, in the format of ``output_type`` (as :class:`LungSDMPipeline`'s): ``"pil"``
            (mode ``L``), ``"np"`` float32 ``(B, H, W, C)`` in [0, 1], ``"pt"`` ``(B, C, H, W)`` in [0, 1],
            ``"hu"`` float32 ``(B, H, W)`` in Hounsfield units, ``"latent"`` ``(B, C, H, W)`` in [-1, 1].
        regenerated_masks (`np.ndarray`): bool ``(B, H, W)``, `True` where the pixels were generated (the complement
            of the known region), at the output size.
        input_images (`np.ndarray`): float32 ``(B, H, W, C)`` in [0, 1]: the **real** input as the model saw it, at the
            output size (resized in ``size_handling="resize"``), for difference maps. Not synthetic.
        synthetic (`bool`): Always `True`: the images are generated counterfactuals, not scans of patients.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    regenerated_masks: np.ndarray | None = None
    input_images: np.ndarray | None = None
    synthetic: bool = True


def repaint_schedule(num_inference_steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """RePaint's time schedule as step indices (``num_inference_steps - 1`` is the noisiest, 0 the last step).

    Going down one index is a reverse (denoising) step; going up one is a forward (re-noising) step. Every
    ``jump_length`` steps from the start of the chain (except the noisiest stretch) the sampler jumps back up
    ``jump_length`` steps, ``jump_n_sample - 1`` times. Multiplied by ``num_train_timesteps // num_inference_steps``
    this is ``RePaintScheduler.timesteps``.
    """
    jumps_left = {start: jump_n_sample - 1 for start in range(0, num_inference_steps - jump_length, jump_length)}
    schedule, index = [], num_inference_steps
    while index >= 1:
        index -= 1
        schedule.append(index)
        if jumps_left.get(index, 0) > 0:
            jumps_left[index] -= 1
            for _ in range(jump_length):
                index += 1
                schedule.append(index)
    return schedule


def model_predicts_variance(unet) -> bool:
    """Whether the U-Net outputs learned-variance values after the noise (see :mod:`lung_diffusers.learned_variance`)."""
    return predicts_learned_variance(unet.config)


def region_window(regenerate: np.ndarray | torch.Tensor, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size x size`` window centred on the region to regenerate, inside the image.

    Raises:
        ValueError: the region does not fit in one window.
    """
    region = regenerate.cpu().numpy() if torch.is_tensor(regenerate) else np.asarray(regenerate)
    rows, cols = np.nonzero(region)
    height, width = region.shape
    corner = []
    for low, high, extent, axis in (
        (rows.min(), rows.max(), height, "rows"),
        (cols.min(), cols.max(), width, "columns"),
    ):
        span = int(high - low + 1)
        if span > size:
            raise ValueError(
                f"the region to regenerate spans {span} {axis}, more than the model's {size}-px window; use "
                "size_handling='resize', a smaller mask or less dilation"
            )
        start = int(round((low + high + 1) / 2 - size / 2))
        corner.append(min(max(start, 0), extent - size))
    return corner[0], corner[1]


class LungRePaintPipeline(LungDiffusionPipeline):
    r"""
    RePaint inpainting of lung CT slices: regenerate the region where ``mask_image`` is 0 and keep the rest.

    * With an unconditional [`~diffusers.UNet2DModel`] trained on healthy slices (the *healthy prior*), it removes
      nodules: the nodule region is filled with healthy tissue that fits its surroundings (the thesis' module 1).
    * With a [`SemanticUNet2DModel`] and an edited label map (``segmentation``), it inserts a nodule into a real
      slice, or changes its malignancy with a 7-class model: the known region is the real slice outside the edited
      area, and the SDM, conditioned on the edited map, generates the inside.

    Schedulers: [`~diffusers.DDPMScheduler`] (uses a learned variance with ``variance_type="learned_range"``),
    [`~diffusers.DDIMScheduler`] (``eta``) and [`~diffusers.RePaintScheduler`] (``eta``; the output equals
    diffusers' ``RePaintPipeline`` for epsilon-only models), swapped with
    ``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)``. Multistep solvers cannot jump back in
    time and are refused when assigned.

    Loads from a diffusers ``DDPMPipeline`` folder (the healthy prior) or a ``LungSDMPipeline`` folder:
    ``LungRePaintPipeline.from_pretrained(folder)``.

    Every output is synthetic (``output.synthetic`` is `True`; PIL images carry the mark in ``image.info``).

    Parameters:
        unet ([`~diffusers.UNet2DModel`] or [`SemanticUNet2DModel`]): epsilon-predicting, optionally with learned
            variance (``out_channels == 2 * in_channels``).
        scheduler: [`~diffusers.DDPMScheduler`], [`~diffusers.DDIMScheduler`] or [`~diffusers.RePaintScheduler`].
        hu_window (`tuple[float, float]`, defaults to `(-1000, 400)`): The HU window of the training data (image
            value -1 is its lower, +1 its upper bound), for ``output_type="hu"``.

    Example:
        ```py
        >>> import torch
        >>> from diffusers import DDPMScheduler, UNet2DModel
        >>> from lung_diffusers import LungRePaintPipeline

        >>> # A random prior (its inpainting is noise until it is trained).
        >>> unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=2, block_out_channels=(32, 32),
        ...                    layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        ...                    up_block_types=("AttnUpBlock2D", "UpBlock2D"))
        >>> pipe = LungRePaintPipeline(unet=unet, scheduler=DDPMScheduler(variance_type="learned_range"))
        >>> image = torch.rand(1, 1, 48, 48) * 2 - 1          # a slice in [-1, 1], larger than the model
        >>> keep = torch.ones(1, 1, 48, 48)
        >>> keep[..., 20:26, 30:36] = 0                        # 0 = regenerate
        >>> out = pipe(image, keep, num_inference_steps=10, jump_length=3, jump_n_sample=2, output_type="np")
        >>> out.images.shape, out.synthetic                     # cropped around the region, pasted back
        ((1, 48, 48, 1), True)
        ```
    """

    model_cpu_offload_seq = "unet"
    _repaint = True
    _unet_classes = ("UNet2DModel", "SemanticUNet2DModel")
    _pipeline_classes = ("DDPMPipeline", "LungSDMPipeline", "LungRePaintPipeline")

    def __init__(
        self,
        unet: UNet2DModel | SemanticUNet2DModel,
        scheduler: DDPMScheduler | DDIMScheduler | RePaintScheduler,
        hu_window: tuple[float, float] | list[float] = HU_WINDOW,
    ):
        super().__init__()
        self._init_pipeline(hu_window, unet=unet, scheduler=scheduler)

    @property
    def is_semantic(self) -> bool:
        """Whether the U-Net is an SDM, which needs a label map (``segmentation``)."""
        return isinstance(self.unet, SemanticUNet2DModel)

    @property
    def model_size(self) -> int:
        """The side of the square images the U-Net was trained on."""
        size = self.unet.config.sample_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def default_size_handling(self) -> str:
        """``"crop"`` for an unconditional prior (trained on crops of full-resolution slices), ``"resample"`` for an
        SDM (trained on whole slices resized to its size: it inpaints there, and the result is pasted back at the
        slice's own resolution)."""
        return "resample" if self.is_semantic else "crop"

    # ------------------------------------------------------------------ inputs

    def prepare_mask(self, mask_image, image: torch.Tensor, allow_regenerating_all: bool = False) -> torch.Tensor:
        """The keep mask (1 = keep, 0 = regenerate) -> float ``(B, 1, H, W)`` of 0 and 1, one per image.

        Accepted: tensors or numpy arrays ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` of bool, 0/1, floats in
        [0, 1] (binarised at 0.5, as diffusers), or uint8 0/255; PIL images (255 = keep); a list of masks.
        A single mask applies to every image.
        """
        if isinstance(mask_image, (list, tuple)):
            if not mask_image:
                raise ValueError("mask_image is an empty list")
            mask = torch.cat([self.prepare_mask(item, image[:1], allow_regenerating_all) for item in mask_image])
        else:
            mask = self._mask_tensor(mask_image)
        if mask.ndim == 2:
            mask = mask[None, None]
        elif mask.ndim == 3:
            mask = mask[:, None]
        if mask.ndim != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask_image must be (H, W), (B, H, W) or (B, 1, H, W), got {tuple(mask.shape)}")
        if mask.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"mask_image is {tuple(mask.shape[-2:])} (H, W) but the image is {tuple(image.shape[-2:])}; they must match"
            )
        if mask.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"got {mask.shape[0]} masks for {image.shape[0]} images; pass one mask or one per image")
        mask = (mask >= 0.5).float().expand(image.shape[0], -1, -1, -1)
        for index, one in enumerate(mask):
            which = f"mask_image (image {index})" if mask.shape[0] > 1 else "mask_image"
            if bool(one.all()):
                raise ValueError(f"{which} is all 1 (keep everything): there is nothing to regenerate")
            if not bool(one.any()) and not allow_regenerating_all:
                raise ValueError(
                    f"{which} is all 0 (regenerate everything): there is no known region to inpaint from; "
                    "sample the model unconditionally instead"
                )
        return mask

    @staticmethod
    def _mask_tensor(mask_image) -> torch.Tensor:
        if isinstance(mask_image, PIL.Image.Image):
            return torch.from_numpy(np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0)
        if isinstance(mask_image, np.ndarray):
            mask_image = torch.from_numpy(np.ascontiguousarray(mask_image))
        if not torch.is_tensor(mask_image):
            raise TypeError(
                f"mask_image must be a tensor, numpy array, PIL image or list, got {type(mask_image).__name__}"
            )
        if mask_image.dtype == torch.bool:
            return mask_image.float()
        if mask_image.dtype == torch.uint8 and int(mask_image.max()) > 1:
            if not bool(((mask_image == 0) | (mask_image == 255)).all()):
                raise ValueError("a uint8 mask_image must hold 0/1 or 0/255 (255 = keep)")
            return mask_image.float() / 255.0
        mask = mask_image.float()
        LungRePaintPipeline._check_range(
            mask, 0.0, 1.0, "mask_image", "[0, 1] (1 = keep, 0 = regenerate)", tolerance=0.0
        )
        return mask

    def prepare_segmentation(self, segmentation, image: torch.Tensor) -> torch.Tensor | None:
        """The SDM's label map(s) -> ``long (B, H, W)``, one per image; `None` for an unconditional prior."""
        if not self.is_semantic:
            if segmentation is not None:
                raise ValueError(
                    "this pipeline's U-Net is unconditional (a healthy prior) and takes no label map; pass "
                    "segmentation only with a SemanticUNet2DModel"
                )
            return None
        if segmentation is None:
            raise ValueError(
                "this pipeline's U-Net is a Semantic Diffusion Model: pass the (edited) label map as segmentation"
            )
        num_classes = self.unet.config.num_classes
        labels = as_label_tensor(segmentation)
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            low, high = int(labels.min()), int(labels.max())
            values = labels.unique().numpy()
            hint = label_scheme(num_classes).unknown_label_hint(values) or scaled_labels_hint(values, num_classes)
            raise ValueError(
                f"segmentation holds labels {low} to {high}, but this SDM has {num_classes} classes "
                f"(0 to {num_classes - 1}){hint}"
            )
        if labels.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"segmentation is {tuple(labels.shape[-2:])} (H, W) but the image is {tuple(image.shape[-2:])}; they must match"
            )
        if labels.shape[0] not in (1, image.shape[0]):
            raise ValueError(
                f"got {labels.shape[0]} label maps for {image.shape[0]} images; pass one or one per image"
            )
        return labels.expand(image.shape[0], -1, -1)

    def check_inputs(
        self,
        image: torch.Tensor,
        num_inference_steps: int,
        jump_length: int,
        jump_n_sample: int,
        eta: float,
        output_type: str,
        num_images_per_prompt: int,
        size_handling: str,
        generator,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> None:
        channels = self.unet.config.in_channels
        if image.shape[1] != channels:
            raise ValueError(f"the U-Net takes {channels}-channel images, got {image.shape[1]} channels")
        train_steps = self.scheduler.config.num_train_timesteps
        for name, value in (
            ("num_inference_steps", num_inference_steps),
            ("jump_length", jump_length),
            ("jump_n_sample", jump_n_sample),
            ("num_images_per_prompt", num_images_per_prompt),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if num_inference_steps > train_steps:
            raise ValueError(
                f"num_inference_steps must be at most the scheduler's {train_steps} training steps, got {num_inference_steps}"
            )
        if jump_length >= num_inference_steps and jump_n_sample > 1:
            raise ValueError(
                f"jump_length ({jump_length}) must be smaller than num_inference_steps ({num_inference_steps}) for "
                "the resampling jumps to happen (or set jump_n_sample=1)"
            )
        if isinstance(eta, bool) or not isinstance(eta, (int, float, np.number)) or not math.isfinite(eta) or eta < 0:
            raise ValueError(f"eta must be a finite number >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta!r}")
        check_output_type(output_type)
        if size_handling not in SIZE_HANDLING:
            raise ValueError(f"size_handling must be one of {SIZE_HANDLING} or None, got {size_handling!r}")
        height, width = image.shape[-2:]
        size = self.model_size
        if size_handling == "none":
            factor = self.downsample_factor
            if height % factor or width % factor:
                raise ValueError(
                    f"with size_handling='none' the image's height and width must be multiples of {factor} "
                    f"(the U-Net downsamples {factor}x); got {height}x{width}"
                )
        elif height < size or width < size:
            raise ValueError(
                f"the image ({height}x{width}) is smaller than the model's {size}x{size}; pad it, or run it as it is "
                "with size_handling='none'"
            )
        elif size_handling in ("resize", "resample") and height != width:
            raise ValueError(
                f"size_handling={size_handling!r} needs a square image (as the data recipe's), got {height}x{width}"
            )
        batch = image.shape[0] * num_images_per_prompt
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(
                f"got a list of {len(generator)} generators for {batch} images ({image.shape[0]} inputs x "
                f"{num_images_per_prompt} per input); pass one per image or a single one"
            )
        self.check_callback_inputs(callback_on_step_end_tensor_inputs)
        self.check_scheduler()

    # ------------------------------------------------------------------ sizes

    def fit_to_model(self, image, mask, labels, size_handling: str):
        """Crop or resize the inputs to the model (see ``size_handling`` in ``__call__``).

        Returns the model-sized ``image``, ``mask`` and ``labels``, and how to paste the result back: the crop
        corners, ``"resample"``, or ``None`` (the output is the model-sized sample).
        """
        size = self.model_size
        height, width = image.shape[-2:]
        if size_handling == "none" or (height, width) == (size, size):
            return image, mask, labels, None
        if size_handling in ("resize", "resample"):
            # Area averaging, as the data recipe shrinks slices; a pixel touching the region is regenerated.
            resized = F.interpolate(image, size=(size, size), mode="area")
            regenerate = F.interpolate(1 - mask, size=(size, size), mode="area") > 0
            if labels is not None:
                from ..ct import resize_label_map  # the recipe's area-weighted majority vote

                labels = torch.stack(
                    [torch.from_numpy(resize_label_map(m.cpu().numpy().astype(np.uint8), size)).long() for m in labels]
                )
            return resized, (~regenerate).float(), labels, size_handling if size_handling == "resample" else None
        corners = [region_window(m[0] < 0.5, size) for m in mask]

        def crop(batch: torch.Tensor) -> torch.Tensor:
            return torch.stack(
                [x[..., top : top + size, left : left + size] for x, (top, left) in zip(batch, corners)]
            )

        return crop(image), crop(mask), None if labels is None else crop(labels), corners

    # ------------------------------------------------------------------ schedule

    def _timesteps(
        self, num_inference_steps: int, jump_length: int, jump_n_sample: int, device, strength: float = 1.0
    ) -> torch.Tensor:
        if isinstance(self.scheduler, RePaintScheduler):
            self.scheduler.set_timesteps(num_inference_steps, jump_length, jump_n_sample, device)
            return self.scheduler.timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        # descending: base[0] is the noisiest; with strength < 1 only the last share of the chain runs.
        kept = self._kept_steps(num_inference_steps, strength)
        base = self.scheduler.timesteps[num_inference_steps - kept :]
        order = [kept - 1 - k for k in repaint_schedule(kept, jump_length, jump_n_sample)]
        return base[torch.tensor(order, device=base.device)]

    @staticmethod
    def _kept_steps(num_inference_steps: int, strength: float) -> int:
        # As diffusers' image-to-image pipelines: the last strength share of the steps.
        return min(int(num_inference_steps * strength), num_inference_steps)

    def check_strength(self, strength, mask_image, num_inference_steps) -> None:
        if isinstance(strength, bool) or not isinstance(strength, (int, float, np.number)) or not 0 < strength <= 1:
            raise ValueError(f"strength must be a fraction of the chain in (0, 1], got {strength!r}")
        if strength < 1:
            if isinstance(self.scheduler, RePaintScheduler):
                raise ValueError(
                    "strength < 1 needs a DDPMScheduler or DDIMScheduler: "
                    "pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)"
                )
            if isinstance(num_inference_steps, int) and self._kept_steps(num_inference_steps, strength) < 1:
                raise ValueError(
                    f"strength {strength:g} is below the first of {num_inference_steps} steps; raise it or use more steps"
                )
        elif mask_image is None:
            raise ValueError(
                "mask_image=None regenerates the whole image: give strength < 1 (start from the noised image), or "
                "a mask_image (1 = keep, 0 = regenerate)"
            )

    def _previous_timestep(self, timestep: int) -> int:
        """The timestep ``scheduler.step`` goes to from ``timestep`` (negative: the end of the chain)."""
        if isinstance(self.scheduler, DDPMScheduler):
            return int(self.scheduler.previous_timestep(timestep))
        # DDIM (and RePaint) always step back by a fixed stride, whatever their timestep spacing.
        return timestep - self.scheduler.config.num_train_timesteps // self.scheduler.num_inference_steps

    def _alpha_prod(self, timestep: int) -> torch.Tensor:
        if timestep >= 0:
            return self.scheduler.alphas_cumprod[timestep]
        return getattr(self.scheduler, "final_alpha_cumprod", torch.tensor(1.0))

    def _model_output(self, sample, t: int, maps, features, clip_denoised: bool):
        """What ``scheduler.step`` gets (the shared denoising step), and the SDM's mask features, computed once per
        call."""
        model_input = self.scheduler.scale_model_input(sample, t)
        if maps is None:
            output = self.unet(model_input, t).sample
        elif features is None:
            # Encoded inside forward (where offload hooks see it), then reused at every step.
            result = self.unet(model_input, t, segmentation=maps, return_segmentation_features=True)
            output, features = result.sample, result.segmentation_features
        else:
            output = self.unet(model_input, t, segmentation_features=features).sample
        return self.scheduler_model_output(sample, output, t, clip_denoised), features

    def _reverse_step(self, model_output, t: int, sample, known, known_mask, generator, extra_step_kwargs):
        """x_t -> x_prev: the scheduler's step in the unknown region, the real image noised to prev in the known one
        (RePaint's Algorithm 1, lines 4-8)."""
        if isinstance(self.scheduler, RePaintScheduler):
            return self.scheduler.step(model_output, t, sample, known, known_mask, generator).prev_sample
        unknown = self.scheduler.step(model_output, t, sample, **extra_step_kwargs).prev_sample
        alpha = self._alpha_prod(self._previous_timestep(t)).to(sample.device, torch.float32)
        noise = randn_tensor(known.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        known_t = (alpha.sqrt() * known + (1 - alpha).sqrt() * noise).to(sample.dtype)
        return known_mask * known_t + (1 - known_mask) * unknown

    def _jump_up(self, sample: torch.Tensor, from_t: int, to_t: int, generator) -> torch.Tensor:
        """A jump back up the chain, ``q(x_to | x_from)`` (RePaint's Algorithm 1, line 10); RePaintScheduler's own
        ``undo_step`` with RePaintScheduler, one draw of noise otherwise."""
        if isinstance(self.scheduler, RePaintScheduler):
            return self.scheduler.undo_step(sample, to_t, generator)
        alpha = (self._alpha_prod(to_t) / self._alpha_prod(from_t)).to(sample.device, torch.float32)
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return (alpha.sqrt() * sample + (1 - alpha).sqrt() * noise).to(sample.dtype)

    # ------------------------------------------------------------------ outputs

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor | np.ndarray | PIL.Image.Image | list,
        mask_image: torch.Tensor | np.ndarray | PIL.Image.Image | list | None = None,
        segmentation: torch.Tensor | np.ndarray | PIL.Image.Image | list | None = None,
        num_inference_steps: int = 50,
        jump_length: int = 5,
        jump_n_sample: int = 5,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        num_images_per_prompt: int = 1,
        size_handling: str | None = None,
        clip_denoised: bool = True,
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        strength: float = 1.0,
    ) -> LungRePaintPipelineOutput | tuple:
        r"""
        Inpaint: regenerate where ``mask_image`` is 0, keep where it is 1.

        Args:
            image: The real slice(s): a tensor in [-1, 1] (``(B, C, H, W)``, ``(H, W)``, ``(B, H, W)``), a numpy
                array (uint8, or float in [0, 1]), a PIL image (mode ``L``), or a list of them.
            mask_image: **1 = keep, 0 = regenerate** (diffusers' convention): ``(H, W)``, ``(B, H, W)`` or
                ``(B, 1, H, W)`` (bool, 0/1, floats binarised at 0.5, uint8 0/255, PIL with 255 = keep). One mask for
                all images or one per image. A mask that keeps everything is an error; one that keeps nothing, or
                `None`, regenerates the whole image and needs ``strength < 1`` (image to image).
            segmentation: SDM only: the (edited) label map(s) to condition on, the image's size, values in
                ``[0, num_classes)``.
            num_inference_steps (`int`, defaults to 50): Reverse steps of the chain before jumps.
            jump_length (`int`, defaults to 5): Steps of each jump back up the chain (RePaint's *j*).
            jump_n_sample (`int`, defaults to 5): Times each stretch is sampled (RePaint's *r*; 1 = no resampling).
                The defaults are ``REPAINT_PRESETS["cpu"]``; the paper's 250 / 10 / 10 is ``REPAINT_PRESETS["paper"]``.
            eta (`float`, defaults to 0.0): DDIM / RePaintScheduler noise weight (0 deterministic, 1 DDPM-like);
                DDPMScheduler ignores it.
            generator: One `torch.Generator`, or one per output image.
            latents (`torch.Tensor`, *optional*): Initial noise of the model-sized samples.
            output_type (`str`, defaults to `"pil"`): ``"pil"``, ``"np"``, ``"pt"``, ``"hu"`` or ``"latent"``.
            num_images_per_prompt (`int`, defaults to 1): Samples per input (their spread is an uncertainty map).
            size_handling (`str`, *optional*): What to do when the image is not the model's size:

                * ``"crop"`` (default for an unconditional prior, which is trained on crops of full-resolution
                  slices): inpaint a model-sized window centred on the region to regenerate, at full resolution, and
                  paste it back. **The output has the input's size.** The region must fit in one window.
                * ``"resample"`` (default for an SDM, which is trained on whole slices resized to its size): shrink
                  the image (area averaging) and label map (area-weighted majority) to the model size as the data
                  recipe does, inpaint there, and paste the regenerated region, upsampled (bicubic, as the cascade),
                  back into the slice. **The output has the input's size**; outside the region it is the input.
                * ``"resize"``: as ``"resample"`` without the paste: **the output has the model's size.**
                * ``"none"``: run the U-Net at the input size (sides must be multiples of its downsampling).
            clip_denoised (`bool`, defaults to `True`): Clip x0 to [-1, 1] at every step (the schedulers' own
                ``clip_sample`` does it when set; otherwise the pipeline does).
            return_dict (`bool`, defaults to `True`): Return a [`LungRePaintPipelineOutput`] rather than a tuple.
            callback_on_step_end: Called as ``callback(pipe, i, t, {"latents": sample})`` after every entry of the
                RePaint schedule (reverse steps and forward jumps); may return a replacement ``"latents"``.
            callback_on_step_end_tensor_inputs (`list[str]`): Tensors passed to the callback (``"latents"``).
            strength (`float`, defaults to 1.0): As diffusers' image-to-image ``strength``: the chain starts from
                the image noised to the last ``strength`` share of the ``num_inference_steps`` and runs only those
                steps (1: from pure noise, as RePaint). With ``mask_image=None`` this reconstructs the whole image
                from a partly noised copy: the AnoDDPM reconstruction behind :func:`lung_diffusers.inpainting.anomaly_map`.
                DDPM and DDIM only.

        Returns:
            [`LungRePaintPipelineOutput`], or the tuple ``(images, True)``.
        """
        callback_on_step_end_tensor_inputs = self.callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        original = self.prepare_image(image)
        size_handling = size_handling or self.default_size_handling()
        self.check_inputs(
            original,
            num_inference_steps,
            jump_length,
            jump_n_sample,
            eta,
            output_type,
            num_images_per_prompt,
            size_handling,
            generator,
            callback_on_step_end_tensor_inputs,
        )
        self.check_strength(strength, mask_image, num_inference_steps)
        whole = mask_image is None
        mask = torch.zeros_like(original[:, :1]) if whole else self.prepare_mask(mask_image, original, strength < 1)
        labels = self.prepare_segmentation(segmentation, original)
        self._guidance_scale, self._interrupt = 1.0, False
        device, dtype = self._execution_device, self.unet.dtype

        if num_images_per_prompt > 1:
            original, mask = (x.repeat_interleave(num_images_per_prompt, dim=0) for x in (original, mask))
            labels = None if labels is None else labels.repeat_interleave(num_images_per_prompt, dim=0)
        known, known_mask, labels, corners = self.fit_to_model(original, mask, labels, size_handling)
        known, known_mask = known.to(device, dtype), known_mask.to(device, dtype)

        timesteps = self._timesteps(num_inference_steps, jump_length, jump_n_sample, device, strength)
        self._num_timesteps = len(timesteps)
        if strength < 1:
            # Image to image: the real image noised to the first kept step (the prior's q(x_t | x_0)).
            noise = self.prepare_latents(tuple(known.shape), dtype, device, generator, latents)
            alpha = self._alpha_prod(int(timesteps[0])).to(device, torch.float32)
            sample = (alpha.sqrt() * known + (1 - alpha).sqrt() * noise).to(dtype)
        else:
            sample = self.prepare_latents(tuple(known.shape), dtype, device, generator, latents)
        if isinstance(self.scheduler, RePaintScheduler):
            self.scheduler.eta = eta
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        maps = None
        if labels is not None:
            maps = F.one_hot(labels.to(device), self.unet.config.num_classes).permute(0, 3, 1, 2).to(dtype)
        features = None

        # RePaint's schedule goes down (reverse steps) and back up (jumps); the first entry is a reverse step.
        t_last = int(timesteps[0]) + 1
        state_t = int(timesteps[0])  # the timestep the current sample is at
        for i, t in enumerate(self.progress_bar(timesteps)):
            t = int(t)
            if self.interrupt:
                continue
            if t < t_last:
                model_output, features = self._model_output(sample, t, maps, features, clip_denoised)
                if whole:
                    sample = self.scheduler.step(model_output, t, sample, **extra_step_kwargs).prev_sample
                else:
                    sample = self._reverse_step(model_output, t, sample, known, known_mask, generator, extra_step_kwargs)
                state_t = self._previous_timestep(t)
            else:
                sample = self._jump_up(sample, state_t, t_last, generator)
                state_t = t_last
            t_last = t

            sample = self.run_step_end_callback(callback_on_step_end, i, t, callback_on_step_end_tensor_inputs, sample)

        del features
        if corners == "resample":
            # The inpainted region, upsampled as the cascade does, inside the full-resolution slice.
            keep = mask.to(device, dtype)
            upsampled = upsample_low_res(sample.float(), tuple(original.shape[-2:])).to(dtype)
            sample = keep * original.to(device, dtype) + (1 - keep) * upsampled
            known, known_mask = original.to(device, dtype), keep
        elif corners is not None:
            pasted = original.to(device, dtype).clone()
            for b, (top, left) in enumerate(corners):
                pasted[b, :, top : top + sample.shape[-2], left : left + sample.shape[-1]] = sample[b]
            sample, known, known_mask = pasted, original.to(device, dtype), mask.to(device, dtype)
        regenerated = (known_mask[:, 0] < 0.5).cpu().numpy()
        inputs = image_from_model_range(known.float()).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
        images = self.postprocess(sample, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, True)
        return LungRePaintPipelineOutput(
            images=images, regenerated_masks=regenerated, input_images=inputs, synthetic=True
        )

    # ------------------------------------------------------------------ hub

    def model_card(self, repo_id: str = "path/to/pipeline", training=None, fidelity: str | None = None):
        """The pipeline's model card: RePaint inpainting with this U-Net, and that every output is synthetic."""
        unet = self.unet.config
        size = self.model_size
        if self.is_semantic:
            kind, labels = "a Semantic Diffusion Model (inserts or edits nodules)", label_names(unet.num_classes)
        else:
            kind, labels = "an unconditional prior trained on healthy slices (removes nodules)", []
        return build_model_card(
            repo_id=repo_id,
            title=f"{repo_id.rstrip('/').split('/')[-1]}: LungRePaintPipeline",
            summary=(
                f"RePaint inpainting of lung CT slices with {kind}, packaged as a diffusers pipeline by "
                "lung-diffusers. The regenerated region is **synthetic**."
            ),
            pipeline_class="LungRePaintPipeline",
            usage=(
                f"image = torch.zeros(1, 1, {size}, {size})  # a real slice in [-1, 1]\n"
                f"keep = torch.ones(1, 1, {size}, {size}); keep[..., 20:30, 20:30] = 0  # 0 = regenerate\n"
                "result = pipe(image, keep, num_inference_steps=50).images[0]\n"
                'save_synthetic_png(result, "inpainted.png")  # keeps the synthetic mark'
            ),
            details=[
                ("model size", f"{size} x {size}, {unet.in_channels} channel(s)"),
                ("learned variance", str(predicts_learned_variance(unet))),
                ("U-Net channels", ", ".join(str(c) for c in unet.block_out_channels)),
                ("parameters", f"{sum(p.numel() for p in self.unet.parameters()) / 1e6:.1f} M"),
                ("scheduler", type(self.scheduler).__name__),
                ("HU window", f"[{self.config.hu_window[0]:g}, {self.config.hu_window[1]:g}]"),
            ],
            labels=[(value, name.replace("_", " ")) for value, name in enumerate(labels)],
            tags=["repaint", "inpainting"],
            training=training,
            fidelity=fidelity,
        )
