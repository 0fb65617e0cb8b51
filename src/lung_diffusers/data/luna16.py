"""Finding LUNA16 scans and reading the LUNA16 annotation CSVs.

LUNA16 layout (as unpacked from the challenge download)::

    <root>/subset0/<seriesuid>.mhd (+ .raw or .zraw)   ... subset9/
    <root>/annotations.csv                              reference-standard nodules (or CSVFILES/)
    <root>/evaluationScript/annotations/annotations_excluded.csv   (or <root>/, or CSVFILES/)
    <root>/seg-lungs-LUNA16/<seriesuid>.mhd             official lung masks (optional here)

Annotation rows are ``seriesuid,coordX,coordY,coordZ,diameter_mm`` with world coordinates in mm
(LPS). In ``annotations_excluded.csv`` a diameter of -1 marks a finding of unknown size (a nodule
under 3 mm or a non-nodule).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
# Where LUNA16 downloads and common mirrors keep the two CSVs, relative to the LUNA16 folder
# (annotations_excluded.csv comes inside evaluationScript.zip).
ANNOTATIONS_CANDIDATES = (Path("annotations.csv"), Path("CSVFILES") / "annotations.csv")
EXCLUDED_ANNOTATIONS_CANDIDATES = (
    Path("annotations_excluded.csv"),
    Path("CSVFILES") / "annotations_excluded.csv",
    Path("evaluationScript") / "annotations" / "annotations_excluded.csv",
)


@dataclass(frozen=True)
class NoduleAnnotation:
    """One LUNA16 annotation row.

    Attributes:
        series_uid: SeriesInstanceUID of the scan.
        center_mm: world position (x, y, z) in mm, LPS.
        diameter_mm: diameter in mm; -1 for excluded findings of unknown size.
    """

    series_uid: str
    center_mm: tuple[float, float, float]
    diameter_mm: float

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0


def find_luna16_series(luna16_root: str | Path) -> dict[str, Path]:
    """Map each SeriesInstanceUID to its ``subset*/<seriesuid>.mhd`` file under ``luna16_root``.

    Raises:
        FileNotFoundError: ``luna16_root`` is not a folder or holds no ``subset*/*.mhd``.
        ValueError: the same series appears in two subsets.
    """
    root = Path(luna16_root)
    if not root.is_dir():
        raise FileNotFoundError(f"LUNA16 folder not found: {root}")
    series: dict[str, Path] = {}
    for header in sorted(root.glob("subset*/*.mhd")):
        uid = header.name.removesuffix(".mhd")
        if uid in series:
            raise ValueError(f"series {uid} appears twice: {series[uid]} and {header}; remove one copy")
        series[uid] = header
    if not series:
        raise FileNotFoundError(
            f"no LUNA16 scans under {root}: expected subset0/<seriesuid>.mhd ... subset9/; "
            "unzip subset0.zip ... subset9.zip into that folder"
        )
    return series


def read_luna16_annotations(csv_path: str | Path) -> dict[str, list[NoduleAnnotation]]:
    """Read a LUNA16 annotation CSV (``annotations.csv`` or ``annotations_excluded.csv``) by series.

    Duplicate rows (present in the official ``annotations_excluded.csv``) are kept once.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a column is missing or a value is not a number.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"annotation file not found: {csv_path}")
    table = pd.read_csv(csv_path, dtype={"seriesuid": str})
    missing = [column for column in ANNOTATION_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(
            f"{csv_path} lacks column(s) {', '.join(missing)}; a LUNA16 annotation file has the header "
            + ",".join(ANNOTATION_COLUMNS)
        )
    numbers = table[list(ANNOTATION_COLUMNS[1:])].apply(pd.to_numeric, errors="coerce")
    bad_rows = numbers.isna().any(axis=1)
    if bad_rows.any():
        line = int(bad_rows.to_numpy().argmax()) + 2  # 1-based, after the header
        raise ValueError(f"{csv_path} line {line}: coordinates and diameter must be numbers")
    by_series: dict[str, list[NoduleAnnotation]] = defaultdict(list)
    for uid, x, y, z, diameter in table[list(ANNOTATION_COLUMNS)].drop_duplicates().itertuples(index=False):
        by_series[uid].append(NoduleAnnotation(uid, (float(x), float(y), float(z)), float(diameter)))
    return dict(by_series)


def find_annotations(luna16_root: str | Path) -> Path | None:
    """``annotations.csv`` in ``luna16_root`` or ``luna16_root/CSVFILES``, or None."""
    return _first_file(luna16_root, ANNOTATIONS_CANDIDATES)


def find_excluded_annotations(luna16_root: str | Path) -> Path | None:
    """``annotations_excluded.csv`` in one of the places a LUNA16 download keeps it, or None."""
    return _first_file(luna16_root, EXCLUDED_ANNOTATIONS_CANDIDATES)


def _first_file(root: str | Path, candidates: tuple[Path, ...]) -> Path | None:
    for candidate in candidates:
        if (Path(root) / candidate).is_file():
            return Path(root) / candidate
    return None
