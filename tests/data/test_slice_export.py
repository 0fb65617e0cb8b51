"""``lung-diffusers export-slice``: a real slice of the recipe's dataset as PNG and NIfTI, with its licence."""

import io
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from lung_diffusers import is_synthetic
from lung_diffusers.cli import main as cli
from lung_diffusers.ct import unwindow_hu
from lung_diffusers.data.luna16_dataset import prepare_luna16_dataset
from lung_diffusers.data.slice_export import DatasetSpec, export_slice
from lung_diffusers.inpainting import read_ct_slice, read_label_slice
from lung_diffusers.output_folder import MANIFEST_NAME

FILES = {"slice.png", "slice.nii.gz", "label_map.png", "label_map.nii.gz", "README.md"}


@pytest.fixture
def recipe(synthetic_luna16, tmp_path):
    """The recipe's output for two phantom scans: P1 with an 8 mm nodule through slice 6, P2 without."""
    root = synthetic_luna16({"1.1": ("P1", [(46.0, 32.0, 15.0, 8.0)]), "2.1": ("P2", [])})
    output = tmp_path / "recipe"
    prepare_luna16_dataset(root, output, image_size=32, log=lambda line: None)
    return output


def run_cli(*args, capsys):
    with pytest.raises(SystemExit) as done:
        cli(["export-slice", *map(str, args)])
    return done.value.code, capsys.readouterr()


def stored_row(recipe, config, seriesuid, slice_index):
    rows = [row for shard in (recipe / "data" / config).glob("*.parquet") for row in pq.read_table(shard).to_pylist()]
    (row,) = [r for r in rows if r["seriesuid"] == seriesuid and r["slice_index"] == slice_index]
    return row


def decoded(png_column):
    return np.asarray(PIL.Image.open(io.BytesIO(png_column["bytes"])))


def test_a_slice_is_written_as_png_and_nifti_in_hu_with_its_licence_and_no_synthetic_mark(recipe, tmp_path, capsys):
    args = ("--dataset", recipe, "--patient", "P1", "--slice", 6, "--output", tmp_path / "s")
    code, printed = run_cli(*args, capsys=capsys)
    assert code == 0 and "not synthetic" in printed.out
    out = tmp_path / "s"
    assert {p.name for p in out.iterdir()} == FILES | {MANIFEST_NAME}
    row = stored_row(recipe, "nodule", "1.1", 6)
    image, labels = decoded(row["image"]), decoded(row["mask"])
    assert 5 in labels  # the nodule

    # The PNGs are the stored slice and label map, pixel for pixel; the NIfTIs the same in HU, with the spacing.
    assert np.array_equal(np.asarray(PIL.Image.open(out / "slice.png")), image)
    assert np.array_equal(np.asarray(PIL.Image.open(out / "label_map.png")), labels)
    hu = sitk.ReadImage(str(out / "slice.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(hu), unwindow_hu(image, row["hu_window"]))
    assert hu.GetSpacing() == pytest.approx(tuple(reversed(row["spacing"]["pixel_mm"])))  # 64 mm over 32 px
    assert hu.GetSpacing() == pytest.approx((2.0, 2.0))
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "label_map.nii.gz"))), labels)
    # ... which the RePaint commands read back as the same slice.
    assert read_ct_slice(out / "slice.nii.gz").image == pytest.approx(image / 255.0, abs=1e-5)
    assert read_ct_slice(out / "slice.nii.gz").pixel_mm == pytest.approx((2.0, 2.0))
    assert np.array_equal(read_label_slice(out / "label_map.nii.gz"), labels)

    # Real data: no synthetic mark anywhere, but the LIDC-IDRI licence and citations in every file.
    for name in ("slice.png", "slice.nii.gz", "label_map.png", "label_map.nii.gz"):
        assert not is_synthetic(out / name), name
    for name in ("slice.png", "label_map.png"):
        with PIL.Image.open(out / name) as picture:
            assert "synthetic" not in picture.text
            assert "LIDC-IDRI" in picture.text["Copyright"] and "CC BY 3.0" in picture.text["Copyright"]
            assert "Armato" in picture.text["Comment"] and "Setio" in picture.text["Comment"]  # LIDC-IDRI, LUNA16
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(out / "slice.nii.gz"))
    reader.ReadImageInformation()
    assert "LIDC-IDRI (CC BY 3.0)" in reader.GetMetaData("descrip")
    note = (out / "README.md").read_text()
    assert "P1, slice 6" in note and "1.1" in note and "CC BY 3.0" in note and "doi.org/10.7937/K9/TCIA" in note

    # Named by series, config and split instead.
    healthy = stored_row(recipe, "healthy", "2.1", 4)  # healthy slices are every 4th: 0, 4, 8
    written = export_slice(f"{recipe}:healthy/{healthy['split']}", tmp_path / "h", 4, series_uid="2.1")
    assert set(written) == FILES
    assert np.array_equal(np.asarray(PIL.Image.open(written["slice.png"])), decoded(healthy["image"]))
    assert "`healthy` config" in written["README.md"].read_text()


