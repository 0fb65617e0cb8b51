"""What the downstream tasks learn from: slices with their nodules, 32x32 patches and nodule boxes.

Slices come from a recipe dataset (:func:`recipe_slices`: its ``nodules`` column, centres and the diameter each
slice cuts), from a folder written by ``lung-diffusers synthesize`` (:func:`synthetic_slices`: nodules are the
connected components of the map's nodule labels, centre of mass and the diameter of the circle of their area,
:func:`lung_diffusers.evaluation.nodule_placement.drawn_nodules`), and from LIDC reads the recipe leaves out
(:mod:`.lidc_nodules`). All are taken to one size (256 px, where the thesis defines the tasks).

* Task (a): nodule patches centred on each nodule cut of at least ``min_diameter_mm`` (3 mm, LUNA16's smallest
  nodule; the recipe's slice through a nodule's pole can cut 2 mm), and as many non-nodule patches centred on
  random lung pixels whose patch holds no nodule (:func:`lung_patches`; seeded). The thesis took one crop per
  nodule (its centre slice); here every slice that cuts a nodule gives one, as the recipe keeps every such slice.
* Task (b): the same nodule patches labelled benign (mean LIDC rating < 3) or malignant (>= 3), the recipe's
  split; nodules without a rating are left out of (b).
* Task (c): slices with their boxes (:func:`slice_boxes`): the square centred on each nodule, side its diameter
  in that slice (the thesis' boxes, on the slice's own cut); a slice whose only nodules cut less than
  ``min_diameter_mm`` is left out, as its box would be a pixel or two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...ct import LEFT_LUNG, MALIGNANCY_LABEL_NAMES, MALIGNANT_NODULE, NODULE, RIGHT_LUNG
from ...data.malignancy import MALIGNANCY_THRESHOLD
from ...inpainting.evaluation_slices import pixel_mm_of
from .average_precision import square_boxes

IMAGE_SIZE = 256
PATCH_SIZE = 32
MIN_DIAMETER_MM = 3.0
# Patch labels of task (a) and task (b).
NON_NODULE, NODULE_CLASS = 0, 1
BENIGN_CLASS, MALIGNANT_CLASS = 1, 2


@dataclass(frozen=True)
class SliceNodule:
    """One nodule as a slice cuts it.

    Attributes:
        center_px: (row, column) at the slice's size.
        diameter_px: the diameter of the cut, in pixels.
        diameter_mm: the same in mm.
        malignant: mean LIDC rating >= 3, or None when unrated.
        nodule_id: the same for every slice of one nodule (for counting nodules, not slices).
        center_mm: the nodule's world centre (x, y, z) where known (real nodules).
    """

    center_px: tuple[float, float]
    diameter_px: float
    diameter_mm: float
    malignant: bool | None
    nodule_id: str
    center_mm: tuple[float, float, float] | None = None


@dataclass
class SliceSample:
    """One slice at the tasks' size: uint8 lung-window ``image``, bool ``lungs`` (None when unknown), nodules."""

    image: np.ndarray
    lungs: np.ndarray | None
    nodules: list[SliceNodule]
    patient_id: str
    slice_id: str
    synthetic: bool = False

    def counted_nodules(self, min_diameter_mm: float = MIN_DIAMETER_MM) -> list[SliceNodule]:
        return [n for n in self.nodules if n.diameter_mm >= min_diameter_mm]


