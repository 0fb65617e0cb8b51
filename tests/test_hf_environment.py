"""The suite runs the same whatever the user's Hugging Face environment (tests/conftest.py sets it)."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FORCED = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
CLEARED = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
# Common user settings that changed the suite: datasets gives its variable priority over enable_progress_bars(),
# and HF_HUB_OFFLINE=0 let the tests reach the Hub.
USER_ENVIRONMENT = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_OFFLINE": "0",
    "HF_DATASETS_OFFLINE": "0",
    "TRANSFORMERS_OFFLINE": "0",
}


def test_the_session_is_offline_and_leaves_the_progress_bars_to_the_code():
    import datasets
    import huggingface_hub

    assert {name: os.environ.get(name) for name in FORCED} == FORCED
    assert not any(name in os.environ for name in CLEARED)
    assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE  # read at their import
    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    try:
        for enabled in (True, False):
            (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
            assert datasets.utils.logging.is_progress_bar_enabled() is enabled
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()
    code = "import os; print(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('HF_DATASETS_DISABLE_PROGRESS_BARS'))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.split() == ["1", "None"]  # the tests' subprocesses get the same environment


def test_a_users_hugging_face_settings_do_not_change_the_suite():
    """The test above, run by pytest in the environment of a user who set the usual variables."""
    node = f"{__file__}::test_the_session_is_offline_and_leaves_the_progress_bars_to_the_code"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
        cwd=REPO_ROOT,
        env={**os.environ, **USER_ENVIRONMENT},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