def test_the_dataset_argument_names_a_folder_and_optionally_a_config_and_split(tmp_path):
    assert DatasetSpec.parse("data/x") == DatasetSpec(Path("data/x"))
    assert DatasetSpec.parse("data/x:nodule") == DatasetSpec(Path("data/x"), "nodule")
    assert DatasetSpec.parse("data/x:nodule/test") == DatasetSpec(Path("data/x"), "nodule", "test")
    (tmp_path / "a:b").mkdir()
    assert DatasetSpec.parse(tmp_path / "a:b") == DatasetSpec(tmp_path / "a:b")  # an existing folder is the folder


BAD_INPUT = [
    # (arguments, what the one-line error says)
    (["--patient", "P9", "--slice", "6"], "no patient P9 in .* it holds 2 scans: P1 = 1.1; P2 = 2.1; give one of"),
    (["--series", "9.9", "--slice", "6"], "no series 9.9 in .*P1 = 1.1"),
    (["--patient", "P1", "--slice", "5"], r"patient P1 has no slice 5 in .*its slices there: nodule 6; healthy 0$"),
    (["--patient", "P1", "--slice", "-1"], "--slice must be a slice index >= 0"),
    (["--dataset", "{tmp}/missing"], "the dataset .*missing does not exist; give the folder that dataset_scripts/"),
    (["--dataset", "{tmp}/recipe/README.md"], "is a file, not a folder"),
    (["--dataset", "{tmp}/recipe:nodules"], r"has no config 'nodules' \(it has healthy, nodule\)"),
    (["--dataset", "{tmp}/recipe:nodule/validation"], "config 'nodule' of .* has no split 'validation'"),
]


def test_bad_input_is_a_one_line_error_that_lists_what_there_is(recipe, tmp_path, capsys):
    for args, message in BAD_INPUT:
        args = [a.format(tmp=tmp_path) for a in args]
        defaults = {"--dataset": [recipe], "--slice": [6]} | ({} if "--series" in args else {"--patient": ["P1"]})
        given = [word for flag, value in defaults.items() if flag not in args for word in (flag, *value)]
        code, printed = run_cli(*given, *args, "--output", tmp_path / "s", capsys=capsys)
        assert code == 2 and printed.err.count("\n") == 1, (args, printed.err)
        assert printed.err.startswith("lung-diffusers export-slice: error: ")
        assert re.search(message, printed.err.strip()), printed.err
        assert not (tmp_path / "s").exists()


def test_the_output_folder_rule_keeps_user_files_and_overwrite_replaces_only_its_own(recipe, tmp_path, capsys):
    args = ("--dataset", recipe, "--patient", "P1", "--slice", 6, "--output", tmp_path / "s")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "slice.png").write_bytes(b"the user's")
    code, printed = run_cli(*args, capsys=capsys)
    assert code == 2 and "not empty" in printed.err
    assert (tmp_path / "s" / "slice.png").read_bytes() == b"the user's"

    (tmp_path / "s" / "slice.png").unlink()
    assert run_cli(*args, capsys=capsys)[0] == 0
    code, printed = run_cli(*args, capsys=capsys)
    assert code == 2 and "--overwrite" in printed.err
    (tmp_path / "s" / "notes.txt").write_text("mine")
    assert run_cli(*args, "--overwrite", capsys=capsys)[0] == 0
    assert {p.name for p in (tmp_path / "s").iterdir()} == FILES | {MANIFEST_NAME, "notes.txt"}
