"""Fixtures of the Space tests: the app's modules on the path, and the app served once per pytest worker."""

from __future__ import annotations

import sys

import pytest
from space_support import PIPELINES, SPACE_DIR, SpaceServer, require

# The app's package (spaces/lung_space) is imported as the app imports it, from its folder.
if str(SPACE_DIR) not in sys.path:
    sys.path.insert(0, str(SPACE_DIR))


@pytest.fixture(scope="session")
def space_dependencies():
    """Gradio and the demo pipelines: what running the app needs (the pure-function tests need neither)."""
    try:
        import gradio  # noqa: F401
        import gradio_client  # noqa: F401
    except ImportError:
        require("gradio / gradio_client not installed: pip install -e '.[space]'")
    if not (PIPELINES / "lung-sdm-64" / "model_index.json").is_file():
        pytest.fail(f"the demo pipelines are missing from {PIPELINES}")


@pytest.fixture(scope="session")
def space_server(space_dependencies, tmp_path_factory):
    """The repository's Space (`make space` runs the same file), served for this pytest worker."""
    server = SpaceServer(SPACE_DIR, tmp_path_factory.mktemp("space-server") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(space_server):
    from gradio_client import Client

    return Client(space_server.url, verbose=False, download_files=str(space_server.log_path.parent / "downloads"))
