"""The dataset card of a synthetic dataset: it says the data is synthetic, how it was made, and what it holds."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from ..atomic_write import write_text_atomically
from ..data.dataset_card import CITATIONS
from .dataset_files import CARD_FILE, CONTACT_SHEET, DATA_DIR, SETTINGS_FILE, SPLIT
from .settings import STRENGTH_BEFORE_RECORDED, SynthesisSettings
from .summary import DatasetSummary, size_table

TAGS = ["synthetic", "medical", "computed-tomography", "lung", "lung-nodule", "semantic-image-synthesis", "lung-diffusers"]


def source_card_facts(dataset: str) -> tuple[list[str] | str | None, bool]:
    """The mask dataset's licence (from its card's YAML) and whether it derives from LIDC-IDRI; (None, False) if unknown."""
    from huggingface_hub import constants

    path = Path(dataset) / CARD_FILE
    if not path.is_file() and (Path(dataset).exists() or constants.HF_HUB_OFFLINE):
        return None, False
    try:
        card = DatasetCard.load(path) if path.is_file() else DatasetCard.load(dataset, repo_type="dataset")
    except Exception:  # no card, a private repo, no network: the card then says the licence is unknown
        return None, False
    return card.data.get("license"), "LIDC-IDRI" in card.content


def dataset_card(settings: SynthesisSettings, summary: DatasetSummary, has_contact_sheet: bool = True) -> str:
    licence, from_lidc = source_card_facts(settings.masks_dataset)
    metadata = DatasetCardData(
        license=licence or "other",
        pretty_name="Synthetic lung CT slices (lung-diffusers)",
        task_categories=["image-segmentation", "object-detection", "image-to-image"],
        size_categories=[_size_category(summary.images)],
        tags=TAGS,
        configs=[{"config_name": "default", "data_files": [{"split": SPLIT, "path": f"{DATA_DIR}/{SPLIT}-*.parquet"}]}],
    )
    revision = f" at revision `{settings.pipeline_revision}`" if settings.pipeline_revision else ""
    placement = (
        "masks used as they are (no edits)"
        if settings.nodule_fraction is None
        else f"nodule-free masks; a nodule placed inside a lung in {settings.nodule_fraction:g} of the images, "
        f"diameter uniform in {_range(settings.nodule_diameter_mm)} mm"
        + (f", malignant with probability {settings.malignant_fraction:g}" if settings.malignant_fraction is not None else "")
    )
    classes = "\n".join(
        f"| {value} | {name.replace('_', ' ')} | {summary.images_with_class[name]} | {100 * summary.pixel_share[name]:.1f} % |"
        for value, name in enumerate(summary.images_with_class)
    )
    by_class = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in summary.placed.items())
    placed = f"{sum(summary.placed.values())} placed" + (f" ({by_class})" if set(summary.placed) - {"nodule"} else "")
    model, stages = "`LungSDMPipeline`", ""
    if settings.cascade:
        up_revision = f" at revision `{settings.upscaler_revision}`" if settings.upscaler_revision else ""
        strength = STRENGTH_BEFORE_RECORDED if settings.upscaler_strength is None else settings.upscaler_strength
        side = settings.image_size
        model = (
            f"`LungSDMCombinedPipeline`, a two-stage cascade: every image is a {side}-px output of the second stage, "
            f"drawn from the first stage's {settings.low_res_size}-px slice and the {side}-px label map"
        )
        stages = (
            f"| cascade | {side}-px outputs: stage 1 draws {settings.low_res_size} px from the label map reduced by "
            f"`lung_diffusers.cascade.low_res_label_map` (nodules kept), stage 2 (`{settings.upscaler}`{up_revision}, "
            f"weights sha256 `{settings.upscaler_weights_sha256}`) draws {side} px from it with "
            f"{settings.upscaler_num_inference_steps} steps of the same sampler, guidance {settings.guidance_scale:g}, "
            f"noise level {settings.noise_level}, strength {strength:g} (it starts from the first stage's image "
            "upsampled and noised, and runs that share of its steps; 1: all, from pure noise); one seed per image "
            "drives both stages |\n"
        )
    sheet = f"![A random sample of the synthetic slices and their masks]({CONTACT_SHEET})\n\n" if has_contact_sheet else ""
    provenance = (
        f"The masks derive from LIDC-IDRI / LUNA16 scans; cite them as the mask dataset's card asks:\n\n{CITATIONS}"
        if from_lidc
        else "See the mask dataset's card for the licence and citations of the scans its masks come from.\n"
    )
    cascade_columns = (
        "| `upscaler`, `upscaler_revision`, `upscaler_sha256`, `upscaler_num_inference_steps`, `noise_level`, "
        "`upscaler_strength` | the cascade's second stage, as `checkpoint`, and its steps, noise level and strength |\n"
        if settings.cascade
        else ""
    )
    return f"""---
{metadata.to_yaml()}
---

