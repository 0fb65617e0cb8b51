"""Atomic file and folder writes: a reader sees either the old output or the complete new one, never a part.

Everything is staged beside the destination (same file system), then moved into place with ``os.replace``.
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


def _current_umask() -> int:
    mask = os.umask(0)
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
    """Yield an empty staging folder beside ``path``; on success it becomes ``path``.

    An existing ``path`` is replaced only with ``overwrite=True`` (otherwise `FileExistsError`), and is
    removed only after the new folder is in place.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_current_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, old / path.name)
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


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
