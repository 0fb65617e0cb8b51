"""``lung-diffusers export-slice``: one real slice of the recipe's dataset as files the RePaint commands read.

The recipe (``dataset_scripts/prepare_luna16.py``) stores slices as Parquet rows. This picks the row of one scan
(series or patient) and slice index and writes, into an output folder under the rule of
:mod:`lung_diffusers.output_folder`:

    slice.png            the stored lung-window slice (8-bit, [-1000, 400] HU -> 0-255), as the recipe made it
    slice.nii.gz         the same slice in HU (float32, within the window) with the row's pixel spacing
    label_map.png        the row's label map (class per pixel, see ``lung_diffusers.labels``)
    label_map.nii.gz     the same, uint8
    README.md            where the slice comes from, its licence and the citations it requires

The slice is real patient data, so it carries no synthetic mark: it carries its LIDC-IDRI licence (CC BY 3.0) and
citation note instead, in the PNG text chunks and the NIfTI ``descrip`` field. Heavy imports happen inside the
functions, so that ``lung-diffusers --help`` stays quick.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from ..ct import HU_WINDOW

TOOL = "export-slice"
SLICE_PNG, SLICE_NIFTI = "slice.png", "slice.nii.gz"
LABEL_MAP_PNG, LABEL_MAP_NIFTI = "label_map.png", "label_map.nii.gz"
NOTE_FILE = "README.md"
# Without a named config, the configs whose labels the 6-class models read (in malignancy 5 means benign).
DEFAULT_CONFIGS = ("nodule", "healthy")
REQUIRED_COLUMNS = ("image", "mask", "seriesuid", "slice_index")
# NIfTI's descrip field holds 79 characters (ITK's limit) and must not start with "SYNTHETIC" (is_synthetic).
NIFTI_LICENCE_NOTE = "Real CT: LIDC-IDRI (CC BY 3.0), LUNA16 (CC BY 4.0); cite both, see README.md"
LICENCE = (
    "LIDC-IDRI images: CC BY 3.0 Unported, The Cancer Imaging Archive (TCIA); "
    "LUNA16 nodule annotations: CC BY 4.0. Give credit and cite LIDC-IDRI and LUNA16."
)
# "config" or "config/split" after the last colon of --dataset.
_CONFIG_SPLIT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")
_LISTED_SCANS = 5


@dataclass(frozen=True)
class DatasetSpec:
    """``DIR[:config[/split]]``; `None` config or split: search them all (configs: :data:`DEFAULT_CONFIGS`)."""

    folder: Path
    config: str | None = None
    split: str | None = None

    @classmethod
    def parse(cls, text: str | Path) -> DatasetSpec:
        text = str(text).strip()
        if not text:
            raise ValueError("--dataset is empty; give the recipe's dataset folder, e.g. outputs/luna16-mini:nodule")
        folder, colon, rest = text.rpartition(":")
        if not colon or not folder or Path(text).exists() or not _CONFIG_SPLIT.match(rest):
            return cls(Path(text))
        config, _, split = rest.partition("/")
        return cls(Path(folder), config, split or None)

    def __str__(self) -> str:
        return f"{self.folder} ({self.config or ' and '.join(DEFAULT_CONFIGS)}, {self.split or 'all splits'})"


@dataclass(frozen=True)
class Shard:
    config: str
    split: str
    path: str


@dataclass(frozen=True)
class RecipeSlice:
    """One row of the recipe's dataset: its stored PNGs and where they come from."""

    image_png: bytes
    mask_png: bytes
    seriesuid: str
    patient_id: str
    slice_index: int
    config: str
    split: str
    pixel_mm: tuple[float, float] | None
    hu_window: tuple[float, float]


