"""The output folder of ``lung-diffusers synthesize``: its files, columns, batch shards and the merge.

Output folder (``datasets.load_dataset(output_dir)`` loads it)::

    README.md                               dataset card: synthetic, how it was made, counts per class, nodule sizes
    synthesis_settings.json                 the settings every shard was made with (a rerun must match them)
    data/train-<k>-of-<n>.parquet           the dataset: whole batches, in global order (written by the merge)
    contact_sheet.png                       a random sample of slices and their masks (marked synthetic)
    shards/batch-<b>.parquet                one per global batch, written atomically; its presence marks it done
    logs/launch-<time>[-process-<k>].json   per launch and process: batches made, images/s, process count

A rerun skips the batches whose shard exists, and the merge rebuilds ``data/`` from all shards (it can be
re-run any time). ``shards/`` and ``logs/`` are the run's working files and are not uploaded to the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic_write import atomic_file, remove_stale_temporary_files, write_text_atomically
from ..data.dataset_layout import datasets_progress_bars_off
from .settings import SynthesisSettings

CARD_FILE = "README.md"
SETTINGS_FILE = "synthesis_settings.json"
CONTACT_SHEET = "contact_sheet.png"
SHARDS_DIR = "shards"
DATA_DIR = "data"
LOGS_DIR = "logs"
SPLIT = "train"
# Rows per merged data file (whole batches): about 1000 images, a few MB at 64 px and ~60 MB at 256 px.
ROWS_PER_FILE = 1000
# datasets' row-group size for image data, so the Hub viewer can page through the files.
ROW_GROUP_SIZE = 100

# Columns added to the mask dataset's own.
SYNTHESIS_FEATURES = {
    "synthetic": datasets.Value("bool"),
    "checkpoint": datasets.Value("string"),
    "checkpoint_revision": datasets.Value("string"),
    "checkpoint_sha256": datasets.Value("string"),
    "scheduler": datasets.Value("string"),
    "num_inference_steps": datasets.Value("int32"),
    "guidance_scale": datasets.Value("float64"),
    "seed": datasets.Value("int64"),
    "run_seed": datasets.Value("int64"),
    "global_index": datasets.Value("int64"),
    "batch_index": datasets.Value("int64"),
    "batch_size": datasets.Value("int32"),
    "batch_position": datasets.Value("int32"),
    "torch_threads": datasets.Value("int32"),
    "device": datasets.Value("string"),
    "software": datasets.Value("string"),
    "source_mask": {
        "dataset": datasets.Value("string"),
        "config": datasets.Value("string"),
        "split": datasets.Value("string"),
        "row": datasets.Value("int64"),
        "seriesuid": datasets.Value("string"),
        "slice_index": datasets.Value("int32"),
    },
    # float64 sizes: the disc is redrawn from them, and a float32 diameter could move a pixel across its edge.
    "edit": {
        "kind": datasets.Value("string"),
        "label": datasets.Value("int32"),
        "center_px": datasets.Sequence(datasets.Value("int32"), length=2),
        "diameter_px": datasets.Value("float64"),
        "diameter_mm": datasets.Value("float64"),
        "malignancy": datasets.Value("string"),
    },
}


# Columns of a cascade's rows only (a one-stage dataset keeps its columns as they were).
CASCADE_FEATURES = {
    "upscaler": datasets.Value("string"),
    "upscaler_revision": datasets.Value("string"),
    "upscaler_sha256": datasets.Value("string"),
    "upscaler_num_inference_steps": datasets.Value("int32"),
    "noise_level": datasets.Value("int32"),
    "upscaler_strength": datasets.Value("float64"),
}


def output_features(source_features: datasets.Features, cascade: bool = False) -> datasets.Features:
    """The mask dataset's features (``image`` and ``mask`` as images) plus :data:`SYNTHESIS_FEATURES` (and
    :data:`CASCADE_FEATURES` for a cascade's images)."""
    features = {"image": datasets.Image(), "mask": datasets.Image()}
    features.update({name: f for name, f in source_features.items() if name not in features})
    added = {**SYNTHESIS_FEATURES, **(CASCADE_FEATURES if cascade else {})}
    clash = sorted(set(features) & set(added))
    if clash:
        raise ValueError(
            f"the mask dataset already has column(s) {clash}, which synthesis adds (is it a synthetic dataset?); "
            "use a real mask dataset"
        )
    return datasets.Features({**features, **added})


def shard_path(output_dir: str | Path, batch_index: int) -> Path:
    return Path(output_dir) / SHARDS_DIR / f"batch-{batch_index:06d}.parquet"


def finished_batches(output_dir: str | Path, settings: SynthesisSettings) -> list[int]:
    """Global batches whose shard is written (atomically, so a present shard is complete)."""
    return [b for b in range(settings.num_batches) if shard_path(output_dir, b).is_file()]


