"""Semantic labels and intensity window of the thesis' lung CT slices (Listing 1; Listing 3 for malignancy).

Pixel values of every mask: 0 background, 1 body, 2 left lung, 3 right lung, 4 trachea, 5 nodule. In the
malignancy variant 5 is a benign nodule (mean LIDC malignancy rating < 3) and 6 a malignant one (>= 3).
Where structures overlap the higher class wins, as in the thesis' ``argmax`` over ``class * mask``.
"""

from __future__ import annotations

BACKGROUND, BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA, NODULE = range(6)
BENIGN_NODULE, MALIGNANT_NODULE = 5, 6

# Machine-readable class names, index = pixel value (`name.replace("_", " ")` for display).
LABEL_NAMES: tuple[str, ...] = ("background", "body", "left_lung", "right_lung", "trachea", "nodule")
MALIGNANCY_LABEL_NAMES: tuple[str, ...] = LABEL_NAMES[:5] + ("benign_nodule", "malignant_nodule")

# The thesis' CT window: [-1000, 400] HU maps to 8-bit [0, 255] in the data and to [-1, 1] in the models.
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)


def label_names(num_classes: int) -> tuple[str, ...]:
    """Class names of a model with ``num_classes`` classes (6: nodule masks, 7: benign/malignant)."""
    if num_classes == len(LABEL_NAMES):
        return LABEL_NAMES
    if num_classes == len(MALIGNANCY_LABEL_NAMES):
        return MALIGNANCY_LABEL_NAMES
    return tuple(f"class_{i}" for i in range(num_classes))
