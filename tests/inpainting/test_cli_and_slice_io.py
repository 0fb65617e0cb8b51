"""Reading slices (PNG, NIfTI/MetaImage volumes, DICOM series) and the ``lung-diffusers`` command."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import SimpleITK as sitk
from lung_support import LIDC_0003_SERIES, NODULE_SLICE, prior_scheduler, tiny_prior_unet, tiny_sdm

from lung_diffusers import LungSDMPipeline, is_synthetic
from lung_diffusers.cli import main
from lung_diffusers.ct import resize_slice
from lung_diffusers.inpainting import image_from_hu, read_ct_slice, read_label_slice

FAST_FLAGS = ["--steps", "6", "--jump-length", "2", "--jump-n-sample", "2"]


def run_cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def pipeline_folders(tmp_path_factory):
    from diffusers import DDPMPipeline

    root = tmp_path_factory.mktemp("pipelines")
    DDPMPipeline(unet=tiny_prior_unet(sample_size=32), scheduler=prior_scheduler()).save_pretrained(root / "prior")
    LungSDMPipeline(unet=tiny_sdm(sample_size=32), scheduler=prior_scheduler()).save_pretrained(root / "sdm")
    return root


@pytest.fixture(scope="module")
def slice_files(real_nodule_slice, tmp_path_factory):
    root = tmp_path_factory.mktemp("slice")
    PIL.Image.fromarray(real_nodule_slice.image).save(root / "image.png")
    PIL.Image.fromarray(real_nodule_slice.labels).save(root / "mask.png")
    return root


# ------------------------------------------------------------------------------------- reading slices


def test_png_slices_and_label_maps_read_as_the_recipe_wrote_them(slice_files, real_nodule_slice):
    ct = read_ct_slice(slice_files / "image.png")
    np.testing.assert_allclose(ct.image, real_nodule_slice.image / 255.0, atol=1e-7)
    assert ct.pixel_mm is None
    assert np.array_equal(read_label_slice(slice_files / "mask.png"), real_nodule_slice.labels)


def test_a_volume_slice_by_index_matches_the_recipes_slice(shared_dir, real_nodule_slice, tmp_path):
    volume = shared_dir / "data" / "lidc-mini" / "subset0" / f"{LIDC_0003_SERIES}.mhd"
    ct = read_ct_slice(volume, NODULE_SLICE)
    assert ct.image.shape == (512, 512) and ct.pixel_mm == pytest.approx((0.820312, 0.820312), abs=1e-5)
    # The recipe windows to 8 bits and then shrinks: the same slice to within rounding.
    np.testing.assert_allclose(resize_slice(ct.image, 256), real_nodule_slice.image / 255.0, atol=2.5 / 255)
    with pytest.raises(ValueError, match="holds 140 slices: give a slice index"):
        read_ct_slice(volume)

    # A small NIfTI volume in HU (z, y, x), and a 2-D one.
    hu = np.stack([np.full((8, 8), v, np.int16) for v in (-1000, -300, 400)])
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(tmp_path / "three.nii.gz"))
    np.testing.assert_allclose(read_ct_slice(tmp_path / "three.nii.gz", 1).image, image_from_hu(hu[1]))
    with pytest.raises(ValueError, match="slice index 3 is outside .* 0 to 2"):
        read_ct_slice(tmp_path / "three.nii.gz", 3)
    sitk.WriteImage(sitk.GetImageFromArray(hu[2]), str(tmp_path / "one.nii.gz"))
    assert read_ct_slice(tmp_path / "one.nii.gz").image.max() == 1.0


def test_a_dicom_series_slice_by_index(shared_dir, tmp_path):
    folder = shared_dir / "data" / "lidc-mini" / "dicom-sample"
    files = sorted(folder.glob("*.dcm"), key=lambda f: float(sitk.ReadImage(str(f)).GetOrigin()[2]))
    first = read_ct_slice(folder, 0)  # sorted by position: 0 is the most inferior file
    assert first.image.shape == (512, 512) and first.pixel_mm == (0.703125, 0.703125)
    np.testing.assert_allclose(first.image, read_ct_slice(files[0]).image)
    with pytest.raises(ValueError, match="holds 8 slices"):
        read_ct_slice(folder)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read .*notes.txt: expected a PNG"):
        read_ct_slice(tmp_path / "notes.txt")


# ------------------------------------------------------------------------------------- the command


def test_help_lists_the_subcommands_without_loading_torch(capsys):
    import subprocess
    import sys

    from lung_diffusers import REPAINT_PRESETS

    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and all(name in out for name in ("remove-nodule", "insert-nodule", "anomaly-map"))
    code, out, _ = run_cli(["remove-nodule", "--help"], capsys)
    assert code == 0 and "--slice-index" in out and "--dilation-px" in out
    for name, preset in REPAINT_PRESETS.items():
        assert f"{name} = {'/'.join(str(v) for v in preset.values())}" in " ".join(out.split())
    script = "import sys, lung_diffusers.cli as c; c.build_parser(); print(sorted({'torch', 'diffusers'} & set(sys.modules)))"
    assert (
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
        == "[]"
    )


def test_remove_nodule_writes_marked_outputs(pipeline_folders, slice_files, tmp_path, capsys):
    argv = [
        "remove-nodule",
        "--pipeline",
        pipeline_folders / "prior",
        "--image",
        slice_files / "image.png",
        "--label-map",
        slice_files / "mask.png",
        "--output",
        tmp_path / "out",
        "--samples",
        "2",
        *FAST_FLAGS,
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "removal of" in out and "2 sample(s) of 256x256 px" in out
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {
        "healthy-0.png",
        "healthy-1.png",
        "healthy.nii.gz",
        "difference.png",
        "uncertainty.png",
        "figure.png",
    } <= names
    assert all(is_synthetic(p) for p in (tmp_path / "out").glob("[!.]*"))  # all but the folder's manifest
    with PIL.Image.open(tmp_path / "out" / "healthy-0.png") as healthy:
        assert healthy.size == (256, 256)

    # A rerun into the same folder needs --overwrite; with one sample, none of the first run's extra files stay.
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "earlier remove-nodule run; pass --overwrite" in err
    code, out, err = run_cli([*argv, "--samples", "1", "--overwrite"], capsys)
    assert code == 0, err
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        ".lung-diffusers-manifest.json", "healthy-0.png", "healthy.nii.gz", "difference.png", "difference.nii.gz",
        "figure.png",
    }  # fmt: skip


@pytest.mark.parametrize("command", ["remove-nodule", "insert-nodule", "anomaly-map"])
def test_an_output_that_would_lose_files_is_refused_before_the_model_loads(
    pipeline_folders, slice_files, tmp_path, capsys, monkeypatch, command
):
    from lung_diffusers.inpainting import commands

    monkeypatch.setattr(commands, "_load_pipeline", lambda args: pytest.fail("the model was loaded"))
    a_file = tmp_path / "result.png"
    a_file.write_text("mine")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "figure.png").write_text("mine")
    monkeypatch.chdir(busy)
    argv = [command, "--pipeline", pipeline_folders / "prior", "--image", slice_files / "image.png", "--overwrite"]
    argv += {"remove-nodule": ["--label-map", slice_files / "mask.png"],
             "insert-nodule": ["--label-map", slice_files / "mask.png", "--nodule-center", 128, 170]}.get(command, [])  # fmt: skip
    for output, message in ((a_file, "is a file, not a folder"), (busy, "is not empty"), (".", "is not empty")):
        code, _, err = run_cli([*argv, "--output", output], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert a_file.read_text() == "mine" and [p.name for p in busy.iterdir()] == ["figure.png"]


def test_remove_nodule_from_a_volume_slice_with_the_recipes_mask(
    pipeline_folders, slice_files, shared_dir, tmp_path, capsys
):
    volume = shared_dir / "data" / "lidc-mini" / "subset0" / f"{LIDC_0003_SERIES}.mhd"
    argv = [
        "remove-nodule",
        "--pipeline",
        pipeline_folders / "prior",
        "--image",
        volume,
        "--slice-index",
        NODULE_SLICE,
        "--label-map",
        slice_files / "mask.png",
        "--output",
        tmp_path / "vol",
        "--scheduler",
        "ddim",
        *FAST_FLAGS,
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert f"slice {NODULE_SLICE}" in out and "of 256x256 px (from 256 px)" in out
    spacing = sitk.ReadImage(str(tmp_path / "vol" / "healthy.nii.gz")).GetSpacing()
    assert spacing[0] == pytest.approx(0.820312 * 2, abs=1e-4)  # 512 -> 256 px


def test_insert_nodule_at_a_point(pipeline_folders, slice_files, tmp_path, capsys):
    argv = [
        "insert-nodule",
        "--pipeline",
        pipeline_folders / "sdm",
        "--image",
        slice_files / "image.png",
        "--label-map",
        slice_files / "mask.png",
        "--nodule-center",
        128,
        170,
        "--nodule-diameter-px",
        14,
        "--output",
        tmp_path / "ins",
        *FAST_FLAGS,
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "1 sample(s) of 256x256 px" in out  # the slice's own size: the 32-px SDM's area is pasted back
    assert is_synthetic(tmp_path / "ins" / "inserted-0.png") and is_synthetic(tmp_path / "ins" / "figure.png")
    assert 5 in np.array(PIL.Image.open(tmp_path / "ins" / "label_map.png"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image", "VOLUME"], "holds 140 slices: give a slice index"),
        (["--image", "IMAGE", "--nodule-mask", "MASK"], "is not a binary mask"),
        (["--image", "IMAGE", "--pipeline", "SLICES"], "is not a pipeline folder"),
        (["--image", "IMAGE", "--dilation-px", "40"], "more than the model's 32-px window"),
        (["--image", "IMAGE", "--steps", "0"], "num_inference_steps must be an integer >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    pipeline_folders, slice_files, shared_dir, tmp_path, capsys, extra, message
):
    paths = {
        "VOLUME": shared_dir / "data" / "lidc-mini" / "subset0" / f"{LIDC_0003_SERIES}.mhd",
        "IMAGE": slice_files / "image.png",
        "MASK": slice_files / "mask.png",
        "SLICES": slice_files,
    }
    extra = [str(paths.get(a, a)) for a in extra]
    argv = ["remove-nodule", "--pipeline", pipeline_folders / "prior", "--output", tmp_path / "x", *FAST_FLAGS]
    if "--nodule-mask" not in extra:
        argv += ["--label-map", slice_files / "mask.png"]
    code, _, err = run_cli([*argv, *extra], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lung-diffusers remove-nodule: error:") and message in err


def test_the_size_handling_choices_are_the_pipeline_s():
    from lung_diffusers.inpainting.commands import SIZE_HANDLING as CHOICES
    from lung_diffusers.pipelines.pipeline_lung_repaint import SIZE_HANDLING

    assert CHOICES == SIZE_HANDLING
