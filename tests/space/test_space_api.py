"""The Space's API endpoints through gradio_client, against the app served on localhost."""

import re
import time

import numpy as np
import PIL.Image
import pytest
from lung_space import display
from lung_space.mask_painting import labels_to_rgb
from space_support import SPACE_DIR, editor_input, import_or_require

from lung_diffusers import is_synthetic

AppError = import_or_require("gradio_client.exceptions").AppError
ENDPOINTS = {
    "/load_example",
    "/load_label_map",
    "/generate",
    "/compare",
    "/load_slice",
    "/load_slice_example",
    "/remove_nodule",
    "/insert_nodule",
}


def picture(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def assert_stamped(path) -> np.ndarray:
    shown = picture(path)
    np.testing.assert_array_equal(display.stamp_region(shown), display.synthetic_banner(shown.shape[1]))
    return shown[display.banner_height(shown.shape[1]) :]


@pytest.fixture(scope="module")
def nodule_mask(client):
    editor, clicker, spacing = client.predict("nodule", api_name="/load_example")
    assert spacing == 5.625  # the example's own spacing, from examples.json
    return editor_input(editor["composite"])


def test_the_api_lists_the_space_endpoints(client):
    assert ENDPOINTS <= set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])


def test_generate_returns_stamped_images_overlay_and_synthetic_downloads(client, nodule_mask):
    gallery, overlay, files, status = client.predict(
        nodule_mask, "DPM-Solver++", 6, 1.0, 11, 2, 5.625, api_name="/generate"
    )
    assert len(gallery) == 2 and all(item["caption"].startswith("SYNTHETIC") for item in gallery)
    slices = [assert_stamped(item["image"]) for item in gallery]
    assert slices[0].shape == (512, 512, 3) and (slices[0][..., 0] == slices[0][..., 1]).all()  # grey, enlarged
    assert not np.array_equal(slices[0], slices[1])  # seeds 11 and 12
    assert_stamped(overlay)
    assert sorted(p.rsplit("/", 1)[-1] for p in files) == [
        "synthetic_dpm-solverpp_6steps_seed11.nii.gz",
        "synthetic_dpm-solverpp_6steps_seed11.png",
        "synthetic_dpm-solverpp_6steps_seed12.nii.gz",
        "synthetic_dpm-solverpp_6steps_seed12.png",
    ]
    assert all(is_synthetic(p) for p in files)
    assert "2 synthetic slice(s) with DPM-Solver++, 6 steps" in status


def test_a_loaded_label_map_is_shown_in_class_colours(client, tmp_path):
    labels = np.zeros((64, 64), np.uint8)
    labels[8:56, 6:58] = 1
    labels[16:48, 12:30] = 3
    labels[16:48, 34:52] = 2
    PIL.Image.fromarray(labels).save(tmp_path / "labels.png")
    from gradio_client import handle_file

    editor, clicker, spacing = client.predict(handle_file(str(tmp_path / "labels.png")), api_name="/load_label_map")
    np.testing.assert_array_equal(picture(editor["composite"]), labels_to_rgb(labels, 6, 8))
    assert spacing == 5.625  # the documented default for masks without their own spacing


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.full((64, 64), 9, np.uint8), "holds label value(s) [9]"),
        (np.zeros((48, 64), np.uint8), "must be square"),
    ],
    ids=["unknown-class", "not-square"],
)
def test_bad_label_maps_come_back_as_a_message(client, tmp_path, labels, message):
    from gradio_client import handle_file

    PIL.Image.fromarray(labels).save(tmp_path / "bad.png")
    with pytest.raises(AppError, match=re.escape(message)) as error:
        client.predict(handle_file(str(tmp_path / "bad.png")), api_name="/load_label_map")
    assert "Traceback" not in str(error.value)


def test_absurd_settings_and_masks_come_back_as_messages(client, nodule_mask, tmp_path):
    with pytest.raises(AppError, match="less than minimum value 1"):
        client.predict(nodule_mask, "DDIM", 0, 1.0, 0, 1, 5.625, api_name="/generate")
    with pytest.raises(AppError, match="pixel spacing must be"):
        client.predict(nodule_mask, "DDIM", 2, 1.0, 0, 1, 900, api_name="/generate")
    PIL.Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(AppError, match="must be a square 64 px picture"):
        client.predict(editor_input(tmp_path / "odd.png"), "DDIM", 2, 1.0, 0, 1, 5.625, api_name="/generate")
    with pytest.raises(AppError, match="compare at most 12"):
        client.predict(nodule_mask, ["DDIM", "UniPC", "Euler"], "1, 2, 3, 4, 5", 0, 1.0, api_name="/compare")
    with pytest.raises(AppError, match="whole numbers separated by commas"):
        client.predict(nodule_mask, ["DDIM"], "ten", 0, 1.0, api_name="/compare")


def test_compare_puts_schedulers_side_by_side_with_time_and_dice(client, nodule_mask):
    gallery, table = client.predict(nodule_mask, ["DDIM", "UniPC"], "2, 4", 0, 1.0, api_name="/compare")
    assert [row[:2] for row in table["data"]] == [["DDIM", 2], ["DDIM", 4], ["UniPC", 2], ["UniPC", 4]]
    assert all(float(row[2]) > 0 and 0 <= float(row[3]) <= 1 for row in table["data"])
    images = [assert_stamped(item["image"]) for item in gallery]
    assert len(images) == 4 and not np.array_equal(images[0], images[2])


