"""End to end: dataset_scripts/prepare_luna16.py on the three real scans, loaded back with datasets."""

import io
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image

from lung_diffusers.data.ct_io import read_ct_volume, window_hu
from lung_diffusers.data.luna16_dataset import PrepareSettings, prepare_luna16_dataset, read_series_records
from lung_diffusers.data.lung_segmentation import segment_lungs_and_trachea
from lung_diffusers.data.masks import BENIGN_NODULE, BODY, LEFT_LUNG, MALIGNANT_NODULE, NODULE, RIGHT_LUNG, body_mask
from lung_diffusers.data.slice_recipe import label_slice

pytestmark = pytest.mark.slow


def _rows_by_slice(folder, config):
    """{(series_uid, slice_index): row} over every shard of a config, rows as stored (PNG bytes)."""
    rows = {}
    for shard in sorted((folder / "data" / config).glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            rows[(row["series_uid"], row["slice_index"])] = row
    return rows


def _decode(png_bytes):
    return np.array(Image.open(io.BytesIO(png_bytes)))


def test_the_script_reports_time_per_series(prepared_dataset, sample_series):
    _, result = prepared_dataset
    for uid in sample_series.values():
        assert f"{uid}: " in result.stderr + result.stdout
    assert "s per series" in result.stdout


def test_healthy_is_the_default_config_and_nodule_the_second(prepared_dataset, datasets_cache):
    output, _ = prepared_dataset
    records = read_series_records(output)
    healthy = datasets.load_dataset(str(output), cache_dir=datasets_cache)
    nodule = datasets.load_dataset(str(output), "nodule", cache_dir=datasets_cache)
    # The three sample patients all hash into train with the default 10 % / 10 % fractions.
    assert list(healthy) == ["train"] and list(nodule) == ["train"]
    assert healthy["train"].num_rows == sum(r.healthy_rows for r in records) > 60
    assert nodule["train"].num_rows == sum(r.nodule_rows for r in records) == 4
    assert isinstance(healthy["train"].features["image"], datasets.Image)
    assert isinstance(nodule["train"].features["malignancy_mask"], datasets.Image)
    row = healthy["train"].filter(lambda r: r["patient_id"] == "LIDC-IDRI-0001")[0]
    assert row["image"].mode == "L" and row["mask"].mode == "L"
    assert row["image"].size == (256, 256) and row["mask"].size == (256, 256)
    # 512 pixels of 0.703125 mm stored as 256.
    assert row["pixel_spacing_mm"] == pytest.approx([1.40625, 1.40625])
    assert row["slice_spacing_mm"] == pytest.approx(2.5)


def test_stored_masks_and_images_equal_the_recipe_exactly(prepared_dataset, datasets_cache, lidc_mini, sample_series):
    output, _ = prepared_dataset
    uid = sample_series["LIDC-IDRI-0001"]
    healthy = datasets.load_dataset(str(output), cache_dir=datasets_cache)["train"]
    rows = healthy.filter(lambda r: r["series_uid"] == uid)
    row = rows[len(rows) // 2]
    volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
    expected = label_slice(volume, row["slice_index"], segment_lungs_and_trachea(volume.hu, volume.spacing_mm), 256)
    assert np.array_equal(np.array(row["mask"]), expected.mask)
    assert np.array_equal(np.array(row["image"]), expected.image)
    assert row["slice_z_mm"] == pytest.approx(volume.slice_z_mm(row["slice_index"]))
    assert row["patient_id"] == "LIDC-IDRI-0001"


def test_healthy_rows_follow_the_healthy_slice_rule(prepared_dataset, lidc_mini):
    output, _ = prepared_dataset
    findings = pd.concat(
        [pd.read_csv(lidc_mini / "annotations.csv"), pd.read_csv(lidc_mini / "annotations_excluded.csv")]
    )
    rows = _rows_by_slice(output, "healthy")
    for (uid, slice_index), row in rows.items():
        assert slice_index % 4 == 0
        series_findings = findings[findings.seriesuid == uid]
        radius = np.where(series_findings.diameter_mm > 0, series_findings.diameter_mm / 2, 1.5)
        gap = np.abs(series_findings.coordZ.to_numpy() - row["slice_z_mm"])
        assert np.all(gap >= radius + row["slice_spacing_mm"] / 2 - 1e-3), (uid, slice_index)
        mask = _decode(row["mask"]["bytes"])
        assert set(np.unique(mask)) <= {0, 1, 2, 3, 4}
        lung_pixels = np.isin(mask, (LEFT_LUNG, RIGHT_LUNG)).sum()
        assert lung_pixels * np.prod(row["pixel_spacing_mm"]) >= 100 * 0.9  # resizing may shave a little


def test_images_are_stored_unflipped_in_lps_orientation(prepared_dataset, sample_series):
    output, _ = prepared_dataset
    rows = _rows_by_slice(output, "healthy")
    both_lungs = 0
    for row in rows.values():
        mask = _decode(row["mask"]["bytes"])
        if (mask == LEFT_LUNG).sum() > 500 and (mask == RIGHT_LUNG).sum() > 500:
            # Columns run toward the patient's left: the left lung is on the image's right.
            assert np.nonzero(mask == LEFT_LUNG)[1].mean() > np.nonzero(mask == RIGHT_LUNG)[1].mean()
            both_lungs += 1
    assert both_lungs > 40
    # Rows run anterior to posterior: LIDC-IDRI-0001's nodule (voxel column 316, row 367) is dorsal, on the left.
    nodule_row = _rows_by_slice(output, "nodule")[(sample_series["LIDC-IDRI-0001"], 90)]
    (nodule,) = nodule_row["nodules"]
    assert (nodule["row"], nodule["column"]) == pytest.approx(
        ((367 + 0.5) / 2 - 0.5, (316.03 + 0.5) / 2 - 0.5), abs=0.01
    )
    image = _decode(nodule_row["image"]["bytes"])
    assert image[round(nodule["row"]), round(nodule["column"])] > window_hu(np.array([-100]))[0]


def test_nodule_rows_mark_every_reference_nodule_with_its_malignancy(prepared_dataset, sample_series):
    output, _ = prepared_dataset
    rows = _rows_by_slice(output, "nodule")
    assert set(rows) == {
        (sample_series["LIDC-IDRI-0001"], 90),
        (sample_series["LIDC-IDRI-0003"], 75),
        (sample_series["LIDC-IDRI-0003"], 83),
        (sample_series["LIDC-IDRI-0003"], 84),
    }
    for key, row in rows.items():
        mask = _decode(row["mask"]["bytes"])
        malignancy_mask = _decode(row["malignancy_mask"]["bytes"])
        assert set(np.unique(mask)) <= set(range(6)) and BODY in mask and NODULE in mask
        # The two 0003 nodules 2.7 mm apart in z share slices 83 and 84; both are drawn in each.
        assert len(row["nodules"]) == (2 if key[1] in (83, 84) else 1)
        for nodule in row["nodules"]:
            assert nodule["malignancy_reads"] == 4
            around = np.s_[
                round(nodule["row"]) - 2 : round(nodule["row"]) + 3,
                round(nodule["column"]) - 2 : round(nodule["column"]) + 3,
            ]
            assert (mask[around] == NODULE).any(), (key, nodule)
            expected = MALIGNANT_NODULE if nodule["average_malignancy"] >= 3 else BENIGN_NODULE
            assert set(np.unique(malignancy_mask[around][mask[around] == NODULE])) == {expected}, (key, nodule)
        # Outside the nodules the malignancy map is the plain map.
        assert np.array_equal(malignancy_mask[mask != NODULE], mask[mask != NODULE])
        assert set(np.unique(malignancy_mask[mask == NODULE])) <= {5, 6}


def test_the_dataset_card_credits_lidc_idri_and_luna16(prepared_dataset):
    output, _ = prepared_dataset
    card = (output / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["license"] == ["cc-by-3.0", "cc-by-4.0"]
    configs = {c["config_name"]: c for c in metadata["configs"]}
    assert configs["healthy"]["default"] is True and "default" not in configs["nodule"]
    for text in (
        "LIDC-IDRI",
        "LUNA16",
        "CC BY 3.0",
        "CC BY 4.0",
        "10.7937/K9/TCIA.2015.LO9QL9SX",
        "Setio AAA",
        "Clark K",
    ):
        assert text in card
    assert "anterior to posterior" in card and "every 4th slice" in card


def test_the_contact_sheet_is_a_small_png(prepared_dataset):
    output, _ = prepared_dataset
    sheet = output / "contact_sheet.png"
    assert sheet.stat().st_size < 300_000
    with Image.open(sheet) as image:
        assert image.mode == "RGB" and image.width == 4 * 160


def test_a_killed_run_resumes_to_the_same_rows(prepared_dataset, prepare_script, run_prepare, lidc_mini, tmp_path):
    reference, _ = prepared_dataset
    output = tmp_path / "resumed"
    args = [sys.executable, str(prepare_script), "--luna16-root", str(lidc_mini), "--output", str(output)]
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

    resumed = run_prepare("--luna16-root", str(lidc_mini), "--output", str(output))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{3 - done} series processed" in resumed.stdout
    for config in ("healthy", "nodule"):
        assert _rows_by_slice(output, config) == _rows_by_slice(reference, config)
    assert (output / "README.md").read_text() == (reference / "README.md").read_text()
    assert not list(output.rglob(".*.tmp"))

    again = run_prepare("--luna16-root", str(lidc_mini), "--output", str(output))
    assert again.returncode == 0 and "0 series processed" in again.stdout


def test_resuming_with_other_settings_is_refused(prepared_dataset, run_prepare, lidc_mini):
    output, _ = prepared_dataset
    settings_before = (output / "prepare_settings.json").read_text()
    result = run_prepare("--luna16-root", str(lidc_mini), "--output", str(output), "--image-size", "128")
    assert result.returncode == 2
    assert "other settings (image_size differ" in result.stderr and "new --output" in result.stderr
    assert (output / "prepare_settings.json").read_text() == settings_before


@pytest.fixture(scope="module")
def prepare_main(prepare_script):
    """The script's main(), run in this process (no interpreter start-up per call)."""
    return runpy.run_path(str(prepare_script), run_name="prepare_luna16")["main"]


def test_missing_inputs_are_reported_with_what_to_do(prepare_main, capsys, tmp_path, lidc_mini):
    root = tmp_path / "luna16"
    root.mkdir()
    (root / "subset0").symlink_to(lidc_mini / "subset0")
    output = str(tmp_path / "out")
    assert prepare_main(["--luna16-root", str(root), "--output", output]) == 2
    assert "annotations.csv not found; put LUNA16's annotations.csv there or pass" in capsys.readouterr().err
    shutil.copy(lidc_mini / "annotations.csv", root)
    assert prepare_main(["--luna16-root", str(root), "--output", output]) == 2
    error = capsys.readouterr().err
    assert "annotations_excluded.csv not found" in error and "evaluationScript.zip" in error
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", output, "--series-uid", "1.2.3"]) == 2
    assert "series not found" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", str(tmp_path / "busy")]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert prepare_main(["--luna16-root", str(lidc_mini), "--output", output, "--image-size", "4"]) == 2
    assert "image_size must be between" in capsys.readouterr().err


def test_official_lung_masks_reproduce_the_rows_made_from_them(prepared_dataset, lidc_mini, sample_series, tmp_path):
    reference, _ = prepared_dataset
    uid = sample_series["LIDC-IDRI-0001"]
    volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
    lungs = segment_lungs_and_trachea(volume.hu, volume.spacing_mm)
    labels = np.stack(
        [lungs.slice_labels(k, volume.hu[k], body_mask(window_hu(volume.hu[k]))) for k in range(volume.hu.shape[0])]
    )
    # seg-lungs-LUNA16 values: 3 and 4 for the lungs, 5 for the trachea.
    official = np.choose(labels, [0, 0, 3, 4, 5]).astype(np.uint8)
    masks_dir = tmp_path / "seg-lungs-LUNA16"
    masks_dir.mkdir()
    image = sitk.GetImageFromArray(official)
    image.SetOrigin(volume.origin_mm)
    image.SetSpacing(volume.spacing_mm)
    sitk.WriteImage(image, str(masks_dir / f"{uid}.mhd"), useCompression=True)

    output = tmp_path / "from-official-masks"
    result = prepare_luna16_dataset(
        lidc_mini,
        output,
        PrepareSettings(lung_masks="seg-lungs-LUNA16"),
        series_uids=[uid],
        lung_masks_dir=masks_dir,
        log=lambda line: None,
    )
    assert result.processed == [uid]
    expected = {key: row for key, row in _rows_by_slice(reference, "healthy").items() if key[0] == uid}
    assert _rows_by_slice(output, "healthy") == expected
    assert "official LUNA16 `seg-lungs-LUNA16` masks" in (output / "README.md").read_text()
    record = json.loads((output / "series" / f"{uid}.json").read_text())
    assert record["healthy_rows"] == len(expected)