# Synthetic lung CT slices

> **This dataset is synthetic.** Every image was generated by a diffusion model (lung-diffusers'
> {model}) from a label map; **no image is a scan of a patient**. Each row has
> `synthetic = True`, and each image's PNG carries a `synthetic` text chunk
> (`lung_diffusers.is_synthetic`). Synthetic slices can look real and be wrong: use them to pad
> training data for research, never for diagnosis or clinical decisions.

```python
from datasets import load_dataset

padded = load_dataset("path/to/this/folder", split="{SPLIT}")   # image, mask, synthetic, seed, source_mask, edit, ...
```

{sheet}## How it was made

| | |
|---|---|
| images | {settings.num_images} ({settings.image_size} x {settings.image_size}, {settings.num_classes}-class label maps) |
| checkpoint | `{settings.pipeline}`{revision}, weights sha256 `{settings.weights_sha256}` |
| sampler | {settings.scheduler_class} (`--scheduler {settings.scheduler}`), {settings.num_inference_steps} steps, guidance {settings.guidance_scale:g} |
{stages}| seed | {settings.seed}; image `i` uses `torch.Generator().manual_seed(seed_i)`, `seed_i` stored per row |
| batches | {settings.batch_size} images per batch ({settings.num_batches} batches), {settings.torch_threads} torch thread(s) per process, {settings.dtype} |
| masks | `{settings.masks_dataset}`, config `{settings.masks_config}`, split `{settings.masks_split}` ({settings.masks_rows} rows, sha256 `{settings.masks_sha256[:16]}...`) |
| edits | {placement} |

All settings are in `{SETTINGS_FILE}`. Masks are resized to the {'second stage' if settings.cascade else 'model'}'s size by majority vote per pixel area.

## Contents

{summary.images} images from {summary.source_rows} source masks of {summary.source_series} scans.
{summary.images_with_nodules} images show a nodule: {placed}, {summary.images_with_source_nodules} from the source masks.

| value | class | images with it | share of pixels |
|---|---|---|---|
{classes}

Placed nodules:

{size_table(summary.placed_diameters_mm, summary.placed_diameters_px)}

## Columns

The mask dataset's columns, for the synthetic slice: `image` is the synthetic slice (PNG with the
`synthetic` chunk), `mask` the label map it was generated from (at the model's size, with any placed
nodule), `has_nodule` follows that mask, `nodules` lists the source nodules still visible at this size
(`center_px` rescaled) and the placed one (`center_mm` and `malignancy` null), `spacing.pixel_mm` is
rescaled. Source columns such as `seriesuid` and `slice_index` name the source mask. Added columns:

| column | meaning |
|---|---|
| `synthetic` | always true |
| `checkpoint`, `checkpoint_revision`, `checkpoint_sha256` | the generating pipeline (folder or Hub repo), its Hub commit (null for a folder), sha256 of its weights |
{cascade_columns}| `scheduler`, `num_inference_steps`, `guidance_scale` | the sampler |
| `seed`, `run_seed`, `global_index` | the image's generator seed, the run's seed, the image's index in the run |
| `batch_index`, `batch_size`, `batch_position` | the batch the image was generated in, its size and the image's place in it |
| `torch_threads`, `device`, `software` | what the bits depend on |
| `source_mask` | `dataset`, `config`, `split`, `row`, `seriesuid`, `slice_index` of the mask drawn |
| `edit` | `kind` (`none` or `add_nodule`), and for a placed nodule its `label`, `center_px` [row, column], `diameter_px`, `diameter_mm`, `malignancy` (7-class models) |

## Reproducing a row

Each seed and random choice is a function of the run's seed and the image's index, so the rows do not
depend on how many processes made them. On the same hardware, software and thread count, a row is
regenerated bit for bit with its batch:

```python
from datasets import load_dataset
from lung_diffusers.synthesis import regenerate_row

padded = load_dataset("path/to/this/folder", split="{SPLIT}")
png = regenerate_row(padded, 0)   # row 0's PNG bytes, equal to the stored ones (a local checkpoint path is
                                  # read from the folder the run was started in; or pass pipe=...)
```

On other hardware, or in a batch of another size, the same row differs by float rounding
(at most a grey level in the PNG for the checks we ran).

## Licence and source data

{provenance}
Not for clinical use.
"""


def write_dataset_card(output_dir: str | Path, settings: SynthesisSettings, summary: DatasetSummary, has_contact_sheet: bool) -> Path:
    path = Path(output_dir) / CARD_FILE
    write_text_atomically(path, dataset_card(settings, summary, has_contact_sheet))
    return path


def _range(values) -> str:
    low, high = values
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def _size_category(rows: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < bound:
            return name
    return "n>1M"
