from .loading import load_pipeline
from .pipeline_lung_repaint import REPAINT_PRESETS, LungRePaintPipeline, LungRePaintPipelineOutput
from .pipeline_lung_sdm import LungSDMPipeline, LungSDMPipelineOutput, scheduler_uses_learned_variance

__all__ = [
    "LungRePaintPipeline",
    "LungRePaintPipelineOutput",
    "LungSDMPipeline",
    "LungSDMPipelineOutput",
    "REPAINT_PRESETS",
    "load_pipeline",
    "scheduler_uses_learned_variance",
]
