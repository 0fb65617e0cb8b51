"""lung_diffusers.ct is the one home of the CT window and labels: the old import paths still work but warn, the
packages' re-exports do not warn, and nothing in src imports an old path or reaches above ct."""

import importlib
import re
import warnings
from pathlib import Path

import pytest

import lung_diffusers.ct as ct

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "lung_diffusers"

OLD_PATHS = [
    ("lung_diffusers.labels", "NODULE"),
    ("lung_diffusers.labels", "MALIGNANCY_LABEL_NAMES"),
    ("lung_diffusers.labels", "HU_WINDOW"),
    ("lung_diffusers.labels", "label_names"),
    ("lung_diffusers.label_maps", "as_label_tensor"),
    ("lung_diffusers.label_maps", "check_label_map_size"),
    ("lung_diffusers.data.ct_io", "read_ct_volume"),
    ("lung_diffusers.data.ct_io", "CTVolume"),
    ("lung_diffusers.data.ct_io", "window_hu"),
    ("lung_diffusers.data.ct_io", "unwindow_hu"),
    ("lung_diffusers.data.masks", "resize_label_map"),
    ("lung_diffusers.data.contact_sheet", "mask_to_rgb"),
    ("lung_diffusers.data.contact_sheet", "MASK_COLORS_RGB"),
    ("lung_diffusers.inpainting.slice_io", "read_ct_slice"),
    ("lung_diffusers.inpainting.slice_io", "image_from_hu"),
    ("lung_diffusers.inpainting.slice_io", "resize_binary_mask"),
]


@pytest.mark.parametrize(("module", "name"), OLD_PATHS)
def test_an_old_import_path_warns_naming_the_removal_version_and_gives_the_same_object(module, name):
    with pytest.warns(FutureWarning, match=rf"{re.escape(module)}\.{name}` is deprecated .* 1\.0\.0\. Import {name} from lung_diffusers\.ct"):
        exec(f"from {module} import {name} as value", namespace := {})  # noqa: S102 (the import statement itself)
    assert namespace["value"] is getattr(ct, name)


def test_a_star_import_of_an_old_module_still_gets_every_name_and_warns():
    with pytest.warns(FutureWarning) as caught:
        exec("from lung_diffusers.labels import *", namespace := {})  # noqa: S102
    assert namespace["NODULE"] == 5 and namespace["label_names"] is ct.label_names
    assert len(caught) == len(importlib.import_module("lung_diffusers.labels").__all__) == 12


def test_names_that_never_existed_in_an_old_module_are_still_attribute_errors():
    labels = importlib.import_module("lung_diffusers.labels")
    with pytest.raises(AttributeError, match="has no attribute 'TUMOUR'"):
        labels.TUMOUR  # noqa: B018
    assert "NODULE" in dir(labels)


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("lung_diffusers", "HU_WINDOW"),
        ("lung_diffusers", "LABEL_NAMES"),
        ("lung_diffusers.data", "resize_label_map"),
        ("lung_diffusers.data", "mask_to_rgb"),
        ("lung_diffusers.data", "read_ct_volume"),
        ("lung_diffusers.inpainting", "read_ct_slice"),
        ("lung_diffusers.inpainting", "image_from_hu"),
    ],
)
def test_package_level_names_are_plain_re_exports(package, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(importlib.import_module(package), name) is getattr(ct, name)


OLD_IMPORT = re.compile(
    r"(from|import) +(lung_diffusers|\.+)\.?(labels|label_maps|data\.ct_io|inpainting\.slice_io)\b"
    r"|from +\.(ct_io|slice_io) +import|(contact_sheet|masks) +import +[^\n]*\b(mask_to_rgb|MASK_COLORS_RGB|resize_label_map)\b"
)
SHIMS = {f"src/lung_diffusers/{name}" for name in ("labels.py", "label_maps.py", "data/ct_io.py", "inpainting/slice_io.py")}


def test_no_module_of_the_package_space_or_scripts_imports_an_old_path():
    offenders = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for folder in ("src", "spaces", "training", "dataset_scripts", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
        if str(path.relative_to(REPO)) not in SHIMS
        for match in OLD_IMPORT.finditer(path.read_text())
    ]
    assert not offenders


def test_ct_imports_nothing_from_the_rest_of_the_package():
    upward = [
        f"{path.name}: {line.strip()}"
        for path in (SRC / "ct").glob("*.py")
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from +(\.\.|lung_diffusers)|import +lung_diffusers)", line) and "_lazy" not in line
    ]
    assert not upward
