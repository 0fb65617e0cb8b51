"""A pipeline or mask source is a local path or a Hub repo id, and an error says which one failed and how.

The session is offline (tests/conftest.py), so a Hub repo id that is not in the cache cannot be reached.
"""

import argparse
from pathlib import Path

import pytest

from lung_diffusers.sources import local_or_hub

NOT_CACHED = "someone/no-such-lung-pipeline"


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    """A working folder with a ``data/`` folder in it, and a home of its own."""
    folder = tmp_path / "work"
    (folder / "data").mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return folder


@pytest.mark.parametrize(
    ("source", "resolved"),
    [
        ("./nopipe", "work/nopipe"),
        ("../nopipe", "nopipe"),
        ("~/nopipe", "home/nopipe"),
        ("data/nopipe", "work/data/nopipe"),  # its parent folder exists
    ],
)
def test_a_missing_local_path_is_said_not_to_exist(cwd, source, resolved):
    with pytest.raises(FileNotFoundError) as error:
        with local_or_hub(source, "--pipeline"):
            pytest.fail("a missing local path must not be loaded")
    assert str(error.value) == f"--pipeline {source}: {cwd.parent / resolved} does not exist"


def test_an_absolute_missing_path_is_said_not_to_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^--masks {tmp_path}/missing: {tmp_path}/missing does not exist$"):
        with local_or_hub(str(tmp_path / "missing"), "--masks"):
            pass


def test_an_existing_folder_is_yielded_as_a_path(cwd):
    (cwd.parent / "home" / "pipe").mkdir(parents=True)
    with local_or_hub("~/pipe", "--pipeline") as where:
        assert where == cwd.parent / "home" / "pipe"
    with local_or_hub("data", "--masks") as where:
        assert where == Path("data")


def test_a_hub_repo_that_cannot_be_reached_is_neither(cwd):
    from lung_diffusers import LungSDMPipeline

    with pytest.raises(FileNotFoundError) as error:
        with local_or_hub(NOT_CACHED, "--pipeline") as where:
            assert where == NOT_CACHED
            LungSDMPipeline.from_pretrained(where)
    assert str(error.value) == (
        f"--pipeline {NOT_CACHED}: neither a local folder nor a reachable Hub repo (there is no folder "
        f"{cwd / NOT_CACHED}; offline, and not in the local cache)"
    )


def test_a_mask_dataset_that_cannot_be_reached_is_neither(cwd):
    from lung_diffusers.training.slice_data import load_slice_dataset

    with pytest.raises(FileNotFoundError, match="^--masks lung-masks: neither a local folder nor a reachable Hub repo"):
        with local_or_hub("lung-masks", "--masks"):
            load_slice_dataset("lung-masks", ["healthy"], "train")


def test_a_name_that_is_no_repo_id_is_neither(cwd):
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a valid Hub repo id .*owner/name"):
        with local_or_hub("no/such/place", "--pipeline"):
            pytest.fail("an invalid repo id must not be loaded")


def test_other_errors_pass_unchanged(cwd):
    with pytest.raises(ValueError, match="^not a LungSDMPipeline$"):
        with local_or_hub(NOT_CACHED, "--pipeline"):
            raise ValueError("not a LungSDMPipeline")


# ------------------------------------------------------------------------------ every loader uses it


def test_the_repaint_commands_loader(cwd):
    from lung_diffusers.inpainting.commands import _load_pipeline

    args = argparse.Namespace(pipeline="./nopipe", quiet=True, scheduler=None, device="cpu")
    with pytest.raises(FileNotFoundError, match=f"^--pipeline ./nopipe: {cwd}/nopipe does not exist$"):
        _load_pipeline(args)
    args.pipeline = NOT_CACHED
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a reachable Hub repo"):
        _load_pipeline(args)


def test_the_fidelity_scripts_loaders(cwd):
    from lung_diffusers.training import fidelity_evaluation as evaluate_fidelity

    args = argparse.Namespace(pipeline="./nopipe", scheduler="dpm", device="cpu")
    with pytest.raises(FileNotFoundError, match=f"^--pipeline ./nopipe: {cwd}/nopipe does not exist$"):
        evaluate_fidelity.load_pipeline(args)
    args = argparse.Namespace(dataset_name="../masks", dataset_config=["healthy"], split="test", cache_dir=None)
    with pytest.raises(FileNotFoundError, match=f"^--dataset_name ../masks: {cwd.parent}/masks does not exist$"):
        evaluate_fidelity.load_masks(args, 6, 64)