def find_recipe_slice(
    dataset: str | Path | DatasetSpec,
    slice_index: int,
    *,
    series_uid: str | None = None,
    patient_id: str | None = None,
) -> RecipeSlice:
    """The row of one scan (series or patient) and slice index in a dataset folder made by the recipe.

    Args:
        dataset: the folder (``prepare_luna16.py --output``), optionally ``DIR:config`` or ``DIR:config/split``.
            Without a config the ``nodule`` and ``healthy`` configs are searched, without a split every split.
        slice_index: the axial slice of the scan (the ``slice_index`` column; 0 = most inferior).
        series_uid, patient_id: which scan; exactly one of them.

    Raises:
        FileNotFoundError: no dataset folder there.
        ValueError: not a recipe dataset, an unknown config or split, an unknown scan (the known ones are named),
            or a slice the dataset does not hold (the slices it holds of that scan are listed).
    """
    import pyarrow.parquet as pq

    spec = dataset if isinstance(dataset, DatasetSpec) else DatasetSpec.parse(dataset)
    if (series_uid is None) == (patient_id is None):
        raise ValueError("name the scan by one of --series (its SeriesInstanceUID) or --patient (e.g. LIDC-IDRI-0001)")
    if isinstance(slice_index, bool) or not isinstance(slice_index, int) or slice_index < 0:
        raise ValueError(f"--slice must be a slice index >= 0 (0 = the most inferior slice), got {slice_index!r}")
    rows = _scan_rows(spec)
    by_series = series_uid is not None
    scan = [row for row in rows if (row[0] if by_series else row[1]) == (series_uid if by_series else patient_id)]
    name = f"series {series_uid}" if by_series else f"patient {patient_id}"
    if not scan:
        raise ValueError(f"no {name} in {spec}; {_known_scans(rows)}; give one of these with --series or --patient")
    series = sorted({row[0] for row in scan})
    if len(series) > 1:
        raise ValueError(f"{name} has {len(series)} scans in {spec.folder} ({', '.join(series)}); pass --series")
    hits = [row for row in scan if row[2] == slice_index]
    if not hits:
        held: dict[str, list[int]] = {}
        for row in scan:
            held.setdefault(row[3].config, []).append(row[2])
        listed = "; ".join(f"{config} {', '.join(map(str, sorted(indices)))}" for config, indices in held.items())
        raise ValueError(f"{name} has no slice {slice_index} in {spec}; its slices there: {listed}")
    shard = hits[0][3]
    table = pq.read_table(shard.path, filters=[("seriesuid", "=", series[0]), ("slice_index", "=", slice_index)])
    row = table.slice(0, 1).to_pylist()[0]
    pixel_mm = (row.get("spacing") or {}).get("pixel_mm")
    return RecipeSlice(
        image_png=_png_bytes(row["image"]),
        mask_png=_png_bytes(row["mask"]),
        seriesuid=series[0],
        patient_id=hits[0][1],
        slice_index=slice_index,
        config=shard.config,
        split=row.get("split") or shard.split,
        pixel_mm=tuple(float(p) for p in pixel_mm) if pixel_mm else None,
        hu_window=tuple(float(v) for v in row.get("hu_window") or HU_WINDOW),
    )


