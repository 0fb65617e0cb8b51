"""lung-diffusers: synthetic lung CT slices from semantic masks, as Hugging Face diffusers pipelines."""

__version__ = "0.1.0.dev0"

# `from_pretrained` resolves `["lung_diffusers", "<Class>"]` entries of model_index.json against this
# package root, and also looks up the diffusers base classes here.
from diffusers import ModelMixin, SchedulerMixin  # noqa: E402

from .convert_sdm import convert_sdm_checkpoint  # noqa: E402
from .labels import HU_WINDOW, LABEL_NAMES, MALIGNANCY_LABEL_NAMES  # noqa: E402
from .models import SemanticUNet2DModel, SemanticUNet2DOutput  # noqa: E402
from .pipelines import LungSDMPipeline, LungSDMPipelineOutput  # noqa: E402
from .synthetic_marker import is_synthetic, save_synthetic_nifti, save_synthetic_png  # noqa: E402

__all__ = [
    "HU_WINDOW",
    "LABEL_NAMES",
    "MALIGNANCY_LABEL_NAMES",
    "LungSDMPipeline",
    "LungSDMPipelineOutput",
    "ModelMixin",
    "SchedulerMixin",
    "SemanticUNet2DModel",
    "SemanticUNet2DOutput",
    "convert_sdm_checkpoint",
    "is_synthetic",
    "save_synthetic_nifti",
    "save_synthetic_png",
]
