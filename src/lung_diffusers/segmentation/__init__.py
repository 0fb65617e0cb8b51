"""Prior-aware nodule segmentation (the thesis' module 3, after Astaraki et al. 2022): a small MONAI U-Net that
sees the slice and a prior (the healthy prior's mask-free anomaly map), trained against the same U-Net on the
slice alone. Training and evaluation: ``training/train_prior_segmentation.py``
(:mod:`lung_diffusers.training.prior_segmentation`).

Modules:

- :mod:`.prior_net`: the two U-Nets (MONAI ``BasicUNet``), their inputs, prediction, saving and loading.
- :mod:`.priors`: anomaly-map priors of many slices, cached on disk so an interrupted run does not redo them.
- :mod:`.unet_comparison`: the two U-Nets compared on test images (Dice / IoU with intervals, table, figures).

Per-image Dice and IoU and their bootstrap intervals over test images are :mod:`lung_diffusers.evaluation`
(still exported here; :mod:`.metrics` is their deprecated old path). MONAI comes with the ``train`` extra (``pip install "lung-diffusers[train]"``). Names are imported on first use.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "IMAGE_ONLY": ".prior_net",
    "WITH_PRIOR": ".prior_net",
    "VARIANTS": ".prior_net",
    "build_segmentation_unet": ".prior_net",
    "network_input": ".prior_net",
    "predict_nodule_mask": ".prior_net",
    "save_segmentation_unet": ".prior_net",
    "load_segmentation_unet": ".prior_net",
    "anomaly_priors": ".priors",
    "dice_and_iou": "..evaluation.overlap",
    "bootstrap_interval": "..evaluation.bootstrap",
    "paired_bootstrap_interval": "..evaluation.bootstrap",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
