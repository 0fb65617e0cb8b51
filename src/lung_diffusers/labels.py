"""Deprecated: class ids, names and the HU window live in :mod:`lung_diffusers.ct` (removal in 1.0.0)."""

from ._moved_names import moved_names

_MOVED = (
    "BACKGROUND",
    "BODY",
    "LEFT_LUNG",
    "RIGHT_LUNG",
    "TRACHEA",
    "NODULE",
    "BENIGN_NODULE",
    "MALIGNANT_NODULE",
    "LABEL_NAMES",
    "MALIGNANCY_LABEL_NAMES",
    "HU_WINDOW",
    "label_names",
)
# Listed, so that ``import *`` still gets (and warns about) every name.
__all__ = list(_MOVED)

__getattr__, __dir__ = moved_names(__name__, "lung_diffusers.ct", _MOVED, globals())
