"""The classes of the thesis' lung label maps (Listing 1; Listing 3 for malignancy), chosen by number of classes.

Pixel values of every map: 0 background, 1 body, 2 left lung, 3 right lung, 4 trachea, 5 nodule (6 classes). In the
malignancy scheme (7 classes) 5 is a benign nodule (mean LIDC malignancy rating < 3) and 6 a malignant one (>= 3).
Where structures overlap the higher class wins, as in the thesis' ``argmax`` over ``class * mask``.

A model's ``num_classes`` picks its :class:`LabelScheme` (:func:`label_scheme`): what each value means, which values
are nodules, the recipe configs labelled that way and the display colours (thesis Figure 3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

import numpy as np

BACKGROUND, BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA, NODULE = range(6)
BENIGN_NODULE, MALIGNANT_NODULE = 5, 6

# Machine-readable class names, index = pixel value (`name.replace("_", " ")` for display).
LABEL_NAMES: tuple[str, ...] = ("background", "body", "left_lung", "right_lung", "trachea", "nodule")
MALIGNANCY_LABEL_NAMES: tuple[str, ...] = LABEL_NAMES[:5] + ("benign_nodule", "malignant_nodule")

# Thesis Figure 3.2: black background, blue body, orange left lung, green right lung, cyan trachea; nodules red
# (benign yellow where malignancy is told apart).
CLASS_COLOURS_RGB: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "background": (0, 0, 0),
        "body": (40, 70, 220),
        "left_lung": (255, 150, 0),
        "right_lung": (40, 190, 60),
        "trachea": (0, 230, 230),
        "nodule": (230, 30, 30),
        "benign_nodule": (250, 220, 0),
        "malignant_nodule": (230, 30, 30),
    }
)


@dataclass(frozen=True, eq=False)  # one instance per scheme; its mappings are not hashable
class LabelScheme:
    """What the pixel values of a lung label map mean, for a model with ``num_classes`` classes.

    Attributes:
        names: class names, index = pixel value.
        nodule_classes: the values that are nodules.
        malignancy_classes: ``{"benign": 5, "malignant": 6}`` where the scheme tells them apart, else empty.
        dataset_configs: the data recipe's configs whose masks use this scheme.
    """

    names: tuple[str, ...]
    nodule_classes: tuple[int, ...]
    malignancy_classes: Mapping[str, int] = field(default_factory=dict)
    dataset_configs: tuple[str, ...] = ()

    lung_classes: ClassVar[tuple[int, int]] = (LEFT_LUNG, RIGHT_LUNG)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def tells_malignancy(self) -> bool:
        """Whether nodules are benign or malignant (the 7-class scheme) rather than one nodule class."""
        return bool(self.malignancy_classes)

    @property
    def colours(self) -> np.ndarray:
        """uint8 ``(num_classes, 3)`` RGB, one colour per class."""
        return np.array([CLASS_COLOURS_RGB[name] for name in self.names], np.uint8)

    def display_names(self) -> list[str]:
        """Class names for people ("left lung", ...)."""
        return [name.replace("_", " ") for name in self.names]

    def nodule_class(self, malignancy: str | None = None) -> int:
        """The label to paint for a nodule; ``malignancy`` (``"benign"`` / ``"malignant"``) only in the 7-class scheme.

        Raises:
            ValueError: a malignancy the scheme cannot hold, or none where it needs one.
        """
        if malignancy is not None and malignancy not in ("benign", "malignant"):
            raise ValueError(f"malignancy must be 'benign', 'malignant' or None, got {malignancy!r}")
        if not self.tells_malignancy:
            if malignancy is not None:
                raise ValueError(
                    f"a {malignancy} nodule (or changing benign <-> malignant) needs a 7-class malignancy SDM; this "
                    "model has 6 classes, with one nodule class: pass malignancy=None, or use a model trained on the "
                    "recipe's 'malignancy' config"
                )
            return self.nodule_classes[0]
        if malignancy is None:
            raise ValueError(
                f"this {self.num_classes}-class SDM tells benign ({self.malignancy_classes['benign']}) from malignant "
                f"({self.malignancy_classes['malignant']}) nodules: pass malignancy='benign' or 'malignant'"
            )
        return self.malignancy_classes[malignancy]

    def unknown_label_hint(self, values) -> str:
        """A hint for label ``values`` this scheme lacks: a malignant nodule (6) given to a 6-class model."""
        found = {int(v) for v in np.unique(np.asarray(values)) if v >= self.num_classes}
        if not self.tells_malignancy and found == {MALIGNANT_NODULE}:
            return f" ({MALIGNANT_NODULE} = malignant nodule needs a 7-class model; relabel it {NODULE})"
        return ""


NODULE_SCHEME = LabelScheme(LABEL_NAMES, (NODULE,), dataset_configs=("healthy", "nodule"))
MALIGNANCY_SCHEME = LabelScheme(
    MALIGNANCY_LABEL_NAMES,
    (BENIGN_NODULE, MALIGNANT_NODULE),
    MappingProxyType({"benign": BENIGN_NODULE, "malignant": MALIGNANT_NODULE}),
    dataset_configs=("malignancy",),
)
LABEL_SCHEMES: Mapping[int, LabelScheme] = MappingProxyType(
    {scheme.num_classes: scheme for scheme in (NODULE_SCHEME, MALIGNANCY_SCHEME)}
)
# Every value that is a nodule in some scheme: finds nodules in a map without knowing its model.
ALL_NODULE_CLASSES: tuple[int, ...] = tuple(sorted({c for s in LABEL_SCHEMES.values() for c in s.nodule_classes}))

# mask_to_rgb's palette for values 0-6: the 6-class colours plus the malignant nodule's.
MASK_COLORS_RGB = np.concatenate([NODULE_SCHEME.colours, MALIGNANCY_SCHEME.colours[MALIGNANT_NODULE:]])
MASK_COLORS_RGB.flags.writeable = False


def label_scheme(num_classes: int) -> LabelScheme:
    """The scheme of a lung model with ``num_classes`` classes.

    Raises:
        ValueError: not 6 (nodule masks) or 7 (benign / malignant nodules).
    """
    scheme = LABEL_SCHEMES.get(num_classes)
    if scheme is None:
        raise ValueError(
            f"lung label maps have 6 classes (one nodule class) or 7 (benign and malignant nodules); got {num_classes}"
        )
    return scheme


def label_names(num_classes: int) -> tuple[str, ...]:
    """Class names of a model with ``num_classes`` classes (``class_<i>`` for a model outside the lung schemes)."""
    scheme = LABEL_SCHEMES.get(num_classes)
    return scheme.names if scheme else tuple(f"class_{i}" for i in range(num_classes))


def mask_to_rgb(mask: np.ndarray, malignancy: bool = False) -> np.ndarray:
    """Colour a label map (values 0-6) for display; ``malignancy=True`` shows benign nodules (5) in yellow."""
    colours = MALIGNANCY_SCHEME.colours if malignancy else MASK_COLORS_RGB
    if mask.max(initial=0) >= len(colours):
        raise ValueError(f"mask values must be 0-{len(colours) - 1}, found {mask.max()}")
    return colours[mask]
