"""The generating checkpoint: where it is (a folder, or a Hub repo at a commit), the hashes of its weights and
configs, loading.

Rows record the checkpoint as given (a folder path or a repo id), the Hub commit it resolved to, and the
sha256 of its weights, so a row names exactly the weights that made it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class CheckpointRef:
    """A resolved checkpoint: ``name`` as given, the Hub ``revision`` (commit; None for a folder), its local files
    and their hashes (:func:`weights_sha256`, :func:`configs_sha256`)."""

    name: str
    revision: str | None
    local_dir: Path
    weights_sha256: str
    configs_sha256: str


def resolve_checkpoint(name: str, revision: str | None = None, cache_dir: str | None = None) -> CheckpointRef:
    """Find a LungSDMPipeline folder, or download (or find in the cache) a Hub repo at ``revision``.

    Raises:
        FileNotFoundError: a local path that does not exist, or neither a pipeline folder nor a reachable Hub repo.
    """
    from ..sources import local_or_hub

    with local_or_hub(name, "--pipeline") as where:
        if isinstance(where, Path):
            if not where.is_dir():
                raise NotADirectoryError(f"--pipeline {name} is a file; give a LungSDMPipeline folder")
            if revision is not None:
                raise ValueError(f"--revision applies to Hub repos; {name} is a local folder")
            if not (where / "model_index.json").is_file():
                raise FileNotFoundError(f"{name} has no model_index.json: give a LungSDMPipeline folder (save_pretrained)")
            return CheckpointRef(name, None, where, weights_sha256(where), configs_sha256(where))
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(name, revision=revision, cache_dir=cache_dir))
        commit = local.name if _COMMIT.match(local.name) else _hub_commit(name, revision)
    return CheckpointRef(name, commit, local, weights_sha256(local), configs_sha256(local))


def _hub_commit(repo_id: str, revision: str | None) -> str:
    from huggingface_hub import HfApi

    return HfApi().model_info(repo_id, revision=revision).sha


def weights_sha256(folder: str | Path) -> str:
    """sha256 of the weights in a pipeline folder.

    With one weights file (the usual ``unet/diffusion_pytorch_model.safetensors``) it is that file's sha256, as
    ``sha256sum`` prints it; with several, the sha256 of their ``sha256sum``-style manifest (``<sha>  <path>``
    lines, paths relative to the folder, sorted).
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise FileNotFoundError(f"{folder} holds no weights (*.safetensors or *.bin)")
    digests = [(_file_sha256(p), p.relative_to(folder).as_posix()) for p in files]
    if len(digests) == 1:
        return digests[0][0]
    manifest = "".join(f"{digest}  {relative}\n" for digest, relative in digests)
    return hashlib.sha256(manifest.encode()).hexdigest()


def configs_sha256(folder: str | Path) -> str:
    """sha256 of a pipeline folder's configs: the ``sha256sum``-style manifest of ``model_index.json`` and each
    component's ``config.json`` / ``scheduler_config.json`` (the noise schedule changes the images as much as the
    weights do)."""
    folder = Path(folder)
    files = [folder / "model_index.json", *sorted(folder.glob("*/config.json"))]
    files += sorted(folder.glob("*/scheduler_config.json"))
    manifest = "".join(f"{_file_sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in files if p.is_file())
    return hashlib.sha256(manifest.encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pipeline(checkpoint: CheckpointRef, scheduler_class: str, device="cpu"):
    """The checkpoint's :class:`~lung_diffusers.LungSDMPipeline` with the chosen scheduler, quiet, on ``device``."""
    from ..pipelines import LungSDMPipeline
    from ..pipelines import load_pipeline as load
    from .schedulers import make_scheduler

    pipe = load(checkpoint.local_dir, device=None, pipeline_class=LungSDMPipeline)
    pipe.scheduler = make_scheduler(scheduler_class, pipe.scheduler.config)
    return pipe.to(device)
