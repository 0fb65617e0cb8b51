"""The masks a synthesis run draws from: one split of one config of a ``datasets`` mask dataset.

Loading checks, before any image is generated, that the masks speak the model's classes: a 6-class model
cannot read the ``malignancy`` config (6 = malignant nodule), a 7-class one reads 5 as *benign* and so cannot
take the ``nodule`` config (5 = any nodule), and masks without lungs are not the recipe's label maps. The
scan that checks this also indexes every mask at the model's size (nodule-free or not, pixel spacing), which
the sampler needs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..ct import LABEL_NAMES, LEFT_LUNG, MALIGNANCY_LABEL_NAMES, NODULE, RIGHT_LUNG, resize_label_map
from ..sources import local_or_hub
from .settings import MaskSpec

# Recipe configs and what their label 5 means; healthy masks (no nodule label) suit 6- and 7-class models.
_CONFIG_NODULE_MEANING = {"nodule": "any nodule", "malignancy": "benign nodule (6: malignant)"}
# Where a healthy split finds nodule sizes: the sibling config with the same split.
_SIZE_CONFIGS = {len(LABEL_NAMES): ("nodule", "malignancy"), len(MALIGNANCY_LABEL_NAMES): ("malignancy", "nodule")}
# Resized masks kept per process: a batch plans and then draws the same few masks.
_CACHED_MAPS = 256


@dataclass
class MaskSource:
    """The masks of one split, indexed at the model's size.

    Attributes:
        spec: dataset, resolved config and split.
        dataset: the split without its ``image`` column; ``mask`` undecoded (PNG bytes).
        image_size: the model's side; every mask is resized to it.
        nodule_free: per row, whether the resized mask has no nodule pixel.
        stored_size: per row, the side of the stored mask.
        pixel_mm: per row, (row, column) pixel spacing in mm at ``image_size`` (NaN without a ``spacing`` column).
        sha256: hash of the masks and their ids, in row order.
    """

    spec: MaskSpec
    dataset: object
    image_size: int
    nodule_free: np.ndarray
    stored_size: np.ndarray
    pixel_mm: np.ndarray
    sha256: str
    cache_dir: str | None = None
    _maps: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.nodule_free)

    def row(self, index: int) -> dict:
        """The source row (all columns but ``image``; ``mask`` as PNG bytes)."""
        return self.dataset[int(index)]

    def label_map(self, index: int) -> np.ndarray:
        """The row's mask resized to the model's size (uint8; majority vote by area, as in training)."""
        index = int(index)
        if index not in self._maps:
            if len(self._maps) >= _CACHED_MAPS:
                self._maps.pop(next(iter(self._maps)))
            self._maps[index] = resize_label_map(decode_mask(self.dataset[index]["mask"]), self.image_size)
        return self._maps[index].copy()

    def nodule_diameters_mm(self, num_classes: int) -> np.ndarray:
        """Diameters (mm) of the reference nodules of this split, or of its sibling nodule config when it has none."""
        diameters = _diameters(self.dataset)
        if diameters.size or self.spec.config is None:
            return diameters
        from ..data.slice_dataset import load_slice_dataset

        for config in _SIZE_CONFIGS.get(num_classes, ()):
            if config == self.spec.config:
                continue
            try:
                sibling = load_slice_dataset(self.spec.dataset, [config], self.spec.split, self.cache_dir)
            except ValueError:
                continue
            diameters = _diameters(sibling)
            if diameters.size:
                return diameters
        return diameters


def _diameters(dataset) -> np.ndarray:
    if "nodules" not in dataset.column_names:
        return np.zeros(0)
    values = [n.get("diameter_mm") for nodules in dataset["nodules"] for n in nodules or ()]
    return np.array([v for v in values if v is not None and np.isfinite(v) and v > 0], np.float64)


def decode_mask(value: dict) -> np.ndarray:
    """A stored mask (``{"bytes", "path"}``) as an integer ``(H, W)`` array."""
    if value.get("bytes") is not None:
        mask = cv2.imdecode(np.frombuffer(value["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
    else:
        mask = cv2.imread(value["path"], cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError("a mask cannot be decoded (not a PNG?)")
    if mask.ndim != 2:
        raise ValueError(f"masks must be single-channel label maps (PNG mode L), got an image of shape {mask.shape}")
    return mask


def resolve_config(spec: MaskSpec, cache_dir: str | None = None) -> MaskSpec:
    """The spec with its config named (the dataset's default config when none was given).

    Raises:
        FileNotFoundError: a local path that does not exist, or neither a local folder nor a reachable Hub repo.
    """
    with local_or_hub(spec.dataset, "--masks") as where:
        if spec.dataset.startswith("~"):
            spec = MaskSpec(str(where), spec.config, spec.split)  # datasets does not expand ~
        if spec.config is not None:
            return spec
        import datasets

        try:
            builder = datasets.load_dataset_builder(spec.dataset, cache_dir=cache_dir)
        except (FileNotFoundError, ValueError) as error:
            raise FileNotFoundError(f"cannot open the mask dataset {spec.dataset!r}: {error}") from error
    return MaskSpec(spec.dataset, builder.config.name, spec.split)


def check_config_classes(config: str, num_classes: int) -> None:
    """Refuse a recipe config whose labels mean something else to a model with ``num_classes`` classes."""
    if num_classes == len(LABEL_NAMES) and config == "malignancy":
        raise ValueError(
            "the 'malignancy' config labels benign (5) and malignant (6) nodules, but this model has 6 classes "
            "(5 = nodule, no 6): use the 'healthy' or 'nodule' config, or a 7-class checkpoint"
        )
    if num_classes == len(MALIGNANCY_LABEL_NAMES) and config == "nodule":
        raise ValueError(
            "the 'nodule' config labels any nodule 5, which this 7-class model reads as benign: use the 'malignancy' "
            "config (5 benign, 6 malignant) or the 'healthy' config with --nodule-fraction"
        )


def load_mask_source(spec: MaskSpec, num_classes: int, image_size: int, cache_dir: str | None = None) -> MaskSource:
    """Load and check one split of a mask dataset, and index its masks at ``image_size``.

    Raises:
        FileNotFoundError: a local path that does not exist, or neither a local folder nor a reachable Hub repo.
        ValueError: the split cannot be loaded or is empty, it has no ``mask`` column, or its masks do not carry
            the model's classes (labels out of range, or no lungs).
    """
    import datasets

    from ..data.slice_dataset import load_slice_dataset

    spec = resolve_config(spec, cache_dir)
    check_config_classes(spec.config, num_classes)
    with local_or_hub(spec.dataset, "--masks"):
        dataset = load_slice_dataset(spec.dataset, [spec.config], spec.split, cache_dir)
    if "mask" not in dataset.column_names:
        raise ValueError(f"the mask dataset {spec} has no 'mask' column (it has {dataset.column_names})")
    if len(dataset) == 0:
        raise ValueError(f"the mask dataset {spec} has no rows")
    if "image" in dataset.column_names:
        dataset = dataset.remove_columns("image")
    dataset = dataset.cast_column("mask", datasets.Image(decode=False))

    digest = hashlib.sha256()
    ids = [c for c in ("seriesuid", "slice_index") if c in dataset.column_names]
    nodule_free, stored, pixel_mm = [], [], []
    labels_seen = np.zeros(256, bool)
    spacing = "spacing" in dataset.column_names
    columns = ["mask", *ids, *(["spacing"] if spacing else [])]
    for index, row in enumerate(dataset.select_columns(columns)):
        mask = decode_mask(row["mask"])
        if mask.shape[0] != mask.shape[1]:
            raise ValueError(f"row {index} of {spec}: the mask is {mask.shape[1]}x{mask.shape[0]}; masks must be square")
        top = int(mask.max(initial=0))
        if top >= num_classes:
            raise ValueError(
                f"row {index} of the mask dataset {spec} holds class {top}, which this {num_classes}-class model does not "
                f"know (classes 0-{num_classes - 1}); use masks made for this model"
            )
        labels_seen[np.unique(mask)] = True
        resized = resize_label_map(mask, image_size)
        nodule_free.append(not (resized >= NODULE).any())
        stored.append(mask.shape[0])
        scale = mask.shape[0] / image_size
        pixel = (row.get("spacing") or {}).get("pixel_mm") if spacing else None
        pixel_mm.append([v * scale for v in pixel] if pixel else [np.nan, np.nan])
        digest.update(_png_bytes(row["mask"]))
        digest.update(repr([row[c] for c in ids]).encode())
    if not (labels_seen[LEFT_LUNG] or labels_seen[RIGHT_LUNG]):
        raise ValueError(
            f"the masks of {spec} have no lung labels ({LEFT_LUNG} left lung, {RIGHT_LUNG} right lung): they are not "
            "label maps with this model's classes (0 background, 1 body, 2/3 lungs, 4 trachea, 5+ nodules)"
        )
    return MaskSource(
        spec=spec,
        dataset=dataset,
        image_size=image_size,
        nodule_free=np.array(nodule_free, bool),
        stored_size=np.array(stored, np.int64),
        pixel_mm=np.array(pixel_mm, np.float64),
        sha256=digest.hexdigest(),
        cache_dir=cache_dir,
    )


def _png_bytes(value: dict) -> bytes:
    if value.get("bytes") is not None:
        return value["bytes"]
    with open(value["path"], "rb") as handle:
        return handle.read()