def export_slice(
    dataset: str | Path | DatasetSpec,
    output: str | Path,
    slice_index: int,
    *,
    series_uid: str | None = None,
    patient_id: str | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write one real slice of the recipe's dataset and its label map as PNG and NIfTI (see the module docstring).

    Returns the written files by name (``slice.png``, ``slice.nii.gz``, ``label_map.png``, ``label_map.nii.gz``,
    ``README.md``). Raises as :func:`find_recipe_slice`, and
    :class:`~lung_diffusers.output_folder.OutputFolderError` for an output folder it may not write.
    """
    from ..output_folder import check_output_folder, output_folder

    check_output_folder(output, TOOL, overwrite)  # before the dataset is read
    found = find_recipe_slice(dataset, slice_index, series_uid=series_uid, patient_id=patient_id)
    with output_folder(output, TOOL, overwrite) as out:
        return _write_slice(found, out.path)


def _write_slice(found: RecipeSlice, path) -> dict[str, Path]:
    import cv2
    import numpy as np

    from ..atomic_write import write_text_atomically
    from ..ct import unwindow_hu

    image = cv2.imdecode(np.frombuffer(found.image_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    labels = cv2.imdecode(np.frombuffer(found.mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or labels is None or labels.ndim != 2:
        raise ValueError(f"the stored image or mask of {found.seriesuid} slice {found.slice_index} is not a grey PNG")
    where = f"{found.patient_id}, series {found.seriesuid}, slice {found.slice_index} ({found.config}/{found.split})"
    low, high = found.hu_window
    window = f"lung window [{low:g}, {high:g}] HU -> 0-255"
    written = {
        SLICE_PNG: _save_png(image, path(SLICE_PNG), f"Real CT slice of {where}: {window}"),
        LABEL_MAP_PNG: _save_png(labels, path(LABEL_MAP_PNG), f"Label map of {where} (lung-diffusers recipe classes)"),
        SLICE_NIFTI: _save_nifti(unwindow_hu(image, found.hu_window), path(SLICE_NIFTI), found.pixel_mm),
        LABEL_MAP_NIFTI: _save_nifti(labels.astype(np.uint8), path(LABEL_MAP_NIFTI), found.pixel_mm),
        NOTE_FILE: path(NOTE_FILE),
    }
    write_text_atomically(written[NOTE_FILE], _note(found, image.shape))
    return written


def _save_png(array, target: Path, description: str) -> Path:
    import PIL.Image
    import PIL.PngImagePlugin

    from .. import __version__
    from ..atomic_write import atomic_file
    from .dataset_card import CITATIONS

    info = PIL.PngImagePlugin.PngInfo()
    # No "synthetic" chunk: this is a patient's scan, and lung_diffusers.is_synthetic must say so.
    for key, value in {
        "Description": description,
        "Source": "LIDC-IDRI, via LUNA16 and the lung-diffusers data recipe",
        "Copyright": LICENCE,
        "Comment": f"Cite:\n{CITATIONS}",
        "Software": f"lung-diffusers {__version__}",
    }.items():
        info.add_text(key, value)
    with atomic_file(target) as tmp:
        PIL.Image.fromarray(array).save(tmp, format="PNG", pnginfo=info)
    return target


def _save_nifti(array, target: Path, pixel_mm: tuple[float, float] | None) -> Path:
    import SimpleITK as sitk

    from ..atomic_write import atomic_file

    image = sitk.GetImageFromArray(array)
    if pixel_mm is not None:
        image.SetSpacing((pixel_mm[1], pixel_mm[0]))  # (row, column) mm -> ITK's (x, y)
    image.SetMetaData("ITK_FileNotes", NIFTI_LICENCE_NOTE)  # SimpleITK writes it into descrip
    with atomic_file(target) as tmp:
        sitk.WriteImage(image, str(tmp))
    return target


def _note(found: RecipeSlice, shape: tuple[int, int]) -> str:
    from .dataset_card import CITATIONS

    low, high = found.hu_window
    spacing = f"{found.pixel_mm[0]:g} x {found.pixel_mm[1]:g} mm (row x column)" if found.pixel_mm else "not stored"
    return f"""# A real CT slice: {found.patient_id}, slice {found.slice_index}

Exported by `lung-diffusers {TOOL}` from the lung-diffusers data recipe (`{found.config}` config, `{found.split}`
split). **Real patient data from LIDC-IDRI, not synthetic.** Not for clinical use.

- series (SeriesInstanceUID): {found.seriesuid}
- slice index: {found.slice_index} (0 = the scan's most inferior slice)
- size: {shape[0]} x {shape[1]} px; pixel spacing: {spacing}
- `{SLICE_PNG}`: the recipe's 8-bit lung window ([{low:g}, {high:g}] HU -> 0-255)
- `{SLICE_NIFTI}`: the same slice in HU (float32): within [{low:g}, {high:g}], in steps of {(high - low) / 255:.2f}
- `{LABEL_MAP_PNG}`, `{LABEL_MAP_NIFTI}`: the label map (0 background, 1 body, 2 left lung, 3 right lung,
  4 trachea, 5 nodule; in the `malignancy` config 5 benign and 6 malignant nodule)

## Licence and citations

{LICENCE} This slice is shared under the same terms: give credit, and cite:

{CITATIONS}"""


def _scan_rows(spec: DatasetSpec) -> list[tuple[str, str, int, Shard]]:
    """(series UID, patient ID, slice index, shard) of every row searched: only the id columns are read."""
    import pyarrow.parquet as pq

    rows = []
    for shard in _parquet_shards(spec):
        columns = pq.read_schema(shard.path).names
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{spec.folder} is not the recipe's dataset: {shard.path} has no {', '.join(missing)}")
        # A scan without a patient ID is known by its series UID, as in the recipe.
        patient = "patient_id" if "patient_id" in columns else "seriesuid"
        table = pq.read_table(shard.path, columns=sorted({"seriesuid", patient, "slice_index"})).to_pydict()
        rows += [(s, p, k, shard) for s, p, k in zip(table["seriesuid"], table[patient], table["slice_index"])]
    return rows


def _parquet_shards(spec: DatasetSpec) -> list[Shard]:
    """The Parquet shards of the searched configs and splits, as the dataset card declares them."""
    import datasets

    if not spec.folder.is_dir():
        problem = "is a file, not a folder" if spec.folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"the dataset {spec.folder} {problem}; give the folder that dataset_scripts/prepare_luna16.py wrote"
        )
    try:
        known = datasets.get_dataset_config_names(str(spec.folder))
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"{spec.folder} is not a datasets folder: {error}") from None
    configs = [spec.config] if spec.config else [c for c in DEFAULT_CONFIGS if c in known]
    if (spec.config and spec.config not in known) or not configs:
        wanted = f"no config {spec.config!r}" if spec.config else f"none of the configs {', '.join(DEFAULT_CONFIGS)}"
        raise ValueError(f"{spec.folder} has {wanted} (it has {', '.join(known)}); name one as DIR:config")
    shards = []
    for config in configs:
        data_files = datasets.load_dataset_builder(str(spec.folder), config).config.data_files or {}
        if spec.split is not None and spec.split not in data_files:
            splits = ", ".join(data_files)
            raise ValueError(f"config {config!r} of {spec.folder} has no split {spec.split!r} (it has {splits})")
        for split in [spec.split] if spec.split else sorted(data_files):
            shards += [Shard(config, split, str(f)) for f in data_files[split] if str(f).endswith(".parquet")]
    if not shards:
        raise ValueError(f"{spec} holds no Parquet shards; is it the recipe's output?")
    return shards


def _known_scans(rows: list[tuple[str, str, int, Shard]]) -> str:
    scans = sorted({(patient, series) for series, patient, _, _ in rows})
    listed = "; ".join(f"{p} = {s}" if p != s else s for p, s in scans[:_LISTED_SCANS])
    more = f" and {len(scans) - _LISTED_SCANS} more" if len(scans) > _LISTED_SCANS else ""
    return f"it holds {len(scans)} scans: {listed}{more}"


def _png_bytes(value: dict) -> bytes:
    if value.get("bytes") is not None:
        return value["bytes"]
    return Path(value["path"]).read_bytes()


# ---------------------------------------------------------------------------------------------- the command


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        TOOL,
        help="write a real slice of the recipe's dataset and its label map as PNG and NIfTI (for remove-nodule etc.)",
        description=(
            "Pick the slice of one scan (--series or --patient) and slice index from the dataset prepare_luna16.py "
            f"made, and write {SLICE_PNG} (lung window), {SLICE_NIFTI} (HU, with the pixel spacing), {LABEL_MAP_PNG}, "
            f"{LABEL_MAP_NIFTI} and {NOTE_FILE}. The slice is real LIDC-IDRI data: it carries its licence (CC BY 3.0) "
            "and citation note, not a synthetic mark."
        ),
    )
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="DIR[:config[/split]]",
        help="the recipe's dataset folder; default: search the nodule and healthy configs, every split",
    )
    scan = parser.add_mutually_exclusive_group(required=True)
    scan.add_argument("--series", metavar="UID", help="the scan's SeriesInstanceUID (LUNA16 names its files by it)")
    scan.add_argument("--patient", metavar="ID", help="the scan's patient, e.g. LIDC-IDRI-0003")
    parser.add_argument("--slice", type=int, required=True, metavar="N", help="slice index (0 = most inferior)")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="a new or empty folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier export-slice run in --output"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scan = {"series_uid": args.series, "patient_id": args.patient}
    written = export_slice(args.dataset, args.output, args.slice, **scan, overwrite=args.overwrite)
    print(f"a real CT slice (LIDC-IDRI, CC BY 3.0: cite it, see {written[NOTE_FILE]}), not synthetic:")
    for path in written.values():
        print(path)
    return 0
