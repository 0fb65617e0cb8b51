"""End to end: a tiny model pads a dataset on 1 and 2 CPU processes, is killed and resumes, and rows regenerate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from synthesis_support import rows_of, run_in_process, run_killed

from lung_diffusers import is_synthetic
from lung_diffusers.ct import NODULE
from lung_diffusers.scheduler_registry import DEFAULT_SCHEDULER, get_entry

NUM_IMAGES, BATCH_SIZE = 10, 4  # the standard run: batches of 4, 4 and 2


def test_two_processes_really_ran_and_shared_the_batches(two_process_run):
    logs = [json.loads(p.read_text()) for p in sorted((two_process_run.output / "logs").glob("*-process-*.json"))]
    assert [log["process_index"] for log in logs] == [0, 1]
    assert all(log["num_processes"] == 2 for log in logs)
    # Process k takes batches k, k + 2, ...: each made its own shards, together all of them, none twice.
    assert [log["batches"] for log in logs] == [[0, 2], [1]]
    assert "on 2 process(es)" in two_process_run.stdout


def test_one_and_two_processes_give_the_same_rows(reference_run, two_process_run):
    one, two = rows_of(reference_run), rows_of(two_process_run.output)
    assert len(one) == len(two) == NUM_IMAGES
    for a, b in zip(one, two):
        assert a == b  # every column, the PNG bytes of image and mask included


def test_the_dataset_loads_with_its_metadata_and_marked_images(two_process_run, inputs, tmp_path):
    import datasets

    dataset = datasets.load_dataset(str(two_process_run.output), split="train", cache_dir=str(inputs.cache))
    assert len(dataset) == NUM_IMAGES
    assert dataset["global_index"] == list(range(NUM_IMAGES))
    assert all(dataset["synthetic"])
    row = dataset[0]
    assert row["checkpoint"] == str(inputs.checkpoint) and row["checkpoint_revision"] is None
    # No --scheduler: the package's default at the first stage's size, recorded by class.
    assert len(row["checkpoint_sha256"]) == 64 and row["scheduler"] == get_entry(DEFAULT_SCHEDULER).class_name
    assert (row["num_inference_steps"], row["guidance_scale"], row["run_seed"]) == (4, 1.0, 3)
    assert row["source_mask"]["config"] == "healthy" and row["source_mask"]["split"] == "train"
    assert row["image"].size == row["mask"].size == (32, 32)
    # The real dataset's columns are kept: a detector's loader reads a padded dataset as it reads the real one.
    assert {"seriesuid", "patient_id", "slice_index", "has_nodule", "nodules", "spacing"} <= set(dataset.column_names)
    assert [(r["batch_index"], r["batch_size"], r["batch_position"]) for r in dataset] == [
        (b, n, p) for b, n in ((0, 4), (1, 4), (2, 2)) for p in range(n)
    ]
    assert len(set(dataset["seed"])) == NUM_IMAGES

    # The images are the bytes save_synthetic_png writes: the synthetic mark survives into the dataset.
    raw = dataset.cast_column("image", datasets.Image(decode=False))
    for index, value in enumerate(raw["image"]):
        path = tmp_path / f"{index}.png"
        path.write_bytes(value["bytes"])
        assert is_synthetic(path)

    card = (two_process_run.output / "README.md").read_text()
    assert "This dataset is synthetic" in card and "no image is a scan of a patient" in card
    assert "| 5 | nodule | 5 |" in card  # counts per class
    assert "diameter (mm)" in card  # nodule sizes
    assert is_synthetic(two_process_run.output / "contact_sheet.png")


def test_placed_nodules_follow_the_settings(reference_run):
    rows = rows_of(reference_run)
    placed = [r for r in rows if r["edit"]["kind"] == "add_nodule"]
    assert [r["global_index"] for r in placed] == [1, 3, 5, 7, 9]  # exactly half, spread evenly
    settings = json.loads((reference_run / "synthesis_settings.json").read_text())
    low, high = settings["nodule_diameter_mm"]
    assert (low, high) == (6.0, 14.0)  # the reference nodules' range (of the nodule config: healthy has none)
    for row in placed:
        assert low <= row["edit"]["diameter_mm"] <= high
        assert row["has_nodule"] and row["nodules"][-1]["diameter_mm"] == pytest.approx(row["edit"]["diameter_mm"])
    for row in rows:
        if row["edit"]["kind"] == "none":
            assert not row["has_nodule"] and row["nodules"] == []


def test_a_row_regenerates_bit_exactly_from_its_metadata(two_process_run, inputs):
    import datasets

    from lung_diffusers.synthesis import rebuild_label_map, regenerate_row

    dataset = datasets.load_dataset(str(two_process_run.output), split="train", cache_dir=str(inputs.cache))
    stored = dataset.cast_column("image", datasets.Image(decode=False))
    # Row 5 was made by process 1 (batch 1, position 1); here one process redoes its batch.
    assert regenerate_row(dataset, 5) == stored[5]["image"]["bytes"]
    for index in (1, 5):  # placed nodules: the mask is rebuilt from the source row and the edit
        rebuilt = rebuild_label_map(dataset[index], cache_dir=str(inputs.cache))
        np.testing.assert_array_equal(rebuilt, np.asarray(dataset[index]["mask"]))
        assert (rebuilt >= NODULE).any()


def test_a_sigkilled_run_resumes_without_duplicates_or_gaps(reference_run, inputs, tmp_path):
    output = tmp_path / "out"
    argv = inputs.argv(output)
    killed = run_killed(argv, inputs.cache, kill_at=1)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # Batch 0 is done; batch 1's shard was written to its staging file and never renamed into place.
    assert sorted(p.name for p in (output / "shards").glob("batch-*.parquet")) == ["batch-000000.parquet"]
    assert list((output / "shards").glob(".batch-000001.parquet.*.tmp.parquet"))
    assert not (output / "data").exists()

    result = run_in_process(argv)
    assert result.batches == [1, 2]  # only what was missing
    assert not list(output.rglob(".*.tmp*"))  # the staged file of the killed run is gone
    assert rows_of(output) == rows_of(reference_run)

    # The merge can be re-run, also after data/ was lost: nothing is generated again.
    shutil.rmtree(output / "data")
    again = run_in_process(argv)
    assert again.batches == [] and rows_of(output) == rows_of(reference_run)


def test_a_run_resumes_with_its_inputs_spelled_another_way_from_another_folder(inputs, tmp_path, monkeypatch):
    """Started with relative paths, resumed with absolute ones or from another folder: the same run, because the
    checkpoint and the masks are compared by content, and every row names them as the first launch did."""
    import os

    import pyarrow.parquet as pq
    from synthesis_support import synthesize_argv

    first, other = tmp_path / "first", tmp_path / "other" / "folder"
    first.mkdir()
    other.mkdir(parents=True)
    output = first / "out"

    def argv(spell) -> list[str]:
        return synthesize_argv(spell(inputs.checkpoint), f"{spell(inputs.masks)}:healthy", spell(output), inputs.cache,
                               num_images=4, batch_size=2, steps=1)

    monkeypatch.chdir(first)
    assert run_in_process(argv(lambda p: os.path.relpath(p, first))).batches == [0, 1]
    made = pq.read_table(output / "shards" / "batch-000001.parquet").to_pylist()
    assert made[0]["checkpoint"] == os.path.relpath(inputs.checkpoint, first)

    monkeypatch.chdir(other)
    for spell in (str, lambda p: os.path.relpath(p, other)):  # absolute, then relative to another folder
        (output / "shards" / "batch-000001.parquet").unlink()
        assert run_in_process(argv(spell)).batches == [1]
        assert pq.read_table(output / "shards" / "batch-000001.parquet").to_pylist() == made


def test_a_seven_class_model_places_benign_and_malignant_nodules(inputs, tmp_path):
    output = tmp_path / "out"
    run_in_process(
        inputs.argv(output, checkpoint=inputs.checkpoint_7, num_images=6, batch_size=6, steps=1, nodule_fraction=1.0)
    )
    rows = rows_of(output)
    assert {r["edit"]["malignancy"] for r in rows} == {"benign", "malignant"}
    for row in rows:
        assert row["edit"]["label"] == {"benign": 5, "malignant": 6}[row["edit"]["malignancy"]]
    settings = json.loads((output / "synthesis_settings.json").read_text())
    assert settings["malignant_fraction"] == 0.5 and settings["nodule_diameter_mm"] == [6.0, 14.0]


def test_push_to_hub_uploads_the_dataset_without_the_working_files(reference_run, monkeypatch):
    from huggingface_hub import HfApi

    from lung_diffusers.synthesis import push_synthetic_dataset

    calls = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.setdefault("upload", kw) and "commit-url")
    push_synthetic_dataset(reference_run, "someone/padded-lungs")
    assert calls["create"] == ("someone/padded-lungs", {"repo_type": "dataset", "private": False, "exist_ok": True})
    upload = calls["upload"]
    assert Path(upload["folder_path"]) == reference_run and upload["repo_type"] == "dataset"
    assert {"shards/*", "logs/*"} <= set(upload["ignore_patterns"])
