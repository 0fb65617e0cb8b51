"""Every sampler the package offers, in one table: command-line name, display name, diffusers class, whether
RePaint can use it, and the default.

The CLI, the demo, the Space, ``synthesize`` and the evaluation scripts map their options onto this table, and
both pipelines check an assigned scheduler against it. Each scheduler is built with ``from_config`` of the
checkpoint's own scheduler config, so the noise schedule stays the one the model was trained with; which of
them read the learned variance is :mod:`lung_diffusers.learned_variance`'s rule.

To add a sampler, add a row to ``SCHEDULERS`` (and a test that samples with it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerEntry:
    """One sampler.

    Args:
        name: the command-line name (``--scheduler dpm``).
        display_name: what the Space and reports show.
        class_name: the diffusers class.
        sdm: `True` when :class:`~lung_diffusers.LungSDMPipeline` (and the upscaler) can sample with it.
        repaint: `True` when :class:`~lung_diffusers.LungRePaintPipeline` can, i.e. it can step back up the chain.
        image_to_image: `True` when it can start part-way down the chain (``strength < 1``: anomaly maps).
        config_overrides: settings laid over the checkpoint's scheduler config for this sampler (an explicit
            override in :meth:`from_config` wins).
    """

    name: str
    display_name: str
    class_name: str
    sdm: bool = True
    repaint: bool = False
    image_to_image: bool = False
    config_overrides: tuple[tuple[str, object], ...] = ()

    @property
    def scheduler_class(self):
        import diffusers

        return getattr(diffusers, self.class_name)

    def from_config(self, config, **overrides):
        """The scheduler, built from a checkpoint's scheduler config (keeping its noise schedule)."""
        return self.scheduler_class.from_config(config, **{**dict(self.config_overrides), **overrides})


SCHEDULERS: tuple[SchedulerEntry, ...] = (
    SchedulerEntry("dpm", "DPM-Solver++", "DPMSolverMultistepScheduler"),  # diffusers' default algorithm_type
    SchedulerEntry("unipc", "UniPC", "UniPCMultistepScheduler"),
    SchedulerEntry("ddim", "DDIM", "DDIMScheduler", repaint=True, image_to_image=True),
    SchedulerEntry("euler", "Euler", "EulerDiscreteScheduler"),
    SchedulerEntry("euler-ancestral", "Euler ancestral", "EulerAncestralDiscreteScheduler"),
    # "trailing": with the default "linspace" spacing Heun's last correction calls the U-Net at timestep 0 on an
    # almost clean image, where its noise estimate is unreliable; at 10 steps that left ~120 HU of speckle in the
    # lungs of the demo SDM (Euler: ~57). Trailing spacing stops at the last interval's start (55 HU).
    SchedulerEntry("heun", "Heun", "HeunDiscreteScheduler", config_overrides=(("timestep_spacing", "trailing"),)),
    SchedulerEntry("ddpm", "DDPM", "DDPMScheduler", repaint=True, image_to_image=True),
    SchedulerEntry("lms", "LMS", "LMSDiscreteScheduler"),
    SchedulerEntry("pndm", "PNDM", "PNDMScheduler"),
    SchedulerEntry("deis", "DEIS", "DEISMultistepScheduler"),
    SchedulerEntry("ddpm-parallel", "DDPM (parallel)", "DDPMParallelScheduler"),
    SchedulerEntry("repaint", "RePaint", "RePaintScheduler", sdm=False, repaint=True),
)

# The sampler and steps that entry points default to at the first stage's size (a saved pipeline's own scheduler
# stays DDPM, for the learned variance). Chosen by the sampler study (`make evaluate-samplers`, 16 held-out masks x
# 2 seeds on the demo SDM): the fewest steps at which lung Dice, lung noise and FRD all stay within two real
# patients' spread of DDPM 1000's. The deterministic samplers (DPM-Solver++, UniPC, DDIM, Euler, Heun) keep lung
# Dice but sit 1.6-2.2 FRD above DDPM 1000 (spread 0.96); DDPM 100 is 0.23 above, at 9x DDPM 1000's speed.
DEFAULT_SCHEDULER = "ddpm"
DEFAULT_STEPS = 100
# Both stages of the cascade (an upscaler given): the settings its 256-px fidelity goals were measured and met at.
CASCADE_SCHEDULER = "dpm"
CASCADE_STEPS = 25
# The evaluations' protocol (`lung-diffusers evaluate`, `training/evaluate_fidelity.py`; the README's tables): fixed,
# so that checkpoints measured before and after a change of the defaults stay comparable.
EVALUATION_SCHEDULER = "dpm"
EVALUATION_STEPS = 25


