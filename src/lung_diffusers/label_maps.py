"""Deprecated: label-map validation lives in :mod:`lung_diffusers.ct` (removal in 1.0.0)."""

from ._moved_names import moved_names

_MOVED = ("as_label_tensor", "check_label_values", "scaled_labels_hint", "check_label_map_size")
# Listed, so that ``import *`` still gets (and warns about) every name.
__all__ = list(_MOVED)

__getattr__, __dir__ = moved_names(__name__, "lung_diffusers.ct", _MOVED, globals())
