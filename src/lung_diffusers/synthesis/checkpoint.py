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


def resolve_checkpoint(
    name: str, revision: str | None = None, cache_dir: str | None = None, flag: str = "--pipeline"
) -> CheckpointRef:
    """Find a pipeline folder, or download (or find in the cache) a Hub repo at ``revision``.

    ``flag`` names the option it came from in errors (``--pipeline``, or ``--upscaler`` for a cascade's second
    stage, whose folder is a LungSDMUpscalePipeline's).

    Raises:
        FileNotFoundError: a local path that does not exist, or neither a pipeline folder nor a reachable Hub repo.
    """
    from ..sources import local_or_hub

    kind = "LungSDMUpscalePipeline" if flag == "--upscaler" else "LungSDMPipeline"
    revision_flag = "--revision" if flag == "--pipeline" else f"{flag}-revision"
    with local_or_hub(name, flag) as where:
        if isinstance(where, Path):
            if not where.is_dir():
                raise NotADirectoryError(f"{flag} {name} is a file; give a {kind} folder")
            if revision is not None:
                raise ValueError(f"{revision_flag} applies to Hub repos; {name} is a local folder")
            if not (where / "model_index.json").is_file():
                raise FileNotFoundError(f"{name} has no model_index.json: give a {kind} folder (save_pretrained)")
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


def load_pipeline(checkpoint: CheckpointRef, scheduler_class: str, device="cpu", upscaler: CheckpointRef | None = None):
    """The checkpoint's :class:`~lung_diffusers.LungSDMPipeline` with the chosen scheduler, quiet, on ``device``.

    With ``upscaler`` (a cascade's second stage), a :class:`~lung_diffusers.LungSDMCombinedPipeline` of the two,
    both sampling with the chosen scheduler on their own noise schedules.
    """
    from ..pipelines import LungSDMCombinedPipeline, LungSDMPipeline, LungSDMUpscalePipeline
    from ..pipelines import load_pipeline as load
    from .schedulers import make_scheduler

    _check_stage(checkpoint, "LungSDMPipeline", "--pipeline")
    pipe = load(checkpoint.local_dir, device=None, pipeline_class=LungSDMPipeline)
    pipe.scheduler = make_scheduler(scheduler_class, pipe.scheduler.config)
    if upscaler is not None:
        _check_stage(upscaler, "LungSDMUpscalePipeline", "--upscaler")
        stage_two = load(upscaler.local_dir, device=None, pipeline_class=LungSDMUpscalePipeline, flag="--upscaler")
        stage_two.scheduler = make_scheduler(scheduler_class, stage_two.scheduler.config)
        pipe = LungSDMCombinedPipeline.from_stages(pipe, stage_two)
        pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


_STAGE_FLAGS = {"LungSDMPipeline": "--pipeline", "LungSDMUpscalePipeline": "--upscaler"}


def _check_stage(checkpoint: CheckpointRef, expected: str, flag: str) -> None:
    """Refuse a folder of the other cascade stage with the option that takes it (before loading any weights)."""
    import json

    try:
        found = json.loads((checkpoint.local_dir / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError):
        return  # the loader says what is wrong with the folder
    if found != expected and found in _STAGE_FLAGS:
        raise ValueError(
            f"{flag} {checkpoint.name} is a {found} folder; synthesize takes a {expected} as {flag} "
            f"(pass this one as {_STAGE_FLAGS[found]})"
        )
