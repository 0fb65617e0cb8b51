"""Which mask each synthetic image gets, and the nodule placed in it: a pure function of (seed, global index).

Nothing here depends on the process that asks or on the images before it, which is what makes the output
of a run the same for any number of processes and lets a resumed run continue exactly.

* The image seed and every random choice come from ``numpy`` generators seeded with ``[seed, index, stream]``.
* Masks are dealt like cards: the ``i``-th image takes position ``i mod n`` of a permutation of the ``n``
  usable masks, a fresh permutation per round (seeded with ``[seed, round, stream]``), so every mask is used once per
  round before any is used again.
* With ``nodule_fraction`` set, masks come from the nodule-free ones and exactly ``floor(N * fraction)`` of
  the first ``N`` images get a nodule (image ``i`` does when ``floor((i + 1) f) > floor(i f)``, so any prefix
  of the dataset has the asked share too). The nodule is a disc with a diameter drawn uniformly from the
  dataset's range, placed where the whole disc lies inside a lung.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..ct import LABEL_SCHEMES, LEFT_LUNG, RIGHT_LUNG
from ..inpainting.nodule_insertion import disc_mask, edit_label_map
from .mask_source import MaskSource
from .settings import SynthesisSettings

# Independent random streams per image: [seed, index, stream].
PLAN_STREAM, IMAGE_SEED_STREAM, PERMUTATION_STREAM, SAMPLE_STREAM = range(4)
# Masks tried for one nodule before giving up (each with a new diameter).
MAX_PLACEMENT_ATTEMPTS = 100


def image_seed(run_seed: int, index: int) -> int:
    """The seed of image ``index``'s ``torch.Generator`` (63 bits, so it fits an int64 column)."""
    state = np.random.SeedSequence([run_seed, index, IMAGE_SEED_STREAM]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def wants_nodule(index: int, fraction: float | None) -> bool:
    """Whether image ``index`` gets a placed nodule: exactly ``floor(N * fraction)`` of the first ``N`` do."""
    if not fraction:
        return False
    share = Fraction(repr(float(fraction)))  # the decimal the user typed, not its binary approximation
    return (index + 1) * share // 1 > index * share // 1


@dataclass(frozen=True)
class PlacedNodule:
    """A nodule drawn into a mask: its class, centre (row, column) and diameter at the model's size."""

    label: int
    center_px: tuple[int, int]
    diameter_px: float
    diameter_mm: float
    malignancy: str | None

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        return disc_mask(shape, self.center_px, self.diameter_px)

    def record(self) -> dict:
        """The row's ``edit`` column."""
        return {
            "kind": "add_nodule",
            "label": self.label,
            "center_px": [float(v) for v in self.center_px],
            "diameter_px": self.diameter_px,
            "diameter_mm": self.diameter_mm,
            "malignancy": self.malignancy,
        }

    @classmethod
    def from_record(cls, record: dict | None) -> PlacedNodule | None:
        if not record or record.get("kind") in (None, "none"):
            return None
        row, column = record["center_px"]
        return cls(int(record["label"]), (int(row), int(column)), float(record["diameter_px"]),
                   float(record["diameter_mm"]), record.get("malignancy"))


NO_EDIT = {"kind": "none", "label": None, "center_px": None, "diameter_px": None, "diameter_mm": None, "malignancy": None}


@dataclass(frozen=True)
class ImagePlan:
    """What image ``index`` is made from: its seed, the source mask's row and the nodule placed (if any)."""

    index: int
    seed: int
    source_row: int
    nodule: PlacedNodule | None


def apply_edit(label_map: np.ndarray, nodule: PlacedNodule | None) -> np.ndarray:
    """The label map with the placed nodule drawn in (unchanged without one)."""
    if nodule is None:
        return label_map
    return edit_label_map(label_map, nodule.mask(label_map.shape), nodule.label)


def nodule_position(label_map: np.ndarray, diameter_px: float, rng: np.random.Generator) -> tuple[int, int] | None:
    """A random centre where a disc of ``diameter_px`` lies wholly inside a lung; None if there is none.

    The Euclidean distance of a lung pixel to the nearest non-lung pixel (the image border counting as one) must
    exceed the radius: then no pixel of the disc is outside the lungs.
    """
    lung = np.isin(label_map, (LEFT_LUNG, RIGHT_LUNG))
    distance = ndimage.distance_transform_edt(np.pad(lung, 1))[1:-1, 1:-1]
    candidates = np.argwhere(distance > diameter_px / 2)
    if not len(candidates):
        return None
    row, column = candidates[rng.integers(len(candidates))]
    return int(row), int(column)


class MaskSampler:
    """Plans images from a :class:`MaskSource` under the run's settings (see the module docstring)."""

    def __init__(self, settings: SynthesisSettings, source: MaskSource):
        self.settings, self.source = settings, source
        placing = settings.nodule_fraction is not None
        self.pool = np.flatnonzero(source.nodule_free) if placing else np.arange(len(source))
        if not len(self.pool):
            raise ValueError(
                f"--nodule-fraction draws nodule-free masks, and every mask of {source.spec} has a nodule: use the "
                "'healthy' config (the nodule share is then exactly the one asked), or leave --nodule-fraction out"
            )
        if placing and settings.nodule_fraction > 0 and np.isnan(source.pixel_mm[self.pool]).any():
            raise ValueError(
                f"the masks of {source.spec} have no 'spacing' column (pixel size in mm), so nodule sizes in mm "
                "cannot be drawn in pixels; use a dataset made by the lung-diffusers data recipe"
            )

    def nodule_label(self, rng: np.random.Generator) -> tuple[int, str | None]:
        scheme = LABEL_SCHEMES.get(self.settings.num_classes)
        if scheme is None:
            raise ValueError(
                f"placing nodules needs a 6- or 7-class lung model, this one has {self.settings.num_classes}"
            )
        if scheme.tells_malignancy:
            malignancy = "malignant" if rng.random() < self.settings.malignant_fraction else "benign"
            return scheme.nodule_class(malignancy), malignancy
        return scheme.nodule_class(), None

    @lru_cache(maxsize=4)  # noqa: B019 (a sampler lives as long as its run)
    def _permutation(self, round_index: int) -> np.ndarray:
        rng = np.random.default_rng([self.settings.seed, round_index, PERMUTATION_STREAM])
        return self.pool[rng.permutation(len(self.pool))]

    def plan(self, index: int) -> ImagePlan:
        settings = self.settings
        round_index, position = divmod(index, len(self.pool))
        row = int(self._permutation(round_index)[position])
        seed = image_seed(settings.seed, index)
        if not wants_nodule(index, settings.nodule_fraction):
            return ImagePlan(index, seed, row, None)
        rng = np.random.default_rng([settings.seed, index, PLAN_STREAM])
        label, malignancy = self.nodule_label(rng)
        low, high = settings.nodule_diameter_mm
        for _ in range(MAX_PLACEMENT_ATTEMPTS):
            diameter_mm = float(rng.uniform(low, high))
            diameter_px = diameter_mm / float(np.mean(self.source.pixel_mm[row]))
            center = nodule_position(self.source.label_map(row), diameter_px, rng)
            if center is not None:
                return ImagePlan(index, seed, row, PlacedNodule(label, center, diameter_px, diameter_mm, malignancy))
            row = int(self.pool[rng.integers(len(self.pool))])
        raise ValueError(
            f"image {index}: no room for a nodule of {low:g}-{high:g} mm inside the lungs of {MAX_PLACEMENT_ATTEMPTS} "
            "masks; give smaller sizes with --nodule-diameter-mm"
        )

    def label_map(self, plan: ImagePlan) -> np.ndarray:
        return apply_edit(self.source.label_map(plan.source_row), plan.nodule)


def nodule_size_range(
    source: MaskSource, num_classes: int, nodule_fraction: float | None, given: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The diameter range (mm) placed nodules are drawn from: ``given``, else the dataset's reference nodules."""
    if not nodule_fraction:
        return None
    if given is not None:
        return (float(given[0]), float(given[1]))
    diameters = source.nodule_diameters_mm(num_classes)
    if not diameters.size:
        raise ValueError(
            f"no nodule sizes found in {source.spec} (nor in its nodule config): give the range of placed nodules' "
            "diameters with --nodule-diameter-mm MIN MAX"
        )
    return (round(float(diameters.min()), 3), round(float(diameters.max()), 3))
