"""Editing nodules in real CT slices with RePaint (issue 9): removal with the healthy prior (the thesis' module 1),
insertion with a Semantic Diffusion Model, and difference maps.

Modules:

- :mod:`.nodule_removal`: :func:`remove_nodule`, the healthy counterfactual of a slice with a nodule.
- :mod:`.nodule_insertion`: :func:`insert_nodule`, a nodule (benign / malignant with a 7-class SDM) put into a slice.
- :mod:`.nodule_edit`: :class:`NoduleEdit`, the result of either, and the mask handling they share.
- :mod:`.anomaly_maps`: mask-free anomaly maps, AnoDDPM-style (partial noising, denoising with the prior).
- :mod:`.anomaly_map_evaluation`: what ``training/evaluate_anomaly_maps.py`` runs: anomaly maps of held-out
  patients scored against real and synthetic nodules (the report: :mod:`.anomaly_map_report`).
- :mod:`.synthetic_nodules`: simple nodules painted into healthy slices at known places (ground truth).
- :mod:`.evaluation_slices`: the held-out and training slices of the evaluations, with real or synthetic nodules.
- :mod:`.difference_maps`: Listing 6's quantile clipping and the difference / uncertainty maps.
- :mod:`.figure`: input | mask | result | difference figures that say which panel is real.
- :mod:`.settings`: default dilations, noise level and the recipe's slice size.
- :mod:`.commands`: the ``remove-nodule``, ``insert-nodule`` and ``anomaly-map`` subcommands of ``lung-diffusers``.

Pixel AUROC and Dice of anomaly maps (the threshold picked on training patients) are
:mod:`lung_diffusers.evaluation.anomaly_scores`, still exported here. Module 3, the prior-aware segmentation U-Net,
is :mod:`lung_diffusers.segmentation`. The pipeline itself is :class:`lung_diffusers.LungRePaintPipeline`. Reading
slices and HU conversions are :mod:`lung_diffusers.ct` (re-exported here). :mod:`.slice_io` and
:mod:`.anomaly_evaluation` are deprecated old paths of those. Names are imported on first use.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "remove_nodule": ".nodule_removal",
    "insert_nodule": ".nodule_insertion",
    "edit_label_map": ".nodule_insertion",
    "disc_mask": ".nodule_insertion",
    "NoduleEdit": ".nodule_edit",
    "dilate_mask": ".nodule_edit",
    "nodule_mask_from_labels": ".nodule_edit",
    "AnomalyMap": ".anomaly_maps",
    "anomaly_map": ".anomaly_maps",
    "reconstruct_from_noise_level": ".anomaly_maps",
    "DiceThreshold": "..evaluation.anomaly_scores",
    "pixel_auroc": "..evaluation.anomaly_scores",
    "dice_curve": "..evaluation.anomaly_scores",
    "best_dice_threshold": "..evaluation.anomaly_scores",
    "dice_at_threshold": "..evaluation.anomaly_scores",
    "dice_score": "..evaluation.overlap",
    "SyntheticNodule": ".synthetic_nodules",
    "place_synthetic_nodule": ".synthetic_nodules",
    "difference_map": ".difference_maps",
    "quantile_clip": ".difference_maps",
    "mean_and_uncertainty": ".difference_maps",
    "CTSlice": "..ct",
    "read_ct_slice": "..ct",
    "read_label_slice": "..ct",
    "image_from_hu": "..ct",
    "hu_from_image": "..ct",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
