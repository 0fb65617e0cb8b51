"""Writing output files atomically, so an interrupted job never leaves a half-written file behind.

Each file is written under a temporary name in its own folder and renamed into place with
``os.replace`` (atomic within one file system). Temporary names start with a dot and end in
``.tmp``, so dataset globs such as ``train-*.parquet`` never match them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Example::

        with atomic_output(out / "shard.parquet") as temporary:
            dataset.to_parquet(temporary)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomically(path, text.encode("utf-8"))


def remove_stale_temporary_files(folder: str | Path) -> int:
    """Delete temporary files left under ``folder`` by an interrupted run; returns how many."""
    stale = [p for p in Path(folder).rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
