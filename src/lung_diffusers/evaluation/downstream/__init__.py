"""Downstream utility, as in the thesis: do synthetic slices help train a nodule classifier and a nodule localiser?

Modules:

- :mod:`.nodule_samples`: slices with their nodules (recipe datasets, ``synthesize`` outputs), 32x32 nodule and
  non-nodule patches (tasks a, b) and nodule boxes (task c).
- :mod:`.lidc_nodules`: the nodules LIDC readers marked that LUNA16 leaves out, added from the scans.
- :mod:`.patch_classifier`: tasks (a) and (b) with a small MONAI SE-ResNet.
- :mod:`.nodule_localiser`: task (c), a centre heatmap and size on a MONAI U-Net, decoded to boxes.
- :mod:`.average_precision`: AP at an IoU threshold (AP50), all-point interpolation.
- :mod:`.statistics`: the Wilcoxon rank-sum and signed-rank p-values, intervals over test images.
- :mod:`.model_cache`: trained models by content, as safetensors, so runs resume.
- :mod:`.experiment`: arms, repetitions, folds, and the comparison; :mod:`.report` its Markdown and figure.
- :mod:`.command`: ``lung-diffusers evaluate-downstream``.

Plain numpy and SciPy on import; torch and MONAI (``pip install 'lung-diffusers[train]'``) are imported by the
functions that train or predict.
"""

from ..._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("rank_sum_p", "signed_rank_p", "image_interval"), ".statistics"),
    **dict.fromkeys(
        ("average_precision", "recall_at", "match_detections", "box_iou", "square_boxes"), ".average_precision"
    ),
    **dict.fromkeys(
        (
            "SliceNodule",
            "SliceSample",
            "PatchSet",
            "recipe_slices",
            "synthetic_slices",
            "nodule_patches",
            "lung_patches",
            "patch_set",
            "slice_boxes",
            "localisation_slices",
        ),
        ".nodule_samples",
    ),
    **dict.fromkeys(("LidcOnlyNodule", "lidc_only_nodules", "add_lidc_nodules"), ".lidc_nodules"),
    **dict.fromkeys(
        ("ClassifierSettings", "build_patch_classifier", "train_patch_classifier", "predict_patch_classes"),
        ".patch_classifier",
    ),
    **dict.fromkeys(
        ("LocaliserSettings", "build_localiser", "train_localiser", "detect_nodules", "heatmap_targets"),
        ".nodule_localiser",
    ),
    "ModelCache": ".model_cache",
    **dict.fromkeys(("DownstreamSettings", "Fold", "make_folds", "run_experiment", "honesty"), ".experiment"),
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
