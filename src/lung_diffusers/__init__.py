"""lung-diffusers: synthetic lung CT slices from semantic masks, as Hugging Face diffusers pipelines.

The top level exports the model (:class:`SemanticUNet2DModel`), the pipelines (:class:`LungSDMPipeline`, the
cascade's :class:`LungSDMUpscalePipeline` and :class:`LungSDMCombinedPipeline`, :class:`LungRePaintPipeline`) and
:func:`load_pipeline`, the nodule edits (:func:`remove_nodule`, :func:`insert_nodule`) and the writers that mark
images synthetic. The modules, in layers (imports only go down):

- :mod:`.ct`: HU window, label schemes, label maps, slice I/O. :mod:`.command_line`: how every command ends.
- One rule each: :mod:`.scheduler_registry` (the samplers), :mod:`.learned_variance`, :mod:`.cascade`,
  :mod:`.hub` (cards and pushes), :mod:`.sources`, :mod:`.output_folder`, :mod:`.atomic_write`,
  :mod:`.synthetic_marker`; :mod:`.evaluation` (the metrics) and :mod:`.data` (the LUNA16 recipe).
- :mod:`.models`, then :mod:`.pipelines`.
- The tasks: :mod:`.inpainting`, :mod:`.segmentation`, :mod:`.synthesis`; the ``lung-diffusers`` command
  (:mod:`.cli`), :mod:`.demo`, :mod:`.convert_sdm`.
- :mod:`.training`: what the ``training/`` scripts run. Nothing else in the package imports it.

``labels``, ``label_maps`` and ``model_card`` are deprecated import paths (see ``CONTRIBUTING.md``).

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
