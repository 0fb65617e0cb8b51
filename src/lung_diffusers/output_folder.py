"""One rule for every writer of an output folder, so no run overwrites a user's files or leaves stale results.

* The tool lists what it wrote in a manifest in the folder (:data:`MANIFEST_NAME`), written last.
* It refuses a non-empty folder without a manifest: those files are someone else's.
* A folder with a manifest holds an earlier run's outputs: it is refused unless ``overwrite`` is set; then exactly
  the files of that manifest are replaced or removed (a rerun with fewer samples leaves no stale ``healthy-1.png``),
  and any other file in the folder stays.
* Files are written atomically (:mod:`lung_diffusers.atomic_write`).

Check the folder with :func:`check_output_folder` before the work (sampling can take minutes), then write in
``with output_folder(...) as out:``, naming each file with ``out.path(name)``.

Example:
    ```py
    >>> check_output_folder("removed", "remove-nodule")          # refuses at once, before any sampling
    >>> with output_folder("removed", "remove-nodule") as out:
    ...     save_synthetic_png(image, out.path("healthy-0.png"))
    ```
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator
from pathlib import Path

from . import __version__
from .atomic_write import write_text_atomically

MANIFEST_NAME = ".lung-diffusers-manifest.json"


class OutputFolderError(FileExistsError, ValueError):
    """An output folder that cannot be written without losing files. Both a `FileExistsError` and a `ValueError`
    (bad input: the commands exit with status 2)."""


def check_output_folder(folder: str | os.PathLike, tool: str, overwrite: bool = False) -> list[str]:
    """Refuse an output ``folder`` that ``tool`` may not write; nothing is changed. Returns the files of its
    previous manifest (empty for a new or empty folder).

    Raises:
        OutputFolderError: ``folder`` (or a parent) is a file, it holds files but no manifest of lung-diffusers,
            or it holds an earlier run's outputs and ``overwrite`` is not set.
    """
    folder = Path(folder)
    for existing in (folder, *folder.parents):
        if os.path.lexists(existing):
            break
    if not existing.is_dir():
        raise OutputFolderError(f"{existing} is a file, not a folder; give a new or empty folder for the outputs")
    if existing != folder or not any(folder.iterdir()):
        return []
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise OutputFolderError(
            f"{folder} is not empty and holds no earlier outputs of lung-diffusers (no {MANIFEST_NAME}); "
            "choose a new or empty folder, so none of its files are overwritten"
        )
    previous = _read_manifest(manifest)
    if not overwrite:
        raise OutputFolderError(
            f"{folder} holds the outputs of an earlier {previous['tool']} run; pass --overwrite (overwrite=True in "
            f"Python) to replace them (only the files listed in its {MANIFEST_NAME}), or choose another folder"
        )
    return previous["files"]


class OutputFiles:
    """The files one run writes into its output folder (see :func:`output_folder`)."""

    def __init__(self, folder: Path, previous: list[str], tool: str = ""):
        self.folder = folder
        self.previous = set(previous)
        self.tool = tool
        self.names: list[str] = []

    def claim(self, names) -> None:
        """List ``names`` in the manifest now, before they are written: a run killed while writing them (SIGKILL,
        no clean-up) leaves a manifest that covers them, so the rerun may replace them."""
        for name in names:
            self.path(name)
        leftovers = [name for name in self.previous if (self.folder / name).is_file()]
        _write_manifest(self.folder, self.tool, sorted({*self.names, *leftovers}), complete=False)

    def path(self, name: str) -> Path:
        """The path to write ``name`` to (a plain file name); it is listed in the manifest. Refuses a name held
        by a file the earlier run did not write."""
        _check_name(name)
        target = self.folder / name
        if name not in self.names:
            if os.path.lexists(target) and name not in self.previous:
                raise OutputFolderError(
                    f"{target} exists and is not an earlier output of lung-diffusers; move it, or choose another folder"
                )
            self.names.append(name)
        return target

    def present(self) -> list[str]:
        return [name for name in self.names if (self.folder / name).is_file()]


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike, tool: str, overwrite: bool = False) -> Iterator[OutputFiles]:
    """Write one run's files into ``folder`` under the rule above; the manifest is written when the block ends.

    The folder is checked again here (it may have changed while the model ran). When the block succeeds, the
    previous manifest's files that were not written again are removed. When it fails, the manifest lists this
    run's files and the earlier ones still there, so a rerun with ``overwrite`` can clean them all.
    """
    folder = Path(folder)
    previous = check_output_folder(folder, tool, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    files = OutputFiles(folder, previous, tool)
    try:
        yield files
    except BaseException:  # Ctrl-C included
        leftovers = [name for name in previous if name not in files.names and (folder / name).is_file()]
        _write_manifest(folder, tool, files.present() + leftovers, complete=False)
        raise
    for name in previous:
        if name not in files.names and not (folder / name).is_dir():
            (folder / name).unlink(missing_ok=True)
    _write_manifest(folder, tool, files.present(), complete=True)


def _check_name(name: str) -> None:
    # Plain names only: a manifest must never point outside its folder, nor at the manifest itself.
    if not name or name != Path(name).name or name in (".", "..", MANIFEST_NAME):
        raise ValueError(f"an output file must be a plain file name, got {name!r}")


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        tool = manifest["tool"]
        if not isinstance(files, list) or not isinstance(tool, str):
            raise TypeError("files must be a list and tool a string")
        for name in files:
            _check_name(name)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise OutputFolderError(
            f"{path} is not a manifest of lung-diffusers ({error}); choose a new or empty folder"
        ) from None
    return manifest


def _write_manifest(folder: Path, tool: str, files: list[str], complete: bool) -> None:
    manifest = {
        "tool": tool,
        "software": f"lung-diffusers {__version__}",
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "complete": complete,
        "files": sorted(files),
    }
    write_text_atomically(folder / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
