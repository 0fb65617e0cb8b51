"""lung-diffusers: synthetic lung CT slices from semantic masks, as Hugging Face diffusers pipelines.

Names are imported on first use (as diffusers does), so ``import lung_diffusers`` is cheap and
``python -m lung_diffusers.convert_sdm`` runs without the package importing the module twice.
"""

from ._lazy import lazy_exports

__version__ = "0.1.0.dev0"

# `from_pretrained` resolves `["lung_diffusers", "<Class>"]` entries of model_index.json against this
# package root, and also looks up the diffusers base classes here.
_EXPORTS = {
    "ModelMixin": "diffusers",
    "SchedulerMixin": "diffusers",
    "convert_sdm_checkpoint": ".convert_sdm",
    "HU_WINDOW": ".ct",
    "LABEL_NAMES": ".ct",
    "MALIGNANCY_LABEL_NAMES": ".ct",
    "SemanticUNet2DModel": ".models",
    "SemanticUNet2DOutput": ".models",
    "SegmentationFeatures": ".models",
    "LungSDMPipeline": ".pipelines",
    "LungSDMPipelineOutput": ".pipelines",
    "LungSDMUpscalePipeline": ".pipelines",
    "LungSDMCombinedPipeline": ".pipelines",
    "LungSDMCombinedPipelineOutput": ".pipelines",
    "LungRePaintPipeline": ".pipelines",
    "LungRePaintPipelineOutput": ".pipelines",
    "REPAINT_PRESETS": ".pipelines",
    "load_pipeline": ".pipelines",
    "remove_nodule": ".inpainting",
    "insert_nodule": ".inpainting",
    "is_synthetic": ".synthetic_marker",
    "save_synthetic_nifti": ".synthetic_marker",
    "save_synthetic_png": ".synthetic_marker",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