@dataclass
class PatchSet:
    """Patches with one label each, where each came from (patient, nodule) and whether it is synthetic."""

    patches: np.ndarray
    labels: np.ndarray
    patients: list[str]
    nodule_ids: list[str | None] = field(default_factory=list)
    synthetic: np.ndarray | None = None

    def __post_init__(self):
        self.patches = np.asarray(self.patches, np.uint8).reshape(-1, *np.shape(self.patches)[-2:])
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        if not self.nodule_ids:
            self.nodule_ids = [None] * len(self.labels)
        if self.synthetic is None:
            self.synthetic = np.zeros(len(self.labels), bool)
        if not len(self.patches) == len(self.labels) == len(self.patients) == len(self.nodule_ids):
            raise ValueError("patches, labels, patients and nodule ids must have one entry per patch")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray | Sequence[int]) -> PatchSet:
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        return PatchSet(
            self.patches[keep],
            self.labels[keep],
            [self.patients[i] for i in keep],
            [self.nodule_ids[i] for i in keep],
            self.synthetic[keep],
        )

    @staticmethod
    def concatenate(parts: Iterable[PatchSet]) -> PatchSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            return PatchSet(np.zeros((0, PATCH_SIZE, PATCH_SIZE), np.uint8), np.zeros(0, np.int64), [])
        return PatchSet(
            np.concatenate([p.patches for p in parts]),
            np.concatenate([p.labels for p in parts]),
            [x for p in parts for x in p.patients],
            [x for p in parts for x in p.nodule_ids],
            np.concatenate([p.synthetic for p in parts]),
        )


# ---------------------------------------------------------------------------------------------- slices


def recipe_slices(
    dataset: str,
    split: str,
    image_size: int = IMAGE_SIZE,
    configs: Sequence[str] = ("nodule", "healthy"),
    cache_dir: str | None = None,
    max_healthy: int | None = None,
) -> list[SliceSample]:
    """Every slice of ``split`` of the recipe dataset's ``configs`` (a config without that split gives none);
    with ``max_healthy``, that many of the ``healthy`` config's slices, spread evenly over the split (full LUNA16
    has some 30,000 nodule-free slices, and the tasks draw only as many as there are nodules)."""
    from ...data.slice_dataset import load_slice_dataset
    from ...inpainting.evaluation_slices import spread_rows

    samples = []
    for config in configs:
        if split not in _split_names(dataset, config, cache_dir):
            continue
        rows = load_slice_dataset(dataset, [config], split, cache_dir)
        for column in ("image", "mask", "patient_id"):
            if column not in rows.column_names:
                raise ValueError(f"config {config!r} of {dataset} has no {column!r} column: not a recipe dataset")
        if config == "healthy" and max_healthy is not None:
            rows = rows.select(spread_rows(len(rows), max_healthy))
        samples += [_sample_of_row(row, image_size, synthetic=False) for row in rows]
    return samples


def synthetic_slices(folder: str | Path, image_size: int = IMAGE_SIZE) -> list[SliceSample]:
    """The slices of a ``lung-diffusers synthesize`` output folder, their nodules read from the label maps."""
    from ...synthesis.dataset_files import load_synthetic_dataset

    rows, settings = load_synthetic_dataset(folder)
    if "synthetic" not in rows.column_names or not all(rows["synthetic"]):
        raise ValueError(f"{folder}: every row of a synthetic dataset must have synthetic=True")
    # The generator's label scheme, not the source masks' config: a 7-class model placing nodules on 'healthy'
    # masks paints them benign (5) or malignant (6).
    seven_classes = settings["num_classes"] == len(MALIGNANCY_LABEL_NAMES)
    return [_sample_of_row(row, image_size, synthetic=True, seven_classes=seven_classes) for row in rows]


def _split_names(dataset: str, config: str, cache_dir: str | None) -> set[str]:
    import datasets

    try:
        builder = datasets.load_dataset_builder(str(dataset), config, cache_dir=cache_dir)
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"cannot read config {config!r} of dataset {dataset!r}: {error}") from error
    return set((builder.config.data_files or {}).keys())


