"""Atomic file and folder writes: a reader never sees a half-written file or folder entry.

Everything is staged on the destination's file system, then moved into place with ``os.replace``; for a
folder, each entry the caller wrote is swapped that way and the folder's other entries are left alone.
Staged names start with a dot and contain ``.tmp``, so dataset globs such as ``train-*.parquet`` never
match them, and :func:`remove_stale_temporary_files` can clean up after a killed job.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# ".<name>.<random>.tmp<original suffixes>", as made by atomic_file.
_STAGED_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp(\.[^.]+)*$")


# Where Linux shows the process's umask; reading it leaves the umask alone.
_PROC_STATUS = "/proc/self/status"


def _current_umask() -> int:
    """The process's umask, read without changing it where the OS allows.

    ``os.umask`` can only read the mask by setting another: for that instant it applies to every file any thread
    creates, which in a threaded server (the Space) would give another request's files the wrong permissions.
    """
    try:
        with open(_PROC_STATUS) as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # no /proc (macOS, Windows): set-and-restore, with a private mask for that instant
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    Example:
        ```py
        >>> with atomic_file("slice.png") as tmp:
        ...     image.save(tmp)
        ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the full suffix (".nii.gz") so writers that pick a format by extension still do.
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success its entries are moved into the folder ``path``.

    Only what the caller wrote is touched: an entry of ``path`` named like a staged one is replaced (with
    ``overwrite=True``, otherwise `FileExistsError`); every other entry of ``path`` is kept. Each entry moves
    with one ``os.replace``; if a move fails, those already made are undone, so ``path`` ends with all its old
    entries or all the new ones. A ``path`` that does not exist yet appears complete in a single rename.
    """
    path = Path(path).resolve()  # "." has no name and no parent to stage beside
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a folder; give a folder path")
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Stage on the same file system: beside a new folder (one rename publishes it), inside an existing one
    # (its parent may not be writable, e.g. for ".").
    staging = Path(tempfile.mkdtemp(dir=path.parent if new else path, prefix=f".{path.name}.tmp-"))
    try:
        yield staging
        if new:
            os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp makes it private (0700)
            os.replace(staging, path)
        else:
            _move_entries(staging, path, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_entries(staging: Path, path: Path, overwrite: bool) -> None:
    names = sorted(entry.name for entry in staging.iterdir())
    clashes = [name for name in names if os.path.lexists(path / name)]
    if clashes and not overwrite:
        raise FileExistsError(f"{path} already has {', '.join(clashes)}; pass overwrite=True to replace them")
    old = Path(tempfile.mkdtemp(dir=path, prefix=f".{path.name}.old-"))
    moved = []
    try:
        for name in names:
            moved.append(name)
            if os.path.lexists(path / name):
                os.replace(path / name, old / name)
            os.replace(staging / name, path / name)
    except BaseException:  # Ctrl-C included: put the old entries back
        for name in reversed(moved):
            if not os.path.lexists(staging / name):
                os.replace(path / name, staging / name)
            if os.path.lexists(old / name):
                os.replace(old / name, path / name)
        old.rmdir()  # empty again; if restoring failed above, the old entries stay safe in it
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomically(path, text.encode("utf-8"))


def remove_stale_temporary_files(folder: str | os.PathLike) -> int:
    """Delete the staged files a killed job left under ``folder`` (see :func:`atomic_file`); returns how many."""
    stale = [p for p in Path(folder).rglob(".*.tmp*") if p.is_file() and _STAGED_NAME.match(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
