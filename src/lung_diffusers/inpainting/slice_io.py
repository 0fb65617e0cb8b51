"""Deprecated: slice I/O and the HU conversions live in :mod:`lung_diffusers.ct` (removal in 1.0.0)."""

from .._moved_names import moved_names

_MOVED = (
    "CTSlice",
    "image_from_hu",
    "hu_from_image",
    "as_window_image",
    "read_ct_slice",
    "read_label_slice",
    "resize_slice",
    "resize_binary_mask",
)
# Listed, so that ``import *`` still gets (and warns about) every name.
__all__ = list(_MOVED)

__getattr__, __dir__ = moved_names(__name__, "lung_diffusers.ct", _MOVED, globals())