def write_shard(output_dir: str | Path, batch_index: int, rows: list[dict], features: datasets.Features) -> Path:
    path = shard_path(output_dir, batch_index)
    with atomic_file(path) as temporary, datasets_progress_bars_off():
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(temporary))
    return path


def prepare_output_folder(output_dir: str | Path, settings: SynthesisSettings) -> None:
    """Create the folder with its settings file, or check that it holds this run (then it resumes).

    Raises:
        ValueError: the folder holds another run's settings, or files of something else.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output {output_dir} is a file; give a folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / SETTINGS_FILE
    if path.is_file():
        try:
            existing = SynthesisSettings.from_json(path.read_text())
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"{path} is not a settings file of this tool ({error}); use a new --output folder") from error
        if existing.cascade and existing.upscaler_strength is None:
            raise ValueError(
                f"{output_dir} holds a cascade run from before synthesize recorded --upscaler-strength (its second "
                "stage ran all its steps, from pure noise), which this version cannot resume; its rows load and "
                "regenerate as they are. Choose a new --output folder"
            )
        changed = settings.differences(existing)
        if changed:
            details = ", ".join(f"{name}: {getattr(existing, name)!r} there, {getattr(settings, name)!r} now" for name in changed)
            raise ValueError(
                f"{output_dir} holds another run ({details}; see {path}). Rerun with that run's options to resume it, "
                "or choose a new --output folder"
            )
    elif any(output_dir.iterdir()):
        raise ValueError(f"{output_dir} is not empty and has no {SETTINGS_FILE}; choose an empty or new --output folder")
    else:
        write_text_atomically(path, settings.to_json())
    remove_stale_temporary_files(output_dir)


def merge_shards(output_dir: str | Path, settings: SynthesisSettings) -> list[Path]:
    """Write ``data/`` from all batch shards, in global order; returns the data files. Safe to re-run.

    Raises:
        ValueError: a batch shard is missing, or does not hold exactly its batch's images.
    """
    output_dir = Path(output_dir)
    missing = [b for b in range(settings.num_batches) if not shard_path(output_dir, b).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} batch(es) are not generated yet (first: {missing[0]}); rerun to finish them")
    per_file = max(1, ROWS_PER_FILE // settings.batch_size)
    groups = [range(start, min(start + per_file, settings.num_batches)) for start in range(0, settings.num_batches, per_file)]
    written = []
    for k, group in enumerate(groups):
        table = pa.concat_tables([_read_shard(output_dir, b, settings) for b in group])
        path = output_dir / DATA_DIR / f"{SPLIT}-{k:05d}-of-{len(groups):05d}.parquet"
        with atomic_file(path) as temporary:
            pq.write_table(table, temporary, row_group_size=ROW_GROUP_SIZE)
        written.append(path)
    for stale in set((output_dir / DATA_DIR).glob("*.parquet")) - set(written):
        stale.unlink()
    return written


def _read_shard(output_dir: Path, batch_index: int, settings: SynthesisSettings) -> pa.Table:
    table = pq.read_table(shard_path(output_dir, batch_index))
    if table.column("global_index").to_pylist() != list(settings.batch_range(batch_index)):
        raise ValueError(f"{shard_path(output_dir, batch_index)} does not hold batch {batch_index}'s images; delete it and rerun")
    return table


def data_files(output_dir: str | Path) -> list[Path]:
    return sorted((Path(output_dir) / DATA_DIR).glob(f"{SPLIT}-*.parquet"))


def load_synthetic_dataset(output_dir: str | Path) -> tuple[datasets.Dataset, dict]:
    """A finished output folder's rows and its settings (``synthesis_settings.json`` as a dict).

    The rows are loaded from the data files, not the folder: ``datasets`` keys a folder's cache by its name only,
    so another (or a redone) folder of the same name would load the old rows.

    Raises:
        FileNotFoundError: not an output folder of ``lung-diffusers synthesize``.
        ValueError: its run has not merged its data files yet.
    """
    output_dir = Path(output_dir)
    if not (output_dir / SETTINGS_FILE).is_file():
        raise FileNotFoundError(
            f"{output_dir} is not an output folder of `lung-diffusers synthesize` (it has no {SETTINGS_FILE})"
        )
    files = data_files(output_dir)
    if not files:
        raise ValueError(f"{output_dir} has no merged data files yet; finish the run (rerun `lung-diffusers synthesize`)")
    with datasets_progress_bars_off():
        rows = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split=SPLIT)
    return rows, json.loads((output_dir / SETTINGS_FILE).read_text())


def write_log(output_dir: str | Path, name: str, record: dict) -> Path:
    path = Path(output_dir) / LOGS_DIR / f"{name}.json"
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


def read_logs(output_dir: str | Path) -> list[dict]:
    """Every launch's and process's log record, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((Path(output_dir) / LOGS_DIR).glob("*.json"))]