def default_sampling(cascade: bool = False) -> tuple[str, int]:
    """The default ``(sampler, steps)``: the sampler study's for one stage, the measured cascade's for two."""
    return (CASCADE_SCHEDULER, CASCADE_STEPS) if cascade else (DEFAULT_SCHEDULER, DEFAULT_STEPS)

_BY_NAME = {entry.name: entry for entry in SCHEDULERS}


def scheduler_names(*, repaint: bool = False, image_to_image: bool = False) -> tuple[str, ...]:
    """Command-line names of the samplers of the SDM pipelines; with ``repaint=True``, of RePaint; with
    ``image_to_image=True``, of RePaint's partial chains (anomaly reconstruction)."""
    if image_to_image:
        return tuple(e.name for e in SCHEDULERS if e.image_to_image)
    return tuple(e.name for e in SCHEDULERS if (e.repaint if repaint else e.sdm))


def display_names(*, repaint: bool = False) -> tuple[str, ...]:
    return tuple(get_entry(name).display_name for name in scheduler_names(repaint=repaint))


def get_entry(name: str) -> SchedulerEntry:
    """The entry of a command-line or display name; a clear error listing the choices otherwise."""
    entry = _BY_NAME.get(name) or next((e for e in SCHEDULERS if e.display_name == name), None)
    if entry is None:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(_BY_NAME)}")
    return entry


def entry_of(scheduler) -> SchedulerEntry | None:
    """The entry of a scheduler instance or class (its subclasses too); `None` for a sampler not in the table."""
    cls = scheduler if isinstance(scheduler, type) else type(scheduler)
    exact = next((e for e in SCHEDULERS if e.class_name == cls.__name__), None)
    if exact is not None:
        return exact
    return next((e for e in SCHEDULERS if issubclass(cls, e.scheduler_class)), None)


def make_scheduler(name: str, config, **overrides):
    """The sampler of a command-line or display name, built from ``config`` (a checkpoint's scheduler config)."""
    return get_entry(name).from_config(config, **overrides)


def check_scheduler(scheduler, *, repaint: bool = False) -> None:
    """Refuse anything but an instance of a sampler the pipeline can use (run when ``pipe.scheduler`` is assigned).

    A string, a class or `None` would otherwise fail deep inside the next call, and a scheduler of another model
    family (flow matching, LCM, consistency models) would silently sample wrong images: these models predict
    the noise (epsilon) of a DDPM noise schedule.

    Raises:
        TypeError: not a scheduler instance (a string, a class, `None`, ...).
        ValueError: a scheduler the pipeline cannot sample with.
    """
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    names = scheduler_names(repaint=repaint)
    classes = ", ".join(get_entry(n).class_name for n in names)
    first = get_entry(names[0]).class_name
    swap = f"pipe.scheduler = {first}.from_config(pipe.scheduler.config)"
    if isinstance(scheduler, type) and issubclass(scheduler, SchedulerMixin):
        raise TypeError(
            f"the scheduler must be an instance, got the class {scheduler.__name__}: build one from the current "
            f"scheduler's config, pipe.scheduler = {scheduler.__name__}.from_config(pipe.scheduler.config)"
        )
    if not isinstance(scheduler, SchedulerMixin):
        hint = f" (names such as {scheduler!r} are the command line's --scheduler choices)" if isinstance(scheduler, str) else ""
        raise TypeError(f"the scheduler must be a diffusers scheduler instance, got {scheduler!r}{hint}; one of {classes}, e.g. {swap}")
    entry = entry_of(scheduler)
    if entry is None or not (entry.repaint if repaint else entry.sdm):
        task = "run RePaint, which steps back up the noise schedule" if repaint else "sample these models"
        raise ValueError(f"{type(scheduler).__name__} cannot {task}: use one of {classes}, e.g. {swap}")