def _sample_of_row(row: dict, image_size: int, synthetic: bool, seven_classes: bool = False) -> SliceSample:
    from ...data.slice_dataset import resized_slice
    from ..nodule_placement import drawn_nodules

    stored = np.asarray(row["mask"]).shape[0]
    image, labels = resized_slice(row, image_size)
    scale = image_size / stored
    pixel_mm = pixel_mm_of(row) / scale
    spacing = float(np.mean(pixel_mm))
    slice_id = (
        f"synthetic:{row.get('global_index')}"
        if synthetic
        else f"{row.get('seriesuid') or row['patient_id']}:{row.get('slice_index')}"
    )
    nodules = []
    if synthetic:
        # The map is what was drawn: a source nodule can vanish when a mask shrinks, and placed nodules are new.
        for index, (pixels, diameter_mm) in enumerate(drawn_nodules(labels, (NODULE, MALIGNANT_NODULE), pixel_mm)):
            center = np.argwhere(pixels).mean(axis=0)
            label = int(np.bincount(labels[pixels]).argmax())
            malignant = (label == MALIGNANT_NODULE) if seven_classes else None
            nodules.append(
                SliceNodule(tuple(center), diameter_mm / spacing, diameter_mm, malignant, f"{slice_id}:{index}")
            )
    else:
        owner = row.get("seriesuid") or row["patient_id"]
        nodules = [recipe_nodule(entry, scale, spacing, owner) for entry in row.get("nodules") or []]
    return SliceSample(
        image=image,
        lungs=np.isin(labels, (LEFT_LUNG, RIGHT_LUNG)),
        nodules=nodules,
        patient_id=str(row.get("patient_id") or ""),
        slice_id=slice_id,
        synthetic=synthetic,
    )


def recipe_nodule(entry: dict, scale: float, pixel_mm: float, owner: str) -> SliceNodule:
    """A nodule of the recipe's ``nodules`` column (stored pixels), at a size ``scale`` times the stored one whose
    pixels are ``pixel_mm`` wide; ``owner`` (series or patient) makes its id."""
    diameter_mm = float(entry.get("drawn_diameter_mm") or entry["diameter_mm"])
    rating = entry.get("malignancy")
    center_mm = entry.get("center_mm")
    return SliceNodule(
        # Pixel centres: stored index i covers [i, i + 1), so scale i + 0.5.
        tuple((np.asarray(entry["center_px"], np.float64) + 0.5) * scale - 0.5),
        diameter_mm / pixel_mm,
        diameter_mm,
        None if rating is None else rating >= MALIGNANCY_THRESHOLD,
        f"{owner}:" + ",".join(f"{v:.1f}" for v in (center_mm or entry["center_px"])),
        tuple(float(v) for v in center_mm) if center_mm else None,
    )


# ---------------------------------------------------------------------------------------------- patches


