"""One scheduler table (issue 16): every entry point's --scheduler choices come from lung_diffusers.scheduler_registry,
and each entry builds from a checkpoint's config and is accepted by the pipelines it is marked for."""

from __future__ import annotations

import argparse

import pytest
from diffusers import DDPMScheduler, LCMScheduler

from lung_diffusers.scheduler_registry import (
    CASCADE_SCHEDULER,
    CASCADE_STEPS,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    SCHEDULERS,
    check_scheduler,
    default_sampling,
    entry_of,
    get_entry,
    make_scheduler,
    scheduler_names,
)


def scheduler_choices(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    """``--scheduler`` choices of a parser and of each of its subcommands, by command name."""
    found = {}
    for action in parser._actions:
        if "--scheduler" in action.option_strings:
            found[parser.prog] = tuple(action.choices) if action.choices else action.help
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update({f"{name}": c for c in scheduler_choices(sub).values()})
    return found


def test_every_command_line_offers_the_registry_s_samplers():
    from lung_diffusers import cli
    from lung_diffusers.training import fidelity_evaluation

    commands = scheduler_choices(cli.build_parser())
    # synthesize checks the name itself (a stored run's settings are checked the same way) and lists it in its help.
    from lung_diffusers.synthesis import schedulers as synthesis_schedulers

    assert tuple(synthesis_schedulers.SCHEDULER_CLASSES) == scheduler_names()
    assert all(name in commands["synthesize"] for name in scheduler_names())
    assert commands["remove-nodule"] == commands["insert-nodule"] == scheduler_names(repaint=True)
    assert commands["anomaly-map"] == scheduler_names(image_to_image=True)
    from lung_diffusers import demo

    for name in scheduler_names():
        assert demo.parse_args(["--scheduler", name]).scheduler == name
    # The demo draws through both stages by default, at the cascade's measured settings; 64 px alone at the
    # sampler study's.
    assert (demo.parse_args([]).scheduler, demo.parse_args([]).steps) == (CASCADE_SCHEDULER, CASCADE_STEPS)
    no_upscaler = demo.parse_args(["--no-upscaler"])
    assert (no_upscaler.scheduler, no_upscaler.steps) == (DEFAULT_SCHEDULER, DEFAULT_STEPS) == ("ddpm", 100)
    assert demo.parse_args(["--no-upscaler", "--scheduler", "unipc", "--steps", "7"]).steps == 7
    assert fidelity_evaluation.SCHEDULERS == scheduler_names()


def test_the_space_offers_registry_samplers_under_their_display_names():
    import importlib
    import sys
    from pathlib import Path

    space_dir = str(Path(__file__).resolve().parents[1] / "spaces")
    if space_dir not in sys.path:
        sys.path.insert(0, space_dir)
    model_service = importlib.import_module("lung_space.model_service")
    for display, class_name in model_service.SCHEDULERS.items():
        entry = get_entry(display)
        assert entry.display_name == display and entry.class_name == class_name and entry.sdm


@pytest.mark.parametrize("entry", SCHEDULERS, ids=[e.name for e in SCHEDULERS])
def test_each_entry_builds_from_a_checkpoint_config_and_is_accepted_where_marked(entry):
    config = DDPMScheduler(variance_type="learned_range", beta_start=1e-4, beta_end=0.02).config
    scheduler = make_scheduler(entry.name, config)
    assert type(scheduler).__name__ == entry.class_name and entry_of(scheduler) is entry
    for repaint, allowed in ((False, entry.sdm), (True, entry.repaint)):
        if allowed:
            check_scheduler(scheduler, repaint=repaint)
        else:
            with pytest.raises(ValueError, match="cannot"):
                check_scheduler(scheduler, repaint=repaint)
    assert not entry.image_to_image or entry.repaint


def test_names_and_foreign_samplers():
    assert get_entry("DPM-Solver++") is get_entry("dpm") and DEFAULT_SCHEDULER in scheduler_names()
    with pytest.raises(ValueError, match="unknown scheduler 'dpm-turbo'; choose one of dpm"):
        get_entry("dpm-turbo")
    assert entry_of(LCMScheduler()) is None
    with pytest.raises(ValueError, match="LCMScheduler cannot sample these models"):
        check_scheduler(LCMScheduler())


def test_heun_never_asks_the_model_at_timestep_zero(tiny_pipe):
    """Heun's last correction at timestep ~0 (diffusers' default spacing) left ~120 HU of speckle in the demo SDM's
    lungs at 10 steps; the registry's Heun uses trailing spacing, whose last model call is a whole interval up."""
    import torch

    config = DDPMScheduler(variance_type="learned_range").config
    assert make_scheduler("heun", config).config.timestep_spacing == "trailing"
    assert make_scheduler("heun", config, timestep_spacing="linspace").config.timestep_spacing == "linspace"
    seen = []
    forward = tiny_pipe.unet.forward
    tiny_pipe.unet.forward = lambda sample, timestep, *a, **k: seen.append(float(timestep.flatten()[0])) or forward(
        sample, timestep, *a, **k
    )
    tiny_pipe.scheduler = make_scheduler("heun", tiny_pipe.scheduler.config)
    size = tiny_pipe.unet.config.sample_size
    labels = torch.zeros(1, size, size, dtype=torch.long)
    tiny_pipe(labels, num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="np")
    assert len(seen) == 19 and min(seen) > 50  # 1000 training steps / 10: the last call is at ~100, not ~0


def test_the_defaults_are_the_sampler_study_s_and_the_cascade_s_measured_settings():
    assert default_sampling() == (DEFAULT_SCHEDULER, DEFAULT_STEPS) == ("ddpm", 100)
    assert default_sampling(cascade=True) == (CASCADE_SCHEDULER, CASCADE_STEPS) == ("dpm", 25)
    # DDPM keeps the learned variance; both defaults are samplers the SDM pipelines accept.
    assert all(get_entry(name).sdm for name in (DEFAULT_SCHEDULER, CASCADE_SCHEDULER))
