"""The data recipe's job on small synthetic scans: splits across runs, --overwrite, settings, imports."""

import io
import json
import math
import re
import subprocess
import sys
import typing

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lung_diffusers.data import dataset_card, dataset_layout, luna16_dataset
from lung_diffusers.data.dataset_layout import PrepareSettings, SeriesRecord
from lung_diffusers.data.luna16_dataset import prepare_luna16_dataset
from lung_diffusers.data.masks import NODULE
from lung_diffusers.data.splits import patient_position, patient_split


def _quiet(line: str) -> None:
    pass


def _nodule_rows(output):
    shards = sorted((output / "data" / "nodule").glob("*.parquet"))
    return {row["slice_index"]: row for shard in shards for row in pq.read_table(shard).to_pylist()}


def _image(column):
    return Image.open(io.BytesIO(column["bytes"]))


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_patients_scan_added_in_a_later_run_joins_the_split_stored_at_creation(synthetic_luna16, tmp_path):
    # P1 and P2 both hash to train, so creating the folder with both moves P2 (the lower position) to
    # test; alone, or beside a patient that hashes to test (P6), P2 would be train.
    assert patient_split("P1") == patient_split("P2") == "train" and patient_split("P6") == "test"
    assert patient_position("P2") < patient_position("P1")
    root = synthetic_luna16({"1.1": ("P1", []), "2.1": ("P2", [])})
    output = tmp_path / "out"
    first = prepare_luna16_dataset(root, output, image_size=32, log=_quiet)
    assert {r.patient_id: r.split for r in first.records} == {"P1": "train", "P2": "test"}

    # P2's second scan arrives with a new patient in a run over other scans.
    synthetic_luna16({"2.2": ("P2", []), "6.1": ("P6", [])})
    second = prepare_luna16_dataset(root, output, image_size=32, series_uids=["2.2", "6.1"], log=_quiet)
    splits = {r.seriesuid: r.split for r in second.records}
    assert splits == {"1.1": "train", "2.1": "test", "2.2": "test", "6.1": "test"}
    assert json.loads((output / "patient_splits.json").read_text()) == {"P1": "train", "P2": "test", "P6": "test"}
    assert (output / "data" / "healthy" / "test-2.2.parquet").is_file()


