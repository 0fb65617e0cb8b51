"""The diffusers pipelines of lung-diffusers, and one loader for their saved folders.

- :mod:`.lung_pipeline`: :class:`LungDiffusionPipeline`, the base every pipeline subclasses (HU window, scheduler
  checks, call state, latents, the shared denoising step :func:`~.lung_pipeline.scheduler_model_output`, callbacks,
  output, save / push with a model card).
- :mod:`.pipeline_lung_sdm`: :class:`LungSDMPipeline`, a slice from a label map (the Semantic Diffusion Model).
- :mod:`.pipeline_lung_sdm_upscale`, :mod:`.pipeline_lung_sdm_combined`: the 256-px cascade's second stage
  (:class:`LungSDMUpscalePipeline`) and both stages in one call (:class:`LungSDMCombinedPipeline`).
- :mod:`.pipeline_lung_repaint`: :class:`LungRePaintPipeline`, RePaint inpainting (nodule removal and insertion,
  anomaly reconstruction).
- :mod:`.loading`: :func:`load_pipeline`, any saved folder or Hub repo with the class its ``model_index.json`` names
  (:mod:`.pipeline_folders`: which class loads which folder) and a sampler of the scheduler registry.
- :mod:`.denoised_clipping`, :mod:`.noise_schedule`, :mod:`.synthetic_output`: x0 clipping for any scheduler, the
  noise schedule pinned into the scheduler config, outputs (PIL, numpy, torch, HU) marked synthetic.

A new pipeline subclasses :class:`LungDiffusionPipeline` (see ``CONTRIBUTING.md``). ``scheduler_uses_learned_variance``
is deprecated: :func:`lung_diffusers.learned_variance.scheduler_reads_learned_variance`.
"""

from .loading import load_pipeline
from .pipeline_lung_repaint import REPAINT_PRESETS, LungRePaintPipeline, LungRePaintPipelineOutput
from .pipeline_lung_sdm import LungSDMPipeline, LungSDMPipelineOutput, scheduler_uses_learned_variance
from .pipeline_lung_sdm_combined import LungSDMCombinedPipeline, LungSDMCombinedPipelineOutput
from .pipeline_lung_sdm_upscale import LungSDMUpscalePipeline

__all__ = [
    "LungRePaintPipeline",
    "LungRePaintPipelineOutput",
    "LungSDMPipeline",
    "LungSDMPipelineOutput",
    "LungSDMCombinedPipeline",
    "LungSDMCombinedPipelineOutput",
    "LungSDMUpscalePipeline",
    "REPAINT_PRESETS",
    "load_pipeline",
    "scheduler_uses_learned_variance",
]
