from .pipeline_lung_sdm import LungSDMPipeline, LungSDMPipelineOutput, scheduler_uses_learned_variance

__all__ = ["LungSDMPipeline", "LungSDMPipelineOutput", "scheduler_uses_learned_variance"]
