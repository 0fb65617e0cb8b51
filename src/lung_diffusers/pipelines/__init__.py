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