def crop_patch(image: np.ndarray, center_px: Sequence[float], size: int = PATCH_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` patch centred on ``center_px`` (rounded); outside the image reads 0 (air)."""
    row, column = (int(round(v)) - size // 2 for v in center_px)
    padded = np.pad(image, size, constant_values=0)
    return padded[row + size : row + 2 * size, column + size : column + 2 * size].copy()


def nodule_patches(
    samples: Sequence[SliceSample], size: int = PATCH_SIZE, min_diameter_mm: float = MIN_DIAMETER_MM, task: str = "a"
) -> PatchSet:
    """A patch centred on every nodule cut of at least ``min_diameter_mm``: label 1 for task (a); for task (b)
    1 benign, 2 malignant, unrated nodules left out."""
    patches, labels, patients, ids, synthetic = [], [], [], [], []
    for sample in samples:
        for nodule in sample.counted_nodules(min_diameter_mm):
            if task == "b" and nodule.malignant is None:
                continue
            label = NODULE_CLASS if task == "a" else MALIGNANT_CLASS if nodule.malignant else BENIGN_CLASS
            patches.append(crop_patch(sample.image, nodule.center_px, size))
            labels.append(label)
            patients.append(sample.patient_id)
            ids.append(nodule.nodule_id)
            synthetic.append(sample.synthetic)
    if not patches:
        return PatchSet(np.zeros((0, size, size), np.uint8), np.zeros(0, np.int64), [])
    return PatchSet(np.stack(patches), np.asarray(labels), patients, ids, np.asarray(synthetic, bool))


def lung_patches(
    samples: Sequence[SliceSample], count: int, rng: np.random.Generator, size: int = PATCH_SIZE
) -> PatchSet:
    """``count`` non-nodule patches: a random slice with known lungs, a random lung pixel of it as the centre,
    kept when the patch overlaps no nodule's box (of any size). Label 0.

    Raises:
        ValueError: no slice has lungs, or too few nodule-free places were found.
    """
    usable = [s for s in samples if s.lungs is not None and s.lungs.any()]
    if count and not usable:
        raise ValueError("no slice with lungs to draw non-nodule patches from")
    patches, patients, synthetic = [], [], []
    attempts = 0
    while len(patches) < count:
        attempts += 1
        if attempts > 50 * count + 100:
            raise ValueError(
                f"found only {len(patches)} of {count} nodule-free lung patches; the lungs are full of nodules"
            )
        sample = usable[rng.integers(len(usable))]
        lung_pixels = np.argwhere(sample.lungs)
        center = lung_pixels[rng.integers(len(lung_pixels))]
        if any(
            np.all(np.abs(center - np.asarray(n.center_px)) < size / 2 + n.diameter_px / 2) for n in sample.nodules
        ):
            continue
        patches.append(crop_patch(sample.image, center, size))
        patients.append(sample.patient_id)
        synthetic.append(sample.synthetic)
    if not patches:
        return PatchSet(np.zeros((0, size, size), np.uint8), np.zeros(0, np.int64), [])
    return PatchSet(np.stack(patches), np.zeros(count, np.int64), patients, [], np.asarray(synthetic, bool))


def patch_set(
    samples: Sequence[SliceSample],
    task: str,
    rng: np.random.Generator,
    size: int = PATCH_SIZE,
    min_diameter_mm: float = MIN_DIAMETER_MM,
) -> PatchSet:
    """Task (a) or (b): the nodule patches of ``samples`` and as many non-nodule lung patches (balanced, as the
    thesis' 1,139 + 1,139 crops)."""
    if task not in ("a", "b"):
        raise ValueError(f"patch tasks are 'a' and 'b', got {task!r}")
    nodules = nodule_patches(samples, size, min_diameter_mm, task)
    return PatchSet.concatenate([nodules, lung_patches(samples, len(nodules), rng, size)])


# ---------------------------------------------------------------------------------------------- boxes


def slice_boxes(sample: SliceSample, min_diameter_mm: float = MIN_DIAMETER_MM) -> np.ndarray:
    """Task (c)'s ground truth: ``(N, 4)`` squares centred on the nodules, side their diameter in this slice."""
    nodules = sample.counted_nodules(min_diameter_mm)
    return square_boxes([n.center_px for n in nodules], [n.diameter_px for n in nodules])


def localisation_slices(
    samples: Sequence[SliceSample],
    rng: np.random.Generator,
    nodule_free_per_nodule_slice: float = 1.0,
    min_diameter_mm: float = MIN_DIAMETER_MM,
) -> list[SliceSample]:
    """Task (c)'s slices: every slice with a nodule cut of at least ``min_diameter_mm``, and a seeded draw of
    nodule-free slices (``nodule_free_per_nodule_slice`` per nodule slice), so that false positives on healthy
    lungs count. Slices whose only nodules are smaller are left out."""
    with_nodules = [s for s in samples if s.counted_nodules(min_diameter_mm)]
    free = [s for s in samples if not s.nodules]
    wanted = min(len(free), int(round(nodule_free_per_nodule_slice * len(with_nodules))))
    chosen = sorted(rng.choice(len(free), wanted, replace=False).tolist()) if wanted else []
    return with_nodules + [free[i] for i in chosen]
