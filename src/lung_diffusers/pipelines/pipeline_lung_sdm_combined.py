"""``LungSDMCombinedPipeline``: both stages of the cascade in one call (as diffusers' "combined" pipelines, e.g.
``KandinskyV22CombinedPipeline``): a full-resolution label map in, a full-resolution synthetic slice out."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput

from ..cascade import low_res_label_map
from ..ct import (
    HU_WINDOW,
    LABEL_NAMES,
    MALIGNANCY_LABEL_NAMES,
    MALIGNANT_NODULE,
    NODULE,
    as_label_tensor,
    image_from_model_range,
    label_scheme,
)
from ..models import SemanticUNet2DModel
from .lung_pipeline import LungDiffusionPipeline
from .pipeline_lung_sdm import LungSDMPipeline
from .pipeline_lung_sdm_upscale import DEFAULT_NOISE_LEVEL, DEFAULT_STRENGTH, LungSDMUpscalePipeline


@dataclass
class LungSDMCombinedPipelineOutput(BaseOutput):
    """
    Output of :class:`LungSDMCombinedPipeline`.

    Args:
        images: the full-resolution slices, in the format of ``output_type`` (as :class:`LungSDMPipeline`'s).
        low_res_images (`np.ndarray`): stage 1's slices, float32 ``(B, h, w)`` in [0, 1] (synthetic too).
        low_res_label_maps (`np.ndarray`): the maps stage 1 was given, uint8 ``(B, h, w)``.
        synthetic (`bool`): Always `True`.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    low_res_images: np.ndarray | None = None
    low_res_label_maps: np.ndarray | None = None
    synthetic: bool = True


class LungSDMCombinedPipeline(LungDiffusionPipeline):
    r"""
    Two-stage (cascade) synthesis of full-resolution lung CT slices: the 64-px SDM (:class:`LungSDMPipeline`) draws
    the layout from a low-resolution label map, then the super-resolution stage (:class:`LungSDMUpscalePipeline`)
    draws the full-resolution slice from that image and the full-resolution map.

    The low-resolution map is made from the full one by :func:`lung_diffusers.cascade.low_res_label_map`: a per-class
    area vote in which every nodule keeps at least the block it covers most (a 4-mm nodule is under a 64-px pixel).
    Steps, guidance and the generator can be set per stage; one ``generator`` (or seed) reproduces both.

    A 7-class (malignancy) stage 1 may run before a 6-class stage 2: stage 2 then reads benign (5) and malignant (6)
    nodules as its one nodule class, so malignancy is drawn by stage 1, which stage 2 refines from step ~400 of
    1000 (``upscaler_strength``). That is exactly a 7-class stage 2 whose malignant class starts as a copy of its
    nodule class (:func:`lung_diffusers.training.sdm_model.with_malignant_class`), without the copy.

    Build it from the two stages' folders with :meth:`from_stages`, or load a saved combined folder with
    ``from_pretrained``. Every output is synthetic.

    Parameters:
        unet ([`SemanticUNet2DModel`]): stage 1's U-Net.
        scheduler: stage 1's sampler.
        upscaler_unet ([`SemanticUNet2DModel`]): stage 2's U-Net (``low_res_channels > 0``).
        upscaler_scheduler: stage 2's sampler.
        image_noising_scheduler ([`~diffusers.DDPMScheduler`]): stage 2's augmentation noise schedule.
        hu_window (`tuple[float, float]`, defaults to `(-1000, 400)`): the HU window of both stages.

    Example:
        ```py
        >>> import numpy as np
        >>> from lung_diffusers import LungSDMCombinedPipeline, save_synthetic_png

        >>> pipe = LungSDMCombinedPipeline.from_stages("pipelines/lung-sdm-64", "pipelines/lung-sdm-upscaler-256")
        >>> labels = np.array(...)  # a 256-px label map (e.g. lung-diffusers export-slice's label_map.png)
        >>> out = pipe(labels, num_inference_steps=25, upscaler_num_inference_steps=25, generator=0)
        >>> save_synthetic_png(out.images[0], "synthetic-256.png")
        ```
    """

    model_cpu_offload_seq = "unet->upscaler_unet"
    _pipeline_classes = ("LungSDMCombinedPipeline",)

    def __init__(
        self,
        unet: SemanticUNet2DModel,
        scheduler,
        upscaler_unet: SemanticUNet2DModel,
        upscaler_scheduler,
        image_noising_scheduler: DDPMScheduler,
        hu_window: tuple[float, float] | list[float] = HU_WINDOW,
    ):
        super().__init__()
        self._init_pipeline(hu_window, unet=unet, scheduler=scheduler)
        self.check_scheduler_class(upscaler_scheduler)
        self.register_modules(
            upscaler_unet=upscaler_unet,
            upscaler_scheduler=upscaler_scheduler,
            image_noising_scheduler=image_noising_scheduler,
        )
        # The stages share the modules registered above (moves, offload and dtype changes reach them).
        self.base = LungSDMPipeline(unet=unet, scheduler=scheduler, hu_window=hu_window)
        self.upscaler = LungSDMUpscalePipeline(
            unet=upscaler_unet,
            scheduler=upscaler_scheduler,
            image_noising_scheduler=image_noising_scheduler,
            hu_window=hu_window,
        )
        first, second = unet.config.num_classes, upscaler_unet.config.num_classes
        if first != second and (first, second) != (len(MALIGNANCY_LABEL_NAMES), len(LABEL_NAMES)):
            raise ValueError(
                f"the stages' label schemes differ: stage 1 has {first} classes, stage 2 {second} (only a 7-class "
                "malignancy stage 1 may run before a 6-class stage 2)"
            )

    def stage_two_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Stage 1's full-resolution label maps as stage 2 reads them: the same, or with benign and malignant
        nodules as one nodule class when a 7-class stage 1 runs before a 6-class stage 2."""
        if self.unet.config.num_classes == self.upscaler_unet.config.num_classes:
            return labels
        return torch.where(labels == MALIGNANT_NODULE, NODULE, labels)  # benign nodules are 5 = nodule already

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        # Keep the stage pipelines on the registered schedulers when users swap them.
        if name in ("scheduler", "upscaler_scheduler") and "upscaler" in self.__dict__:
            if name == "upscaler_scheduler":
                self.check_scheduler_class(value)
            stage = self.base if name == "scheduler" else self.upscaler
            stage.scheduler = value

    @classmethod
    def from_stages(
        cls,
        base: str | os.PathLike | LungSDMPipeline,
        upscaler: str | os.PathLike | LungSDMUpscalePipeline,
        **load_kwargs,
    ) -> LungSDMCombinedPipeline:
        """Build from the two stages: pipelines, or their folders / Hub repo ids (loaded with
        :func:`lung_diffusers.load_pipeline`)."""
        from .loading import load_pipeline

        if not isinstance(base, LungSDMPipeline) or isinstance(base, LungSDMUpscalePipeline):
            base = load_pipeline(base, device=None, pipeline_class=LungSDMPipeline, **load_kwargs)
        if not isinstance(upscaler, LungSDMUpscalePipeline):
            upscaler = load_pipeline(upscaler, device=None, pipeline_class=LungSDMUpscalePipeline, **load_kwargs)
        if list(base.config.hu_window) != list(upscaler.config.hu_window):
            raise ValueError(f"the stages' HU windows differ: {base.config.hu_window} vs {upscaler.config.hu_window}")
        return cls(
            unet=base.unet,
            scheduler=base.scheduler,
            upscaler_unet=upscaler.unet,
            upscaler_scheduler=upscaler.scheduler,
            image_noising_scheduler=upscaler.image_noising_scheduler,
            hu_window=base.config.hu_window,
        )

    def set_progress_bar_config(self, **kwargs):
        super().set_progress_bar_config(**kwargs)
        self.base.set_progress_bar_config(**kwargs)
        self.upscaler.set_progress_bar_config(**kwargs)

    @property
    def low_res_size(self) -> int:
        return int(self.unet.config.sample_size)

    def low_res_label_maps(self, labels: torch.Tensor) -> torch.Tensor:
        """Stage 1's maps from the full-resolution ones (see :func:`lung_diffusers.cascade.low_res_label_map`)."""
        height, width = labels.shape[-2:]
        size = self.low_res_size
        if height != width or height % size:
            raise ValueError(
                f"the label map must be square with a side that is a multiple of stage 1's {size} px (e.g. "
                f"{self.upscaler_unet.config.sample_size}), got {height}x{width}"
            )
        nodules = label_scheme(self.unet.config.num_classes).nodule_classes
        return torch.stack(
            [torch.from_numpy(low_res_label_map(m.numpy(), size, nodules)).long() for m in labels.cpu()]
        )

    @torch.no_grad()
    def __call__(
        self,
        mask_image: np.ndarray | torch.Tensor | PIL.Image.Image | list,
        num_inference_steps: int = 25,
        guidance_scale: float = 1.0,
        upscaler_num_inference_steps: int = 25,
        upscaler_guidance_scale: float = 1.0,
        noise_level: int = DEFAULT_NOISE_LEVEL,
        upscaler_strength: float = DEFAULT_STRENGTH,
        generator: torch.Generator | list[torch.Generator] | int | None = None,
        upscaler_generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        num_images_per_prompt: int = 1,
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
    ) -> LungSDMCombinedPipelineOutput | tuple:
        r"""
        Full-resolution synthetic slices from full-resolution label maps, through both stages.

        Args:
            mask_image: full-resolution label map(s) (as :class:`LungSDMPipeline`'s ``segmentation``), square, with a
                side that is a multiple of stage 1's size (e.g. 256 for a 64-px stage 1).
            num_inference_steps, guidance_scale: stage 1's.
            upscaler_num_inference_steps, upscaler_guidance_scale, noise_level: stage 2's (see
                :class:`LungSDMUpscalePipeline`).
            upscaler_strength: stage 2's ``strength``: the share of its ``upscaler_num_inference_steps`` it runs,
                from stage 1's image upsampled and noised (0.4: 10 of 25; 1.0: all, from pure noise).
            generator: a `torch.Generator` (a list: one per image), or an integer seed; used by stage 1 and, unless
                ``upscaler_generator`` is given, by stage 2 after it, so one seed reproduces both stages.
            upscaler_generator: stage 2's own generator(s).
            output_type, num_images_per_prompt, return_dict: as in :class:`LungSDMPipeline`.
            callback_on_step_end, callback_on_step_end_tensor_inputs: called after every step of stage 2.

        Returns:
            [`LungSDMCombinedPipelineOutput`], or the tuple ``(images, True)``.
        """
        if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
            generator = torch.Generator().manual_seed(int(generator))
        # Stage 2's own settings are checked before stage 1 runs, so a bad one costs no sampling.
        self.upscaler.check_noise_level(noise_level)
        self.upscaler.check_strength(upscaler_strength)
        labels = as_label_tensor(mask_image, self.unet.config.num_classes)
        low_labels = self.low_res_label_maps(labels)
        low = self.base(
            low_labels,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            output_type="latent",
            num_images_per_prompt=num_images_per_prompt,
        ).images
        full_labels = labels.repeat_interleave(num_images_per_prompt, dim=0)
        images = self.upscaler(
            low,
            self.stage_two_labels(full_labels),
            noise_level=noise_level,
            num_inference_steps=upscaler_num_inference_steps,
            strength=upscaler_strength,
            guidance_scale=upscaler_guidance_scale,
            generator=upscaler_generator if upscaler_generator is not None else generator,
            output_type=output_type,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        ).images
        if not return_dict:
            return (images, True)
        low_images = image_from_model_range(low.float()[:, 0]).cpu().numpy()
        return LungSDMCombinedPipelineOutput(
            images=images,
            low_res_images=low_images,
            low_res_label_maps=low_labels.repeat_interleave(num_images_per_prompt, dim=0).numpy().astype(np.uint8),
            synthetic=True,
        )

    def model_card(self, repo_id: str = "path/to/pipeline", training=None, fidelity: str | None = None):
        card = self.upscaler.model_card(repo_id, training, fidelity)
        card.text = card.text.replace("LungSDMUpscalePipeline", "LungSDMCombinedPipeline")
        return card
