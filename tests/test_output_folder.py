"""The rule of every output folder: a manifest of what was written, no foreign file overwritten, no stale results."""

import json

import pytest

from lung_diffusers.output_folder import MANIFEST_NAME, OutputFolderError, check_output_folder, output_folder


def write_run(folder, names, overwrite=False, tool="remove-nodule"):
    with output_folder(folder, tool, overwrite) as out:
        for name in names:
            out.path(name).write_text(f"{name} of this run")


def test_a_new_folder_gets_the_files_and_a_manifest_of_them(tmp_path):
    write_run(tmp_path / "new" / "out", ["healthy-0.png", "figure.png"])
    manifest = json.loads((tmp_path / "new" / "out" / MANIFEST_NAME).read_text())
    assert manifest["tool"] == "remove-nodule" and manifest["complete"] is True and manifest["written"]
    assert manifest["files"] == ["figure.png", "healthy-0.png"]


def test_a_folder_of_someone_elses_files_is_refused_and_left_alone(tmp_path, monkeypatch):
    (tmp_path / "figure.png").write_text("mine")
    monkeypatch.chdir(tmp_path)
    for folder in (tmp_path, "."):  # `--output .` included
        with pytest.raises(OutputFolderError, match="not empty.*choose a new or empty folder"):
            check_output_folder(folder, "remove-nodule", overwrite=True)
        with pytest.raises(ValueError, match="not empty"), output_folder(folder, "remove-nodule", overwrite=True):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]
    assert (tmp_path / "figure.png").read_text() == "mine"


def test_a_rerun_needs_overwrite_and_then_replaces_exactly_the_earlier_files(tmp_path):
    write_run(tmp_path, ["healthy-0.png", "healthy-1.png", "uncertainty.png", "figure.png"])
    (tmp_path / "notes.txt").write_text("mine")  # added by the user beside the outputs
    with pytest.raises(FileExistsError, match="earlier remove-nodule run; pass --overwrite"):
        check_output_folder(tmp_path, "remove-nodule")
    write_run(tmp_path, ["healthy-0.png", "figure.png"], overwrite=True)  # one sample now: no uncertainty
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MANIFEST_NAME, "healthy-0.png", "figure.png", "notes.txt"]
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["files"] == ["figure.png", "healthy-0.png"]


def test_a_file_the_earlier_run_did_not_write_is_never_overwritten(tmp_path):
    write_run(tmp_path, ["healthy-0.png"])
    (tmp_path / "healthy-1.png").write_text("mine")
    with pytest.raises(OutputFolderError, match="healthy-1.png exists and is not an earlier output"):
        write_run(tmp_path, ["healthy-0.png", "healthy-1.png"], overwrite=True)
    assert (tmp_path / "healthy-1.png").read_text() == "mine"
    # The manifest still lists what lung-diffusers wrote, so the next --overwrite cleans it up.
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["files"] == ["healthy-0.png"]


def test_an_interrupted_run_lists_every_file_it_left(tmp_path):
    write_run(tmp_path, ["a.png", "b.png"])
    with pytest.raises(KeyboardInterrupt), output_folder(tmp_path, "demo", overwrite=True) as out:
        out.path("c.png").write_text("new")
        raise KeyboardInterrupt
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["complete"] is False and manifest["files"] == ["a.png", "b.png", "c.png"]
    write_run(tmp_path, ["a.png"], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MANIFEST_NAME, "a.png"])


@pytest.mark.parametrize("where", ["the folder", "a parent"])
def test_a_file_as_the_folder_is_refused_before_any_work(tmp_path, where):
    file = tmp_path / "result.png"
    file.write_text("mine")
    with pytest.raises(OutputFolderError, match="result.png is a file, not a folder"):
        check_output_folder(file if where == "the folder" else file / "out", "demo", overwrite=True)
    assert file.read_text() == "mine"


def test_a_manifest_cannot_point_outside_its_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text(json.dumps({"tool": "demo", "files": ["../keep.txt"]}))
    with pytest.raises(OutputFolderError, match="is not a manifest of lung-diffusers"):
        write_run(folder, ["a.png"], overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="plain file name"), output_folder(tmp_path / "new", "demo") as out:
        out.path("../escape.png")


def test_claimed_files_of_a_killed_run_are_the_rerun_s_to_replace(tmp_path):
    folder = tmp_path / "out"
    run = output_folder(folder, "evaluate")
    out = run.__enter__()
    out.claim(["figure.png", "report.md"])
    out.path("figure.png").write_text("half written")  # ...and the process is killed: no clean-up runs
    with pytest.raises(OutputFolderError, match="pass --overwrite"):
        check_output_folder(folder, "evaluate")
    with output_folder(folder, "evaluate", overwrite=True) as again:
        again.path("figure.png").write_text("whole")
    assert (folder / "figure.png").read_text() == "whole"
    assert json.loads((folder / MANIFEST_NAME).read_text())["files"] == ["figure.png"]
