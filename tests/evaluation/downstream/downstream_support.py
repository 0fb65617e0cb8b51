"""Tiny recipe-shaped and synthesize-shaped datasets with nodules at known places, for the downstream tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from lung_support import phantom_image, phantom_label_map, write_slice_dataset

SIZE = 64
PIXEL_MM = 2.0
# Where the phantom's nodule sits in slice k of a patient: (row, column), diameter 8 px = 16 mm.
NODULE_CENTER = (32.0, 44.0)
NODULE_DIAMETER_PX = 8.0


def _nodule_slice(rng: np.random.Generator, center=NODULE_CENTER, diameter_px=NODULE_DIAMETER_PX):
    labels = phantom_label_map(SIZE)
    disc = np.hypot(*(np.indices(labels.shape) - np.array(center)[:, None, None])) <= diameter_px / 2
    labels[disc] = 5
    return phantom_image(labels, rng), labels


def recipe_features():
    import datasets

    nodule = {
        "center_mm": datasets.Sequence(datasets.Value("float64")),
        "center_px": datasets.Sequence(datasets.Value("float64")),
        "diameter_mm": datasets.Value("float64"),
        "drawn_diameter_mm": datasets.Value("float64"),
        "malignancy": datasets.Value("float64"),
    }
    return datasets.Features(
        {
            "image": datasets.Image(),
            "mask": datasets.Image(),
            "seriesuid": datasets.Value("string"),
            "patient_id": datasets.Value("string"),
            "slice_index": datasets.Value("int32"),
            "nodules": [nodule],
            "spacing": {"pixel_mm": datasets.Sequence(datasets.Value("float64"))},
        }
    )


def recipe_rows(patient: str, healthy: int, nodules: int, seed: int, malignancy: float | None = 4.0) -> dict:
    """Rows of one patient: ``healthy`` nodule-free phantoms and ``nodules`` phantoms cutting one 16 mm nodule."""
    rng = np.random.default_rng(seed)
    rows = {"healthy": [], "nodule": []}
    for k in range(healthy + nodules):
        has = k >= healthy
        image, labels = _nodule_slice(rng) if has else (lambda m: (phantom_image(m, rng), m))(phantom_label_map(SIZE))
        entry = {
            "center_mm": [float(NODULE_CENTER[1]), float(NODULE_CENTER[0]), 100.0],
            "center_px": list(NODULE_CENTER),
            "diameter_mm": NODULE_DIAMETER_PX * PIXEL_MM,
            "drawn_diameter_mm": NODULE_DIAMETER_PX * PIXEL_MM,
            "malignancy": malignancy,
        }
        rows["nodule" if has else "healthy"].append(
            {
                "image": image,
                "mask": labels,
                "seriesuid": f"series-{patient}",
                "patient_id": patient,
                "slice_index": k,
                "nodules": [entry] if has else [],
                "spacing": {"pixel_mm": [PIXEL_MM, PIXEL_MM]},
            }
        )
    return rows


def write_nodule_recipe(folder: Path) -> Path:
    """A recipe-shaped dataset of 64-px phantoms: train LIDC-IDRI-0002 (benign nodule) and 0003 (malignant), test
    LIDC-IDRI-0001 (malignant); each patient 4 healthy slices and 3 slices through one 16 mm nodule."""
    import PIL.Image

    shards = {"healthy": {"train": [], "test": []}, "nodule": {"train": [], "test": []}}
    for seed, (patient, split, rating) in enumerate(
        [("LIDC-IDRI-0002", "train", 2.0), ("LIDC-IDRI-0003", "train", 4.0), ("LIDC-IDRI-0001", "test", 4.5)]
    ):
        for config, rows in recipe_rows(patient, 4, 3, seed, rating).items():
            shards[config][split] += rows
    for splits in shards.values():
        for rows in splits.values():
            for row in rows:
                row["image"], row["mask"] = PIL.Image.fromarray(row["image"]), PIL.Image.fromarray(row["mask"])
    return write_slice_dataset(folder, shards, recipe_features(), default_config="healthy")


def write_synthetic_dataset(
    folder: Path, patients=("LIDC-IDRI-0002", "LIDC-IDRI-0001"), per_patient: int = 3, num_classes: int = 6
) -> Path:
    """A folder shaped like ``lung-diffusers synthesize`` output: rows with synthetic=True, a nodule drawn in each
    map (label 5, centre (20, 20), 6 px across), patient IDs of the source masks, from a ``num_classes`` model
    whose 7-class maps make every second nodule malignant (6)."""
    import datasets
    import PIL.Image

    rng = np.random.default_rng(7)
    rows = []
    for patient in patients:
        for _ in range(per_patient):
            image, labels = _nodule_slice(rng, center=(32.0, 20.0), diameter_px=6.0)
            if num_classes == 7 and len(rows) % 2:
                labels[labels == 5] = 6
            rows.append(
                {
                    "image": PIL.Image.fromarray(image),
                    "mask": PIL.Image.fromarray(labels),
                    "patient_id": patient,
                    "spacing": {"pixel_mm": [PIXEL_MM, PIXEL_MM]},
                    "synthetic": True,
                    "global_index": len(rows),
                    "source_mask": {"config": "nodule" if num_classes == 6 else "healthy"},
                }
            )
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "mask": datasets.Image(),
            "patient_id": datasets.Value("string"),
            "spacing": {"pixel_mm": datasets.Sequence(datasets.Value("float64"))},
            "synthetic": datasets.Value("bool"),
            "global_index": datasets.Value("int64"),
            "source_mask": {"config": datasets.Value("string")},
        }
    )
    # As synthesize writes it: data/train-<k>-of-<n>.parquet.
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    (folder / "synthesis_settings.json").write_text(json.dumps({"tests": "fake", "num_classes": num_classes}))
    return folder
