"""The semantic labels of the thesis' lung CT masks (Listing 1; Listing 3 for the malignancy variant)."""

from __future__ import annotations

BACKGROUND, BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA, NODULE = range(6)
BENIGN_NODULE, MALIGNANT_NODULE = 5, 6

LABEL_NAMES = ("background", "body", "left lung", "right lung", "trachea", "nodule")
MALIGNANCY_LABEL_NAMES = (*LABEL_NAMES[:5], "benign nodule (mean rating < 3)", "malignant nodule (mean rating >= 3)")

# Window of the thesis' slices: [-1000, 400] HU maps to [0, 1] (and to [-1, 1] for the diffusion models).
HU_WINDOW = (-1000.0, 400.0)


def label_names(num_classes: int) -> tuple[str, ...]:
    """Names of the labels of a model with ``num_classes`` classes (6: nodule masks, 7: benign/malignant)."""
    if num_classes == len(LABEL_NAMES):
        return LABEL_NAMES
    if num_classes == len(MALIGNANCY_LABEL_NAMES):
        return MALIGNANCY_LABEL_NAMES
    return tuple(f"class {i}" for i in range(num_classes))
