"""One loader for every entry point: ``load_pipeline(source, scheduler=..., device=..., pipeline_class=...)``.

It reads the folder's (or Hub repo's) ``model_index.json`` to pick the lung-diffusers class that loads it (a
diffusers ``DDPMPipeline`` folder, the healthy prior, loads as :class:`LungRePaintPipeline`), tells a missing
local folder from an unreachable Hub repo, swaps in a sampler of :mod:`lung_diffusers.scheduler_registry` and
hides diffusers' loading bar.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .pipeline_folders import FOLDER_LOADERS as LOADERS  # model_index.json's _class_name -> its loader


def _pipeline_class(name: str):
    from .. import pipelines

    return getattr(pipelines, name)


def load_pipeline(
    source: str | os.PathLike,
    scheduler: str | None = None,
    device: str | None = "cpu",
    pipeline_class: type | str | None = None,
    *,
    flag: str = "--pipeline",
    progress_bar: bool = False,
    **from_pretrained_kwargs,
):
    """Load a saved lung-diffusers pipeline (a local folder or a Hub repo id).

    Args:
        source: the pipeline folder or Hub repo id.
        scheduler: a command-line or display name of :mod:`lung_diffusers.scheduler_registry` (e.g. ``"dpm"``),
            built from the folder's own scheduler config; `None` keeps the saved scheduler.
        device: where to move the pipeline (`None`: leave it on the CPU as loaded).
        pipeline_class: the class to load with (or its name); default: the one the folder's ``model_index.json``
            names (see ``LOADERS``). A folder the class cannot load is refused with the class that loads it.
        flag: the option the source came from, for error messages (``--pipeline``, ``LUNG_SPACE_PIPELINE``, ...).
        progress_bar: keep the pipeline's sampling bar on.
        from_pretrained_kwargs: passed on (``torch_dtype``, ``revision``, ...).

    Raises:
        ValueError: a missing local folder, an unreachable repo, a folder of no lung-diffusers pipeline, or a
            scheduler name that is not in the registry or that the pipeline cannot sample with.
    """
    from diffusers import DiffusionPipeline

    from ..scheduler_registry import make_scheduler
    from ..sources import local_or_hub

    with local_or_hub(source, flag) as where:
        if isinstance(where, Path) and not (where / "model_index.json").is_file():
            raise ValueError(f"{flag} {where} is not a pipeline folder (it has no model_index.json)")
        if pipeline_class is None:
            index = dict(DiffusionPipeline.load_config(where))
            name = index.get("_class_name")
            if name not in LOADERS:
                raise ValueError(
                    f"{flag} {source} holds a {name or 'pipeline without a class name'}, which lung-diffusers cannot "
                    f"load; it loads {', '.join(sorted(LOADERS))} folders"
                )
            pipeline_class = LOADERS[name]
        if isinstance(pipeline_class, str):
            pipeline_class = _pipeline_class(pipeline_class)
        with _quiet_diffusers():
            try:
                pipe = pipeline_class.from_pretrained(where, **from_pretrained_kwargs)
            except (OSError, TypeError) as error:
                raise ValueError(f"could not load the pipeline {source}: {error}") from None
    if scheduler is not None:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    if device is not None:
        import torch

        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown device {device!r}: use e.g. cpu, cuda, cuda:1 or mps") from None
    pipe.set_progress_bar_config(disable=not progress_bar)
    return pipe if device is None else pipe.to(device)


@contextlib.contextmanager
def _quiet_diffusers():
    """Hide diffusers' loading bar and its notes about the EMA fields in exported U-Net configs."""
    from diffusers.utils import logging

    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
