"""The dataset card (README.md with ``configs`` YAML) of a prepared LUNA16 slice dataset."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import DatasetCardData

from lung_diffusers.atomic_write import write_text_atomically
from lung_diffusers.ct import MALIGNANCY_LABEL_NAMES
from lung_diffusers.data.dataset_layout import CARD_FILE, PATIENT_SPLITS_FILE, PrepareSettings, SeriesRecord
from lung_diffusers.data.splits import SPLITS

CITATIONS = """\
- Data: Armato III SG, McLennan G, Bidaut L, McNitt-Gray MF, Meyer CR, Reeves AP, et al. (2015).
  Data From LIDC-IDRI [Data set]. The Cancer Imaging Archive. https://doi.org/10.7937/K9/TCIA.2015.LO9QL9SX
- Armato SG III, McLennan G, Bidaut L, McNitt-Gray MF, Meyer CR, Reeves AP, Zhao B, Aberle DR,
  Henschke CI, Hoffman EA, Kazerooni EA, MacMahon H, van Beek EJR, Yankelevitz D, et al. The Lung
  Image Database Consortium (LIDC) and Image Database Resource Initiative (IDRI): A completed
  reference database of lung nodules on CT scans. Medical Physics 38(2):915-931, 2011.
  https://doi.org/10.1118/1.3528204
- Clark K, Vendt B, Smith K, Freymann J, Kirby J, Koppel P, Moore S, Phillips S, Maffitt D,
  Pringle M, Tarbox L, Prior F. The Cancer Imaging Archive (TCIA): Maintaining and Operating a
  Public Information Repository. Journal of Digital Imaging 26(6):1045-1057, 2013.
- Setio AAA, Traverso A, de Bel T, et al. Validation, comparison, and combination of algorithms
  for automatic detection of pulmonary nodules in computed tomography images: The LUNA16
  challenge. Medical Image Analysis 42:1-13, 2017.
"""

_CLASS_MEANINGS = {
    "background": "outside the patient",
    "body": "patient's body: lung-window value > 127 (about -303 HU), holes filled, largest region",
    "left_lung": "patient's left lung (right side of the image)",
    "right_lung": "patient's right lung (left side of the image)",
    "trachea": "trachea and main bronchi",
    "benign_nodule": "`nodule` config: any LUNA16 reference nodule; `malignancy` config: mean LIDC rating < 3",
    "malignant_nodule": "`malignancy` config only: mean LIDC malignancy rating >= 3",
}
_CONFIG_MEANINGS = {
    "healthy": "nodule-free slices through the lungs (default config)",
    "nodule": "the slice through the centre of each LUNA16 reference nodule",
    "malignancy": "the nodule slices whose nodules all have a LIDC rating; nodules 5 = benign, 6 = malignant",
}


def dataset_card(records: Sequence[SeriesRecord], settings: PrepareSettings) -> str:
    """The README.md text: YAML metadata with ``configs`` (``healthy`` the default), then the card."""
    rows = {config: Counter() for config in settings.configs}
    patients = {split: set() for split in SPLITS}
    for record in records:
        patients[record.split].add(record.patient_id)
        for config in settings.configs:
            rows[config][record.split] += record.rows.get(config, 0)
    configs = []
    for config in settings.configs:
        # datasets cannot load a declared split without rows, so only splits with rows are listed.
        splits = [split for split in SPLITS if rows[config][split] > 0]
        if splits:
            entry = {"config_name": config, **({"default": True} if config == "healthy" else {})}
            entry["data_files"] = [{"split": s, "path": f"data/{config}/{s}-*.parquet"} for s in splits]
            configs.append(entry)
    metadata = DatasetCardData(
        license=["cc-by-3.0", "cc-by-4.0"],
        pretty_name="LUNA16 lung CT slices with semantic masks",
        task_categories=["image-to-image", "image-segmentation"],
        size_categories=[_size_category(sum(sum(counter.values()) for counter in rows.values()))],
        tags=[
            "medical",
            "computed-tomography",
            "lung",
            "lung-nodule",
            "LIDC-IDRI",
            "LUNA16",
            "semantic-image-synthesis",
        ],
        configs=configs,
    )
    header = " | ".join(f"{config} rows" for config in settings.configs)
    stats = "\n".join(
        f"| {split} | {len(patients[split])} | {sum(r.split == split for r in records)} | "
        + " | ".join(str(rows[config][split]) for config in settings.configs)
        + " |"
        for split in SPLITS
    )
    meanings = dict(_CONFIG_MEANINGS)
    if settings.nodule_slices == "all":
        meanings["nodule"] = "every slice that cuts a LUNA16 reference nodule"
    config_lines = "\n".join(f"- `{config}`: {meanings[config]}" for config in settings.configs)
    classes = "\n".join(
        f"| {value} | {name} | {_CLASS_MEANINGS[name]} |" for value, name in enumerate(MALIGNANCY_LABEL_NAMES)
    )
    nodules = sum(r.nodules for r in records)
    unrated = sum(r.unrated_nodules for r in records)
    malignancy_note = (
        f" {unrated} of them have no matching LIDC rating; slices showing one are left out of `malignancy`."
        if settings.malignancy
        else ""
    )
    lung_source = (
        "the official LUNA16 `seg-lungs-LUNA16` masks (values 3 and 4 for the lungs, 5 for the trachea), "
        "as in the thesis"
        if settings.lung_mask_source == "seg-lungs-LUNA16"
        else "HU thresholding (-320 HU), 3-D connected components, trachea tracking and a left/right split "
        "(`lung_diffusers.data.lung_segmentation`), because the official LUNA16 lung masks were not given"
    )
    nodule_rows = (
        "gives the slice through its centre, one row per slice"
        if settings.nodule_slices == "center"
        else "gives every slice its sphere cuts, one row per slice (a deviation from the thesis, which used "
        "centre slices only: more nodule rows for training on little data)"
    )
    low, high = settings.window_hu
    return f"""---
{metadata.to_yaml()}
---

