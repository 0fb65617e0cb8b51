"""The ``--scheduler`` names of ``lung-diffusers synthesize``: the SDM samplers of
:mod:`lung_diffusers.scheduler_registry`, by command-line name and diffusers class name (which synthesis
records in its settings, so a resumed run uses the same sampler)."""

from __future__ import annotations

from ..scheduler_registry import SCHEDULERS, get_entry, scheduler_names

SCHEDULER_CLASSES: dict[str, str] = {name: get_entry(name).class_name for name in scheduler_names()}


def check_scheduler_name(name: str) -> str:
    """The diffusers class name for ``name``; a clear error listing the choices otherwise."""
    if name not in SCHEDULER_CLASSES:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_CLASSES)}")
    return SCHEDULER_CLASSES[name]


def make_scheduler(class_name: str, config):
    """A diffusers scheduler of ``class_name`` (e.g. ``"DDIMScheduler"``, as recorded in the settings) built from
    ``config``."""
    entry = next((e for e in SCHEDULERS if e.class_name == class_name and e.sdm), None)
    if entry is None:
        raise ValueError(f"unknown scheduler class {class_name!r}; expected one of {sorted(SCHEDULER_CLASSES.values())}")
    return entry.from_config(config)
