"""Clipping of the denoised estimate x0 to the data range, for any diffusers scheduler.

guided-diffusion samples SDM with ``clip_denoised=True``. DDPM and DDIM clip x0 themselves (``clip_sample``);
DPM-Solver, UniPC and DEIS only when ``thresholding`` is set, and Euler, Heun and LMS never. Pixel-space CT
models need it: unclipped fast solvers drift towards black slices. For the schedulers that do not clip
(or are told not to), :func:`clip_denoised_epsilon` clips x0 and returns the noise prediction that yields
the clipped x0, so the scheduler sees a consistent model output. For DPM-Solver-type schedulers this is
exactly their thresholding with ``sample_max_value=1`` (their dynamic threshold is then 1).

Two sample parameterisations cover the schedulers of diffusers:

* variance preserving (DDPM, DDIM, PNDM, DPM-Solver, UniPC, DEIS, ...): ``x_t = alpha_t x0 + sigma_t eps``;
* variance exploding (Euler, Heun, LMS, KDPM2, ...: ``scale_model_input`` divides by ``sqrt(sigma^2 + 1)``):
  ``x = x0 + sigma eps``, with ``sigma = scheduler.sigmas[scheduler.step_index]`` set by ``scale_model_input``.
"""

from __future__ import annotations

import inspect

import torch


def scheduler_clips_itself(scheduler) -> bool:
    """Whether the scheduler clips x0 to [-1, 1] on its own (DDPM / DDIM with ``clip_sample=True``)."""
    # Ask the class, not the config: ``DPMSolverMultistepScheduler.from_config(ddpm_config)`` carries DDPM's
    # ``clip_sample=True`` along in its config without ever using it.
    if "clip_sample" not in inspect.signature(type(scheduler).__init__).parameters:
        return False
    config = scheduler.config
    return bool(config.get("clip_sample", False)) and float(config.get("clip_sample_range", 1.0)) <= 1.0


def _is_variance_exploding(scheduler) -> bool:
    # Their samples live in sigma space: the initial noise is scaled by more than 1.
    return hasattr(scheduler, "sigmas") and not hasattr(scheduler, "_sigma_to_alpha_sigma_t") and float(
        scheduler.init_noise_sigma
    ) > 1.0


def _step_index(scheduler, timestep) -> int:
    index = getattr(scheduler, "step_index", None)
    return index if index is not None else int(scheduler.index_for_timestep(timestep))


def clip_denoised_epsilon(
    scheduler, sample: torch.Tensor, epsilon: torch.Tensor, timestep, clip_range: float = 1.0
) -> torch.Tensor:
    """The noise prediction whose x0 estimate is ``clamp(x0(epsilon), -clip_range, clip_range)``.

    Args:
        scheduler: the pipeline's scheduler, after ``scale_model_input`` of this step.
        sample: the scheduler's current sample (before ``scale_model_input``).
        epsilon: the predicted noise for ``sample`` (after guidance).
        timestep: the current timestep.
    """
    work = torch.float32 if epsilon.dtype in (torch.float16, torch.bfloat16) else epsilon.dtype
    x, eps = sample.to(work), epsilon.to(work)
    if _is_variance_exploding(scheduler):
        sigma = scheduler.sigmas[_step_index(scheduler, timestep)].to(device=x.device, dtype=work)
        x0 = (x - sigma * eps).clamp(-clip_range, clip_range)
        return ((x - x0) / sigma).to(epsilon.dtype)
    if hasattr(scheduler, "_sigma_to_alpha_sigma_t") and hasattr(scheduler, "sigmas"):
        # DPM-Solver family: use the scheduler's own sigma for this step (it may differ from alphas_cumprod[t]
        # with Karras / exponential sigmas).
        alpha, sigma = scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[_step_index(scheduler, timestep)])
        alpha, sigma = (torch.as_tensor(v, device=x.device, dtype=work) for v in (alpha, sigma))
    else:
        alpha_prod = scheduler.alphas_cumprod.to(device=x.device, dtype=work)[int(timestep)]
        alpha, sigma = alpha_prod.sqrt(), (1 - alpha_prod).sqrt()
    x0 = ((x - sigma * eps) / alpha).clamp(-clip_range, clip_range)
    return ((x - alpha * x0) / sigma).to(epsilon.dtype)
