"""How good a model is: the figures every evaluation reports, with one definition each.

Modules:

- :mod:`.fidelity`: synthetic slices against their label maps: lung Dice, median HU per region, the targets.
- :mod:`.fidelity_report`: those figures over a set of masks, as ``fidelity.json`` (the model card's table),
  the per-image CSV and the real | mask | synthetic grid.
- :mod:`.overlap`: Dice and IoU of two masks.
- :mod:`.bootstrap`: the mean of per-image scores with a percentile bootstrap interval (paired for two models).
- :mod:`.anomaly_scores`: anomaly maps against known lesions: pixel AUROC, the Dice threshold picked on
  training patients and the Dice it gives elsewhere.
- :mod:`.cascade_metrics`: what a 256-px cascade is measured by: placed nodules' contrast against a lung ring,
  sharpness against the real slice, agreement with the first stage.
- :mod:`.nodule_placement`: the nodules those contrasts are of: discs placed in mm inside the lungs, and the
  nodules a label map holds.
- :mod:`.cascade_report`: the cascade's figures over a set of images with each goal's verdict, and the figure
  real slice | mask | stage 1 | output.
- :mod:`.report_json`: :func:`json_ready`, numpy figures and NaNs made JSON-ready.

The scripts that run them are ``training/evaluate_fidelity.py`` (fidelity; with ``--upscaler`` the cascade's),
``training/evaluate_anomaly_maps.py`` (anomaly maps) and ``training/train_prior_segmentation.py`` (Dice / IoU with
intervals). A new metric goes in the module of what it measures (or a new, small one named for it), with an export
here and a test on known answers.

Plain numpy and SciPy: the package needs none of the optional extras. Names are imported on first use.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("nodule_contrast_hu", "ring_around", "sharpness_ratio", "mean_abs_laplacian", "stage_agreement_hu", "area_downsample"),
        ".cascade_metrics",
    ),
    "lung_dice": ".fidelity",
    "slice_fidelity": ".fidelity",
    "soft_tissue_margin_px": ".fidelity",
    "mid_chest": ".fidelity",
    "mean_over_images": ".fidelity",
    "targets_met": ".fidelity",
    **dict.fromkeys(("NodulePlacement", "place_nodules", "drawn_nodules"), ".nodule_placement"),
    **dict.fromkeys(("summarize_cascade", "cascade_goals", "build_cascade_report"), ".cascade_report"),
    "summarize_fidelity": ".fidelity_report",
    "build_fidelity_report": ".fidelity_report",
    "dice_score": ".overlap",
    "dice_and_iou": ".overlap",
    "Interval": ".bootstrap",
    "bootstrap_interval": ".bootstrap",
    "paired_bootstrap_interval": ".bootstrap",
    "DiceThreshold": ".anomaly_scores",
    "pixel_auroc": ".anomaly_scores",
    "dice_curve": ".anomaly_scores",
    "best_dice_threshold": ".anomaly_scores",
    "dice_at_threshold": ".anomaly_scores",
    "lesion_prediction": ".anomaly_scores",
    "json_ready": ".report_json",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
