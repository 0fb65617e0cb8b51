"""The Space's packaging: a valid Spaces card and requirements, and the bundle `make space-bundle` writes runs
from its own folder, with the package it carries."""

import importlib.metadata
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from lung_space import display
from packaging.requirements import Requirement
from space_support import REPO_ROOT, SPACE_DIR, SpaceServer, editor_input


def requirements(path) -> list[Requirement]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def test_the_space_card_has_valid_spaces_front_matter(space_dependencies):
    import gradio
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(SPACE_DIR / "README.md")
    data = card.data
    assert data.sdk == "gradio" and data.app_file == "app.py" and data.license == "apache-2.0"
    assert (SPACE_DIR / data.app_file).is_file()
    assert (
        data.sdk_version.split(".")[0] == gradio.__version__.split(".")[0]
    )  # the Gradio major the app is written for
    assert {"diffusers", "medical-imaging", "synthetic-data"} <= set(data.tags)
    assert 0 < len(data.short_description) <= 60  # the Hub's limit
    assert "SYNTHETIC" in card.text and "Not for diagnosis" in card.text


def test_space_requirements_cover_the_package_dependencies_and_hold_no_local_paths():
    """Spaces installs requirements.txt before copying the folder: every line must come from an index."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    wanted = {Requirement(d).name.lower() for d in pyproject["project"]["dependencies"]}
    listed = requirements(SPACE_DIR / "requirements.txt")
    assert wanted <= {r.name.lower() for r in listed}
    assert all(r.url is None for r in listed)
    for requirement in listed:  # and this environment, which runs the tests, satisfies them
        assert requirement.specifier.contains(importlib.metadata.version(requirement.name), prereleases=True), (
            requirement
        )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle") / "space"
    done = subprocess.run(
        [sys.executable, str(SPACE_DIR / "make_bundle.py"), "--output", str(folder)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert str(folder) in done.stdout
    return folder


def test_the_bundle_holds_everything_a_space_needs(bundle):
    for path in (
        "app.py",
        "README.md",
        "requirements.txt",
        "LICENSE",
        "lung_space/layout.py",
        "examples/lidc-idri-0001_slice090.png",
        "lung_diffusers/__init__.py",
        "lung_diffusers/templates",
        "pipelines/lung-sdm-64/unet/diffusion_pytorch_model.safetensors",
        "pipelines/lung-sdm-64/example_masks/examples.json",
        "pipelines/lung-ddpm-prior-64/model_index.json",
    ):
        assert (bundle / path).exists(), path
    assert not list(bundle.rglob("__pycache__")) and not (bundle / "make_bundle.py").exists()
    assert not (bundle.parent / "space.partial").exists()
    sizes = [p.stat().st_size for p in bundle.rglob("*") if p.is_file()]
    assert max(sizes) < 10 * 2**20  # every file stays under the Hub's 10 MB plain-git limit


def test_the_bundle_runs_from_its_own_folder_with_its_own_package(space_dependencies, bundle):
    from gradio_client import Client

    server = SpaceServer(bundle, bundle.parent / "server.log")
    try:
        log = server.log()
        assert f"lung-diffusers from {bundle / 'lung_diffusers'}" in log  # not the repository's installed copy
        assert f"SDM: {bundle / 'pipelines' / 'lung-sdm-64'}" in log
        client = Client(server.url, verbose=False, download_files=str(bundle.parent / "downloads"))
        editor, _, _ = client.predict("healthy", api_name="/load_example")
        gallery, *_ = client.predict(
            editor_input(editor["composite"]), "UniPC", 4, 1.0, 0, 1, 5.625, api_name="/generate"
        )
        with PIL.Image.open(gallery[0]["image"]) as shown:
            shown = np.asarray(shown.convert("RGB"))
        np.testing.assert_array_equal(display.stamp_region(shown), display.synthetic_banner(shown.shape[1]))
    finally:
        server.stop()


def test_the_bundle_refuses_to_overwrite_the_repository(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SPACE_DIR / "make_bundle.py"), "--output", str(SPACE_DIR / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "refusing" in done.stderr
