"""The evaluations' slices load through the one dataset loader (lung_diffusers.data.slice_dataset)."""

from __future__ import annotations

import datasets
from lung_support import write_tiny_recipe

from lung_diffusers.inpainting.evaluation_slices import load_rows


def test_a_rebuilt_recipe_folder_is_read_afresh(tmp_path):
    # datasets keys its cache of a local folder by the folder's name: a folder rebuilt in place (the recipe's
    # --overwrite) would be scored with its old rows.
    recipe, cache = write_tiny_recipe(tmp_path / "recipe"), str(tmp_path / "cache")
    assert {row["patient_id"] for row in load_rows(str(recipe), "healthy", "test", None, 32, cache)} == {"LIDC-IDRI-0001"}
    shard = next((recipe / "data" / "healthy").glob("test-*.parquet"))
    rows = datasets.Dataset.from_parquet(str(shard), cache_dir=str(tmp_path / "parquet-cache"))
    rows.map(lambda row: {"patient_id": "LIDC-IDRI-0004"}).to_parquet(str(tmp_path / "rebuilt.parquet"))
    (tmp_path / "rebuilt.parquet").replace(shard)
    assert {row["patient_id"] for row in load_rows(str(recipe), "healthy", "test", None, 32, cache)} == {"LIDC-IDRI-0004"}
