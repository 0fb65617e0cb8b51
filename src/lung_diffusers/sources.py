"""Where a ``--pipeline``, ``--masks`` or ``--dataset`` source is: a local folder, or a Hub repo id.

diffusers and datasets take any name that is not an existing folder for a Hub repo id, so a mistyped local path
was reported as an invalid repo id or as an offline failure. :func:`local_or_hub` tells the two apart first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

_PATH_PREFIXES = tuple({"./", "../", "~", f".{os.sep}", f"..{os.sep}"})


@contextlib.contextmanager
def local_or_hub(source: str | os.PathLike, flag: str) -> Iterator[Path | str]:
    """Yield the local folder ``source`` names (a `Path`, ``~`` expanded), or ``source`` itself as a Hub repo id.

    ``source`` is a local path when it exists, starts with ``./``, ``../``, ``/`` or ``~``, or has a parent folder
    that exists (``data/masks`` beside an existing ``data/``). Otherwise it is a Hub repo id, and a failure of the
    loading in the ``with`` block to reach it (offline and not cached, no such repo, no network) is reported as
    one line.

    Example:
        ```py
        >>> with local_or_hub(args.pipeline, "--pipeline") as where:
        ...     pipe = LungSDMPipeline.from_pretrained(where)
        ```

    Raises:
        FileNotFoundError: a local path that does not exist ("--pipeline ./nopipe: /home/me/nopipe does not
            exist"), or neither a local folder nor a reachable Hub repo.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        yield path
        return
    if _is_path(text):
        raise FileNotFoundError(f"{flag} {text}: {path.resolve()} does not exist")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        raise FileNotFoundError(_neither(flag, text, path, "valid Hub repo id", "a repo id is owner/name")) from None
    try:
        yield text
    except Exception as error:
        reason = _unreachable(error)
        if reason is None:
            raise
        raise FileNotFoundError(_neither(flag, text, path, "reachable Hub repo", reason)) from error


def _is_path(text: str) -> bool:
    if text.startswith(_PATH_PREFIXES) or text in (".", "..") or Path(text).is_absolute():
        return True
    parent = Path(text).parent
    return parent != Path(".") and parent.expanduser().is_dir()


def _neither(flag: str, text: str, path: Path, hub: str, reason: str) -> str:
    return f"{flag} {text}: neither a local folder nor a {hub} (there is no folder {path.resolve()}; {reason})"


def _unreachable(error: BaseException) -> str | None:
    """Why the Hub repo could not be had, when ``error`` (or an error it was raised from) says so; else None."""
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
            return "offline, and not in the local cache"
        if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError, DatasetNotFoundError)):
            return "no such repo or revision, or it is private: check the name, or log in with `hf auth login`"
        if isinstance(error, (HfHubHTTPError, ConnectionError, TimeoutError, *_network_errors())):
            if _offline():  # datasets words it "Couldn't reach ... (OfflineModeIsEnabled)"
                return "offline, and not in the local cache"
            return f"{type(error).__name__}: {' '.join(str(error).split())}"
        error = error.__cause__ or error.__context__
    return None


def _offline() -> bool:
    import datasets
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection errors (huggingface_hub uses httpx from 1.0, requests before)."""
    errors = []
    with contextlib.suppress(ImportError):
        import httpx

        errors.append(httpx.TransportError)
    with contextlib.suppress(ImportError):
        import requests

        errors.append(requests.exceptions.ConnectionError)
    return tuple(errors)
