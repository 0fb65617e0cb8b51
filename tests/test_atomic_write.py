"""atomic_directory swaps in only what the caller wrote, and all of it or nothing."""

import os

import pytest

from lung_diffusers import atomic_write
from lung_diffusers.atomic_write import atomic_directory


def snapshot(folder):
    """{relative path: bytes, or None for a folder} of everything under ``folder``, dot-named staging included."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


NEW = {"config.json": b"new config", "unet": None, "unet/weights": b"new weights"}


def write_new(staging):
    (staging / "config.json").write_text("new config")
    (staging / "unet").mkdir()
    (staging / "unet" / "weights").write_text("new weights")


@pytest.fixture
def existing(tmp_path):
    """An earlier output (config.json, unet/) with the user's own file beside it."""
    folder = tmp_path / "out"
    (folder / "unet").mkdir(parents=True)
    (folder / "config.json").write_text("old config")
    (folder / "unet" / "weights").write_text("old weights")
    (folder / "unet" / "stale").write_text("only in the old unet/")
    (folder / "notes.txt").write_text("the user's")
    return folder


def test_new_folder_appears_whole(tmp_path):
    with atomic_directory(tmp_path / "new") as staging:
        write_new(staging)
    assert snapshot(tmp_path / "new") == NEW
    assert [p.name for p in tmp_path.iterdir()] == ["new"]


def test_only_written_entries_are_replaced(existing):
    with atomic_directory(existing, overwrite=True) as staging:
        write_new(staging)
    # unet/ is replaced as a whole (no stale file), the user's file is untouched, no staging left over.
    assert snapshot(existing) == {**NEW, "notes.txt": b"the user's"}


def test_clash_without_overwrite_changes_nothing(existing):
    before = snapshot(existing)
    with pytest.raises(FileExistsError, match="config.json, unet"):
        with atomic_directory(existing) as staging:
            write_new(staging)
    assert snapshot(existing) == before


def test_failure_while_writing_keeps_the_old_folder(existing):
    before = snapshot(existing)
    with pytest.raises(RuntimeError):
        with atomic_directory(existing, overwrite=True) as staging:
            write_new(staging)
            raise RuntimeError("conversion failed")
    assert snapshot(existing) == before


@pytest.mark.parametrize("failing_call", [1, 2, 3, 4])
def test_failure_during_the_swap_puts_the_old_entries_back(existing, monkeypatch, failing_call):
    """Ctrl-C (or any error) between the per-entry renames: the folder keeps all of its old entries."""
    before = snapshot(existing)
    calls = []
    real_replace = os.replace

    def replace(src, dst):
        calls.append(src)
        if len(calls) == failing_call:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(atomic_write.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(existing, overwrite=True) as staging:
            write_new(staging)
    assert snapshot(existing) == before


def test_current_directory_and_file_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the user's")
    with atomic_directory(".", overwrite=True) as staging:
        write_new(staging)
    assert snapshot(tmp_path) == {**NEW, "notes.txt": b"the user's"}
    with pytest.raises(NotADirectoryError, match="is a file"):
        with atomic_directory("notes.txt"):
            pass


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the umask from Linux's /proc")
def test_the_umask_is_read_without_being_changed(umask_027, monkeypatch, tmp_path):
    # Setting the umask, even for an instant, would change the files other threads of a server create then.
    def no_umask_calls(mask):
        raise AssertionError(f"os.umask({mask:#o}) was called")

    monkeypatch.setattr(atomic_write.os, "umask", no_umask_calls)
    assert atomic_write._current_umask() == umask_027
    with atomic_write.atomic_file(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    with atomic_directory(tmp_path / "folder") as staging:
        (staging / "b.txt").write_text("y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o750


def test_without_proc_the_umask_is_read_and_restored(umask_027, monkeypatch, tmp_path):
    monkeypatch.setattr(atomic_write, "_PROC_STATUS", str(tmp_path / "no-proc"))
    assert atomic_write._current_umask() == umask_027
    assert os.umask(umask_027) == umask_027  # left as it was
