"""Deprecated: reading CT volumes and the HU window live in :mod:`lung_diffusers.ct` (removal in 1.0.0)."""

from .._moved_names import moved_names

_MOVED = ("CTVolume", "LabelVolume", "read_ct_volume", "read_label_volume", "window_hu", "unwindow_hu", "HU_WINDOW")
# Listed, so that ``import *`` still gets (and warns about) every name.
__all__ = list(_MOVED)

__getattr__, __dir__ = moved_names(__name__, "lung_diffusers.ct", _MOVED, globals())
