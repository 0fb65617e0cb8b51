"""Every nodule the data offers: the LIDC reads that LUNA16's reference standard leaves out, added to the slices.

LUNA16's ``annotations.csv`` keeps a nodule of 3 mm or more only when at least 3 of the 4 LIDC readers marked it;
the recipe draws only those. Each reader's own mark of a nodule of 3 mm or more is in ``annotations_excluded.csv``
(with its diameter; -1 marks findings under 3 mm and non-nodules, left out here). Marks within
``max(radius, 3 mm)`` of a reference nodule are other reads of that nodule; the rest, grouped by the same rule,
are nodules fewer than three readers accepted (:func:`lidc_only_nodules`): their centre and diameter are the mean
of their readers' marks, their malignancy the mean rating of the LIDC XML reads that outline them
(:func:`lung_diffusers.data.malignancy.nodule_malignancy`, as the recipe rates its nodules).

The recipe has no rows through these nodules: its nodule-free slices stay more than a radius and a slice away
from every such mark (:mod:`lung_diffusers.data.slice_selection`). So :func:`add_lidc_nodules` reads the scans
and makes their slices as the recipe makes an image (the HU window, then area averaging to the tasks' size), the
nodules placed as the recipe places its own; a slice the recipe already has gets the nodule added. The recipe's
unrated nodules get their rating from the same reads (needed by task (b) only).

On the shared sample (LIDC-IDRI-0001-0003): LUNA16 lists 4 nodules, 3 in LIDC-IDRI-0003 and 1 (23 mm) in
LIDC-IDRI-0001; the reads add a 24 mm nodule of LIDC-IDRI-0002 (2 readers) and a 20 mm one of LIDC-IDRI-0003
(1 reader), both in training patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...ct import HU_WINDOW
from ...data.luna16 import NoduleAnnotation
from ...data.malignancy import MIN_MATCH_RADIUS_MM, NoduleMalignancy
from .nodule_samples import SliceSample, recipe_nodule


@dataclass(frozen=True)
class LidcOnlyNodule:
    """A nodule some LIDC readers marked that LUNA16's reference leaves out.

    Attributes:
        annotation: mean centre and diameter of the readers' marks (LUNA16's form).
        readers: how many readers marked it.
        malignancy: mean rating of the XML reads that outline it.
        patient_id: its patient, as the recipe names them.
        slices: the slice indices that cut it.
    """

    annotation: NoduleAnnotation
    readers: int
    malignancy: NoduleMalignancy
    patient_id: str
    slices: tuple[int, ...]


def _same_nodule(a: NoduleAnnotation, b: NoduleAnnotation) -> bool:
    distance = np.linalg.norm(np.subtract(a.center_mm, b.center_mm))
    return bool(distance <= max(a.radius_mm, b.radius_mm, MIN_MATCH_RADIUS_MM))


def lidc_only_nodules(
    reference: Sequence[NoduleAnnotation], marks: Sequence[NoduleAnnotation]
) -> list[tuple[NoduleAnnotation, int]]:
    """The nodules of ``marks`` (one series' ``annotations_excluded.csv`` rows) that no ``reference`` nodule
    explains, each with how many marks (readers) it groups; see the module docstring."""
    left = [m for m in marks if m.diameter_mm > 0 and not any(_same_nodule(m, r) for r in reference)]
    groups: list[list[NoduleAnnotation]] = []
    for mark in left:
        joined = [g for g in groups if any(_same_nodule(mark, other) for other in g)]
        merged = [mark] + [m for g in joined for m in g]
        groups = [g for g in groups if g not in joined] + [merged]
    nodules = []
    for group in groups:
        center = tuple(float(v) for v in np.mean([m.center_mm for m in group], axis=0))
        diameter = float(np.mean([m.diameter_mm for m in group]))
        nodules.append((NoduleAnnotation(group[0].series_uid, center, diameter), len(group)))
    return sorted(nodules, key=lambda n: n[0].center_mm[2])


def add_lidc_nodules(
    samples: list[SliceSample],
    luna16_root: str | Path,
    image_size: int,
    xml_dir: str | Path | None = None,
    window: Sequence[float] = HU_WINDOW,
) -> tuple[list[SliceSample], list[LidcOnlyNodule]]:
    """``samples`` (recipe slices, ids ``<seriesuid>:<slice index>``) with the LIDC-only nodules of their scans
    added, and those nodules.

    Args:
        samples: recipe slices of any splits; only their scans are read.
        luna16_root: a LUNA16-shaped folder: ``subset*/<seriesuid>.mhd``, ``annotations.csv`` and
            ``annotations_excluded.csv`` (e.g. ``../shared/data/lidc-mini``).
        image_size: the samples' size.
        xml_dir: where the LIDC XML reads are (searched recursively; default ``luna16_root``).
        window: the recipe's HU window (its ``hu_window`` column).

    Raises:
        FileNotFoundError: a folder or annotation file is missing.
    """
    from ...ct import read_ct_volume, window_hu
    from ...data.luna16 import find_annotations, find_excluded_annotations, find_luna16_series, read_luna16_annotations
    from ...data.luna16_dataset import _nodule_columns
    from ...data.malignancy import lidc_reads_from_xml, nodule_malignancy
    from ...data.masks import resize_ct_image
    from ...data.slice_selection import nodule_sections

    root = Path(luna16_root)
    scans = find_luna16_series(root)
    paths = {"annotations.csv": find_annotations(root), "annotations_excluded.csv": find_excluded_annotations(root)}
    for name, path in paths.items():
        if path is None:
            raise FileNotFoundError(f"{root} has no {name}: give the LUNA16 folder that holds it")
    reference = read_luna16_annotations(paths["annotations.csv"])
    marks = read_luna16_annotations(paths["annotations_excluded.csv"])
    by_id = {s.slice_id: s for s in samples}
    patients = {s.slice_id.split(":")[0]: s.patient_id for s in samples if not s.synthetic}
    wanted = sorted(set(patients) & set(scans))
    reads = lidc_reads_from_xml(xml_dir or root, wanted)

    added, out = [], list(samples)
    for uid in wanted:
        extra = lidc_only_nodules(reference.get(uid, []), marks.get(uid, []))
        unrated = [
            n
            for s in samples
            if s.slice_id.startswith(f"{uid}:")
            for n in s.nodules
            if n.malignant is None and n.center_mm
        ]
        if not extra and not unrated:
            continue
        volume = read_ct_volume(scans[uid])
        outlines = reads[uid].outlines if uid in reads else ()
        rating = {a: nodule_malignancy(a, outlines, volume) for a, _ in extra}
        rating.update({a: nodule_malignancy(a, outlines, volume) for a in reference.get(uid, [])})
        _rate_recipe_nodules(out, uid, reference.get(uid, []), rating)
        origin_z, spacing_z = volume.origin_mm[2], volume.spacing_mm[2]
        rows, columns = volume.hu.shape[1:]
        pixel_mm = float(
            np.mean([volume.spacing_mm[1] * rows / image_size, volume.spacing_mm[0] * columns / image_size])
        )
        cut: dict[NoduleAnnotation, list[int]] = {a: [] for a, _ in extra}
        for k in range(volume.hu.shape[0]):
            sections = nodule_sections(k, [a for a, _ in extra], origin_z, spacing_z)
            if not sections:
                continue
            nodules = [
                recipe_nodule(_nodule_columns(volume, s, rating[s.annotation], image_size), 1.0, pixel_mm, uid)
                for s in sections
            ]
            slice_id = f"{uid}:{k}"
            if slice_id in by_id:
                by_id[slice_id].nodules.extend(nodules)
            else:
                # Also the reference nodules this slice cuts, so none of them is left unlabelled.
                nodules += [
                    recipe_nodule(_nodule_columns(volume, s, rating[s.annotation], image_size), 1.0, pixel_mm, uid)
                    for s in nodule_sections(k, reference.get(uid, []), origin_z, spacing_z)
                ]
                image = resize_ct_image(window_hu(volume.hu[k], tuple(window)), image_size)
                sample = SliceSample(image, None, nodules, patients[uid], slice_id)
                out.append(sample)
                by_id[slice_id] = sample
            for s in sections:
                cut[s.annotation].append(k)
        added += [LidcOnlyNodule(a, n, rating[a], patients[uid], tuple(cut[a])) for a, n in extra]
    return out, added


def _rate_recipe_nodules(
    samples: list[SliceSample], uid: str, reference: Sequence[NoduleAnnotation], rating: dict
) -> None:
    """Give the recipe's unrated nodules of scan ``uid`` the rating of their reference nodule (same centre)."""
    from dataclasses import replace

    for sample in samples:
        if not sample.slice_id.startswith(f"{uid}:"):
            continue
        for i, nodule in enumerate(sample.nodules):
            if nodule.malignant is not None or nodule.center_mm is None:
                continue
            match = [a for a in reference if np.linalg.norm(np.subtract(a.center_mm, nodule.center_mm)) < 0.5]
            if match and rating[match[0]].is_malignant is not None:
                sample.nodules[i] = replace(nodule, malignant=rating[match[0]].is_malignant)


def describe(nodules: Sequence[LidcOnlyNodule]) -> list[dict]:
    """The added nodules as report rows."""
    return [
        {
            "patient_id": n.patient_id,
            "center_mm": [round(v, 1) for v in n.annotation.center_mm],
            "diameter_mm": round(n.annotation.diameter_mm, 1),
            "readers": n.readers,
            "malignancy": n.malignancy.average,
            "slices": len(n.slices),
        }
        for n in nodules
    ]
