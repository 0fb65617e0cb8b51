"""Deprecated: label-map validation lives in :mod:`lung_diffusers.ct` (removal in 1.0.0)."""

from ._moved_names import moved_names

__getattr__, __dir__ = moved_names(
    __name__,
    "lung_diffusers.ct",
    ("as_label_tensor", "check_label_values", "scaled_labels_hint", "check_label_map_size"),
    globals(),
)
