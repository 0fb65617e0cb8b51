"""Keep a pipeline's noise schedule when users swap schedulers.

diffusers' ``from_config`` skips the config keys that the source scheduler left at their defaults
(``_use_default_values``). A ``DDPMScheduler()`` built without ``beta_start`` / ``beta_end`` therefore
hands its schedule to ``HeunDiscreteScheduler.from_config(...)`` or ``LMSDiscreteScheduler.from_config(...)``
*without* the betas, and those use their own defaults (0.00085 to 0.012): sampling then follows another noise
schedule than the model was trained on, silently. Pipelines pin the schedule into the config instead.
"""

from __future__ import annotations

SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")


def pin_noise_schedule(scheduler) -> None:
    """Mark the scheduler's noise-schedule values as explicit, so ``from_config`` passes them on."""
    used_defaults = list(scheduler.config.get("_use_default_values", []))
    kept = [key for key in used_defaults if key not in SCHEDULE_KEYS or key not in scheduler.config]
    if kept != used_defaults:
        scheduler.register_to_config(_use_default_values=kept)