def test_remove_a_nodule_from_the_example_slice(client):
    editor, pixel_mm, view, centre, status, source, labels = client.predict(api_name="/load_slice_example")
    assert pixel_mm == 1.40625 and source == "label map (classes 5/6)" and "CC BY 3.0" in status
    from gradio_client import handle_file

    real = editor_input(editor["background"])
    gallery, files, status = client.predict(
        real, source, None, handle_file(labels), None, pixel_mm, "quick", 0, 1, api_name="/remove_nodule"
    )
    captions = [item["caption"] for item in gallery]
    assert captions[0] == "input (REAL)" and "SYNTHETIC" in captions[1] and "difference" in captions[2]
    for item in gallery[1:]:
        assert_stamped(item["image"])
    names = {p.rsplit("/", 1)[-1] for p in files}
    assert {"healthy-0.png", "healthy.nii.gz", "difference.png", "difference.nii.gz", "figure.png"} <= names
    assert all(is_synthetic(p) for p in files)
    with pytest.raises(AppError, match="paint over the nodule"):
        client.predict(real, "painted", None, None, None, pixel_mm, "quick", 0, 1, api_name="/remove_nodule")


def test_insert_a_nodule_at_a_point(client):
    from gradio_client import handle_file

    editor, pixel_mm, *_, labels = client.predict(api_name="/load_slice_example")
    real = editor_input(editor["background"])
    gallery, files, status = client.predict(
        real, handle_file(labels), None, "110, 80", pixel_mm, 12, "malignant", "quick", 0, api_name="/insert_nodule"
    )
    assert "Inserted a 12 mm nodule at (110, 80)" in status
    assert gallery[1]["caption"] == "nodule inserted (SYNTHETIC)"
    assert_stamped(gallery[1]["image"])
    assert any(p.endswith("label_map.png") for p in files) and all(is_synthetic(p) for p in files)
    with pytest.raises(AppError, match="needs the slice's label map"):
        client.predict(real, None, None, "110, 80", pixel_mm, 12, "malignant", "quick", 0, api_name="/insert_nodule")
    with pytest.raises(AppError, match="inside the body|background"):
        client.predict(
            real, handle_file(labels), None, "2, 2", pixel_mm, 12, "malignant", "quick", 0, api_name="/insert_nodule"
        )


def test_real_slices_load_from_dicom_files(client, shared_dir):
    from gradio_client import handle_file

    dicom = sorted((shared_dir / "data" / "lidc-mini" / "dicom-sample").glob("*.dcm"))[:2]
    editor, pixel_mm, *_, status, source, labels = client.predict(
        [handle_file(str(p)) for p in dicom], 1, api_name="/load_slice"
    )
    assert picture(editor["background"]).shape == (512, 512, 3)  # 256 px, shown twice as large
    assert "DICOM series of 2 files, slice 1" in status and labels is None
    with pytest.raises(AppError, match="could not be read|cannot read"):
        client.predict([handle_file(str(SPACE_DIR / "requirements.txt"))], None, api_name="/load_slice")


def test_the_blank_mask_uses_the_documented_default_spacing(client):
    editor, clicker, spacing = client.predict("blank", api_name="/load_example")
    assert spacing == 360 / 64
    assert (picture(editor["composite"]) == 0).all()  # all background, 64 px shown 8 times as large


def test_remove_a_painted_nodule(client, tmp_path):
    """The nodule to remove can be painted over the slice: the brush layer marks it."""
    from lung_space.uploads import read_slice_labels

    editor, pixel_mm, *_, labels = client.predict(api_name="/load_slice_example")
    nodule = read_slice_labels(labels, None, 6) == 5
    layer = np.zeros((512, 512, 3), np.uint8)  # the editor shows the 256-px slice at 512 px
    layer[np.kron(nodule, np.ones((2, 2), bool))] = (230, 30, 30)
    PIL.Image.fromarray(layer).save(tmp_path / "layer.png")
    from gradio_client import handle_file

    real = {**editor_input(editor["background"]), "layers": [handle_file(str(tmp_path / "layer.png"))]}
    gallery, files, status = client.predict(
        real, "painted", None, None, None, pixel_mm, "quick", 0, 1, api_name="/remove_nodule"
    )
    assert f"Removed the nodule ({int(nodule.sum())} px, dilated)" in status
    assert gallery[1]["caption"] == "healthy counterfactual (SYNTHETIC)"


def test_sampling_reports_progress_step_by_step(client, nodule_mask):
    job = client.submit(nodule_mask, "DDPM", 60, 1.0, 0, 1, 5.625, api_name="/generate")
    seen = set()
    while not job.done():
        update = job.status()
        for unit in update.progress_data or []:
            seen.add((unit.desc, unit.length, unit.index))
        time.sleep(0.05)
    job.result()
    assert {length for _, length, _ in seen} == {60}
    assert all(desc == "DDPM, 60 steps" for desc, _, _ in seen)
    assert len(seen) >= 2  # the bar moved while sampling
