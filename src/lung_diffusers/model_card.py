"""Deprecated: model cards live in :mod:`lung_diffusers.hub` (``build_model_card``)."""

from __future__ import annotations

from ._deprecation import deprecate
from .hub import TEMPLATE, build_model_card

deprecate(
    "lung_diffusers.model_card",
    "1.0.0",
    "Import build_model_card from lung_diffusers.hub instead of lung_diffusers.model_card.",
    standard_warn=False,
)

__all__ = ["TEMPLATE", "build_model_card"]