def test_a_run_leaves_the_callers_datasets_progress_bar_setting_as_it_was(synthetic_luna16, tmp_path):
    root = synthetic_luna16({"1.1": ("P1", [])})
    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    try:
        for enabled in (True, False):
            (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
            prepare_luna16_dataset(root, tmp_path / f"out-{enabled}", image_size=32, log=_quiet)
            assert datasets.utils.logging.is_progress_bar_enabled() is enabled
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()


def test_overwrite_keeps_the_old_dataset_when_every_scan_fails_and_never_touches_user_files(
    synthetic_luna16, prepare_main, capsys, tmp_path
):
    scans = {"1.1": ("P1", [(46.0, 32.0, 15.0, 8.0)]), "2.1": ("P2", [])}
    root = synthetic_luna16(scans)
    output = tmp_path / "out"
    args = ["--luna16-root", str(root), "--output", str(output)]
    assert prepare_main([*args, "--image-size", "32"]) == 0
    (output / "notes.txt").write_text("mine")
    (output / "data" / "healthy" / "notes.txt").write_text("mine too")
    before = _files(output)

    for data_file in (root / "subset0").glob("*.zraw"):
        data_file.write_bytes(data_file.read_bytes()[:100])  # every scan of the new run fails
    capsys.readouterr()
    assert prepare_main([*args, "--image-size", "16", "--overwrite"]) == 1
    out = capsys.readouterr().out
    assert "keeps its earlier dataset" in out and f"{output}: 2 scans in the dataset (" in out
    assert _files(output) == before
    assert {path.name for path in tmp_path.iterdir()} == {"synthetic-luna16", "out"}  # nothing staged left

    synthetic_luna16(scans)  # readable again: the new dataset replaces the tool's files, and only those
    assert prepare_main([*args, "--image-size", "16", "--overwrite"]) == 0
    assert json.loads((output / "prepare_settings.json").read_text())["image_size"] == 16
    shards = sorted((output / "data").rglob("*.parquet"))
    assert shards and all(_image(pq.read_table(s).to_pylist()[0]["image"]).size == (16, 16) for s in shards)
    assert (output / "notes.txt").read_text() == "mine"
    assert (output / "data" / "healthy" / "notes.txt").read_text() == "mine too"
    assert {path.name for path in tmp_path.iterdir()} == {"synthetic-luna16", "out"}


def test_a_run_where_every_scan_fails_reports_no_empty_slice_counts(synthetic_luna16, prepare_main, capsys, tmp_path):
    root = synthetic_luna16({"1.1": ("P1", [])})
    (root / "subset0" / "1.1.zraw").write_bytes(b"")
    assert prepare_main(["--luna16-root", str(root), "--output", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "0 scans in the dataset. This run: 0 processed, 0 already done, 1 failed" in out and "( slices)" not in out


def test_nodule_slices_all_gives_a_row_for_every_slice_that_cuts_a_nodule(synthetic_luna16, tmp_path):
    # A 8 mm nodule centred at z = 15 mm (slice 6) cuts slices 5, 6 and 7 (z = 12.5, 15, 17.5 mm).
    root = synthetic_luna16({"1.1": ("P1", [(46.0, 32.0, 15.0, 8.0)])})
    centre = prepare_luna16_dataset(root, tmp_path / "center", image_size=64, log=_quiet)
    every = prepare_luna16_dataset(root, tmp_path / "all", image_size=64, nodule_slices="all", log=_quiet)
    assert sorted(_nodule_rows(tmp_path / "center")) == [6]
    rows = _nodule_rows(tmp_path / "all")
    assert sorted(rows) == [5, 6, 7]
    cross_section = 2 * math.sqrt(4.0**2 - 2.5**2)
    drawn = {k: row["nodules"][0]["drawn_diameter_mm"] for k, row in rows.items()}
    assert drawn == pytest.approx({5: cross_section, 6: 8.0, 7: cross_section})
    for row in rows.values():
        assert row["has_nodule"] and row["nodules"][0]["diameter_mm"] == pytest.approx(8.0)
        assert NODULE in np.array(_image(row["mask"]))
    assert rows[6]["mask"] == _nodule_rows(tmp_path / "center")[6]["mask"]
    # Healthy rows and the card follow the mode; the settings keep it, so a resume cannot mix the two.
    assert centre.records[0].rows["healthy"] == every.records[0].rows["healthy"]
    assert every.records[0].rows["nodule"] == 3
    assert json.loads((tmp_path / "all" / "prepare_settings.json").read_text())["nodule_slices"] == "all"
    assert "every slice that cuts a LUNA16 reference nodule" in (tmp_path / "all" / "README.md").read_text()
    with pytest.raises(ValueError, match="nodule_slices differ"):
        prepare_luna16_dataset(root, tmp_path / "all", image_size=64, log=_quiet)


def test_settings_and_records_have_their_own_module_and_old_imports_still_work():
    # The card's annotations resolve at run time: no import cycle hidden behind TYPE_CHECKING.
    hints = typing.get_type_hints(dataset_card.dataset_card)
    assert hints["settings"] is PrepareSettings and typing.get_args(hints["records"]) == (SeriesRecord,)
    from lung_diffusers.data import PrepareSettings as exported
    from lung_diffusers.data import read_series_records

    assert exported is luna16_dataset.PrepareSettings is dataset_layout.PrepareSettings
    assert read_series_records is luna16_dataset.read_series_records


def test_the_recipe_imports_neither_torch_nor_diffusers(prepare_script):
    # Each worker process imports the recipe; torch and diffusers would add seconds to each.
    code = f"""
import importlib, pkgutil, runpy, sys
import lung_diffusers.data
for module in pkgutil.iter_modules(lung_diffusers.data.__path__):
    importlib.import_module(f"lung_diffusers.data.{{module.name}}")
runpy.run_path({str(prepare_script)!r}, run_name="__mp_main__")  # as a spawned worker imports it
print(sorted(name for name in ("torch", "diffusers") if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_help_shows_each_default_once_and_no_markup(prepare_main, capsys):
    assert prepare_main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    assert not re.search(r"\(default:[^)]*\)\s*\(default:", text)
    assert ":class:" not in text and "``" not in text
    assert "(default: 0.16)" in text and "--nodule-slices {center,all}" in text