# LUNA16 lung CT slices with semantic masks

Axial chest CT slices with per-pixel semantic masks (background, body, left lung, right lung,
trachea, nodule), for training mask-conditioned generative models such as the semantic
diffusion model of *lung-diffusers*. **Derived from LIDC-IDRI / LUNA16** (real patient scans,
de-identified by TCIA); see the licences and required citations below.

```python
from datasets import load_dataset

healthy = load_dataset("path/to/this/folder")            # default config: nodule-free slices
nodule = load_dataset("path/to/this/folder", "nodule")   # slices through LUNA16 reference nodules
```

![A few slices and their masks](contact_sheet.png)

## Contents

{config_lines}

{len(records)} CT scans of {len(set(r.patient_id for r in records))} patients, {nodules} reference nodules.{malignancy_note}

Patients never span two splits. A split is listed for a config only when it has rows.

| split | patients | scans | {header} |
|---|---|---|{"---|" * len(settings.configs)}
{stats}

For comparison, the thesis reports 1,139 nodule slices, 32,040 healthy slices and a 744 / 144
scan split for all of LUNA16 (its own figures, made with a slightly different recipe).

## Columns

| column | meaning |
|---|---|
| `image` | CT slice, PNG mode L, {settings.image_size} x {settings.image_size}: HU window [{low:g}, {high:g}] mapped linearly to 0-255 |
| `mask` | class per pixel (table below), PNG mode L: 0-4 in `healthy`, 0-5 in `nodule`, 0-6 in `malignancy` |
| `seriesuid` | DICOM SeriesInstanceUID (the LUNA16 file name) |
| `patient_id` | LIDC-IDRI patient ID (the series UID if unknown) |
| `slice_index` | index of the axial slice in the scan, 0 = most inferior |
| `slice_z_mm` | world z of the slice centre (mm, LPS) |
| `has_nodule` | whether a reference nodule is drawn in the mask |
| `nodules` | per nodule drawn: LUNA16 centre `center_mm` [x, y, z], `center_px` [row, column] in the stored image, `diameter_mm`, `drawn_diameter_mm` (its disc in this slice), `malignancy` (mean LIDC rating 1-5, or null) |
| `spacing` | `pixel_mm`: [row, column] size of a stored pixel in mm; `original_mm`: the scan's [x, y, z] voxel size |
| `hu_window` | the HU window of `image` |
| `split` | `train` or `test` |
| `lung_mask_source` | `seg-lungs-LUNA16` (official masks) or `hu-threshold` (segmented from HU) |

| value | class | meaning |
|---|---|---|
{classes}

Masks are PNG images whose pixel values are the class numbers (they look black in an image
viewer). Orientation: image rows run from anterior to posterior (LPS y) and columns from the
patient's right to the patient's left (LPS x), unflipped: the usual radiological view.

## How it was made

With `dataset_scripts/prepare_luna16.py` of lung-diffusers, following section 3.2 of the
thesis this project implements:

- **Image**: the slice windowed to [{low:g}, {high:g}] HU, resized to {settings.image_size} x {settings.image_size}
  with area averaging. Pixel spacing is not resampled (it varies by scan, about 0.5-1 mm before resizing).
- **Body**: lung-window value > 127, holes filled, largest connected region.
- **Lungs and trachea**: {lung_source}. Left and right are decided from where each lung lies.
- **Nodules**: each LUNA16 reference nodule (`annotations.csv`: >= 3 mm, accepted by at least
  3 of 4 LIDC readers) {nodule_rows}. In it, every
  reference nodule whose sphere crosses the slice gets a disc of its (cross-section) diameter,
  dilated by 5x5 pixels and thresholded at the mean of two K-means intensity centres.
- **Malignancy**: mean of the LIDC readers' 1-5 ratings of the reads whose outline centroid is
  within the nodule radius (at least 3 mm) of the LUNA16 centre; < 3 benign, >= 3 malignant.
- **Healthy slices**: every {settings.healthy_stride}th slice (counted from the most inferior) farther than
  one radius plus one slice spacing from every nodule of `annotations.csv` and every finding of
  `annotations_excluded.csv` with a positive diameter, showing at least
  {settings.min_lung_area_mm2:g} mm^2 of lung.
- **Resizing masks**: each output pixel takes the class covering most of its area.
- **Splits**: by patient, from a hash of the patient ID (seed {settings.seed}), {settings.test_fraction:g} of
  patients in test on average, at least one patient per split among those of the first run. The
  assignment is kept in `{PATIENT_SPLITS_FILE}`, so scans added later join their patient's split.

## Licence and citations

The CT images and LIDC reads are from LIDC-IDRI, licensed under Creative Commons Attribution 3.0
Unported (CC BY 3.0) by The Cancer Imaging Archive. The nodule annotations are from LUNA16,
licensed under Creative Commons Attribution 4.0 International (CC BY 4.0). This derived dataset is
shared under the same terms: give credit, and cite:

{CITATIONS}
Not for clinical use.
"""


def write_dataset_card(output_dir: str | Path, records: Sequence[SeriesRecord], settings: PrepareSettings) -> Path:
    """Write ``README.md`` (the dataset card) into ``output_dir`` atomically."""
    path = Path(output_dir) / CARD_FILE
    write_text_atomically(path, dataset_card(records, settings))
    return path


def _size_category(rows: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < bound:
            return name
    return "n>1M"
