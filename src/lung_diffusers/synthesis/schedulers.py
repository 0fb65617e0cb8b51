"""The ``--scheduler`` names of ``lung-diffusers synthesize`` and the diffusers classes they select.

The demo's short names, plus the other diffusers samplers the pipeline supports. Each is built with
``from_config`` of the checkpoint's own scheduler config, so the noise schedule stays the one the model was
trained with.
"""

from __future__ import annotations

SCHEDULER_CLASSES: dict[str, str] = {
    "dpm": "DPMSolverMultistepScheduler",  # DPM-Solver++ (diffusers' default algorithm_type)
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "deis": "DEISMultistepScheduler",
}


def check_scheduler_name(name: str) -> str:
    """The diffusers class name for ``name``; a clear error listing the choices otherwise."""
    if name not in SCHEDULER_CLASSES:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_CLASSES)}")
    return SCHEDULER_CLASSES[name]


def make_scheduler(class_name: str, config):
    """A diffusers scheduler of ``class_name`` (e.g. ``"DDIMScheduler"``) built from ``config``."""
    import diffusers

    if class_name not in SCHEDULER_CLASSES.values():
        raise ValueError(f"unknown scheduler class {class_name!r}; expected one of {sorted(SCHEDULER_CLASSES.values())}")
    return getattr(diffusers, class_name).from_config(config)
