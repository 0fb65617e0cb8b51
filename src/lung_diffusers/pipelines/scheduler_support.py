"""The schedulers each pipeline can sample with, checked when ``pipe.scheduler`` is assigned.

A string, a class or `None` in ``pipe.scheduler`` would otherwise fail deep inside the next call, and a
scheduler of another model family (flow matching, LCM, consistency models) would silently sample wrong images:
these models predict the noise (epsilon) of a DDPM noise schedule.
"""

from __future__ import annotations

import diffusers
from diffusers import DDIMScheduler, DDPMParallelScheduler, DDPMScheduler, RePaintScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..synthesis.schedulers import SCHEDULER_CLASSES

# LungSDMPipeline: the samplers of ``lung-diffusers synthesize --scheduler``, plus DDPM's batched variant.
SDM_SCHEDULERS: tuple[type[SchedulerMixin], ...] = (
    *(getattr(diffusers, name) for name in SCHEDULER_CLASSES.values()),
    DDPMParallelScheduler,
)
# LungRePaintPipeline: RePaint jumps back up the noise schedule, which multistep solvers cannot follow.
REPAINT_SCHEDULERS: tuple[type[SchedulerMixin], ...] = (DDPMScheduler, DDIMScheduler, RePaintScheduler)


def check_scheduler(scheduler, supported: tuple[type[SchedulerMixin], ...], task: str) -> None:
    """Refuse anything but an instance of one of the ``supported`` scheduler classes.

    Args:
        scheduler: what is being assigned to ``pipe.scheduler``.
        supported: the accepted classes (their subclasses too).
        task: what the pipeline does with it, for the message (e.g. ``"sample LungSDMPipeline's models"``).

    Raises:
        TypeError: not a scheduler instance (a string, a class, `None`, ...).
        ValueError: a scheduler of an unsupported class.
    """
    names = ", ".join(cls.__name__ for cls in supported)
    swap = f"pipe.scheduler = {supported[0].__name__}.from_config(pipe.scheduler.config)"
    if isinstance(scheduler, type) and issubclass(scheduler, SchedulerMixin):
        raise TypeError(
            f"the scheduler must be an instance, got the class {scheduler.__name__}: build one from the current "
            f"scheduler's config, pipe.scheduler = {scheduler.__name__}.from_config(pipe.scheduler.config)"
        )
    if not isinstance(scheduler, SchedulerMixin):
        hint = " (names such as 'dpm' are the command line's --scheduler choices)" if isinstance(scheduler, str) else ""
        raise TypeError(
            f"the scheduler must be a diffusers scheduler instance, got {scheduler!r}{hint}; one of {names}, e.g. "
            f"{swap}"
        )
    if not isinstance(scheduler, supported):
        raise ValueError(f"{type(scheduler).__name__} cannot {task}: use one of {names}, e.g. {swap}")
