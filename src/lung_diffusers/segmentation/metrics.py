"""Deprecated: Dice / IoU live in :mod:`lung_diffusers.evaluation.overlap`, bootstrap intervals in
:mod:`lung_diffusers.evaluation.bootstrap`."""

from __future__ import annotations

from .._deprecation import deprecate
from ..evaluation.bootstrap import Interval, bootstrap_interval, paired_bootstrap_interval
from ..evaluation.overlap import dice_and_iou

deprecate(
    "lung_diffusers.segmentation.metrics",
    "1.0.0",
    "Import dice_and_iou from lung_diffusers.evaluation.overlap and Interval, bootstrap_interval and "
    "paired_bootstrap_interval from lung_diffusers.evaluation.bootstrap (or all of them from lung_diffusers.evaluation).",
)

__all__ = ["Interval", "bootstrap_interval", "dice_and_iou", "paired_bootstrap_interval"]
