"""Helpers of the Space tests: paths, the app served in a subprocess, the browser, editor values for the API.

The served app is the real one (``spaces/app.py`` with the demo checkpoints in ``pipelines/``), started on a free
localhost port, with one torch thread and no network.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SPACE_DIR = REPO_ROOT / "spaces"
PIPELINES = REPO_ROOT / "pipelines"
SERVER_START_TIMEOUT_S = 180


def require(reason: str, module_level: bool = False) -> None:
    """Skip with ``reason``, or fail when the CI asked for the full set (``REQUIRE_BROWSER=1``)."""
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (REQUIRE_BROWSER=1: the Space tests must run)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def import_or_require(module: str):
    """``importlib.import_module(module)`` at a test module's top, or skip (fail under REQUIRE_BROWSER=1) the module."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        require(f"{module} is not installed: pip install -e '.[space]'", module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def space_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUNG_SPACE_", "PYTHONPATH"))}
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


class SpaceServer:
    """``python app.py`` in ``folder`` on a free port; ``url``, ``process`` and the log so far (``log()``)."""

    def __init__(self, folder: Path, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=folder,
            env=space_env(self.port),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Space exited with code {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"the Space did not answer within {SERVER_START_TIMEOUT_S} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def browser_or_skip() -> str:
    """Path of Debian's Chromium with Playwright importable, or skip/fail saying what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require("playwright is not installed (pip install -e '.[space]')")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        require("no Chromium on PATH (apt-get install -y chromium)")
    return path


def editor_input(path: str | os.PathLike) -> dict:
    """An ImageEditor value for gradio_client: ``path`` as background and composite, no strokes."""
    from gradio_client import handle_file

    return {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}
