"""Deprecated: reading CT volumes and the HU window live in :mod:`lung_diffusers.ct` (removal in 1.0.0)."""

from .._moved_names import moved_names

__getattr__, __dir__ = moved_names(
    __name__,
    "lung_diffusers.ct",
    ("CTVolume", "LabelVolume", "read_ct_volume", "read_label_volume", "window_hu", "unwindow_hu", "HU_WINDOW"),
    globals(),
)
