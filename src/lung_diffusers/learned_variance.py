"""The learned-variance rule (improved DDPM's ``learn_sigma``, which SDM keeps), written once.

A learned-variance U-Net outputs, after the noise of the sample, one interpolation value per sample channel
(``out_channels == 2 * sample channels``). The sample's channels are the image's: a super-resolution stage's
low-resolution input (``low_res_channels``) enters beside the sample but is not predicted. Only diffusers'
DDPM schedulers with ``variance_type="learned_range"`` read the second half; every other scheduler gets the
noise alone (DPM-Solver, for one, would slice ``[:, :3]`` assuming RGB).
"""

from __future__ import annotations


def _reads_variance_channels(scheduler) -> bool:
    # DDPM schedulers' step() splits the model output into noise and variance values (by the sample's channels).
    from diffusers import DDPMParallelScheduler, DDPMScheduler

    return isinstance(scheduler, (DDPMScheduler, DDPMParallelScheduler))


def sample_channels(config) -> int:
    """Channels of the sample a U-Net denoises (its ``in_channels``; extra conditioning inputs have their own keys)."""
    return int(config["in_channels"] if isinstance(config, dict) else config.in_channels)


def predicts_learned_variance(config) -> bool:
    """Whether a U-Net config (or ``model.config``) predicts variance values after the noise."""
    out_channels = int(config["out_channels"] if isinstance(config, dict) else config.out_channels)
    return out_channels == 2 * sample_channels(config)


def split_noise_and_variance(model_output, sample):
    """``(noise, variance)`` of a U-Net output, split by the channels of ``sample`` (variance may be empty)."""
    channels = sample.shape[1]
    return model_output[:, :channels], model_output[:, channels:]


def scheduler_reads_learned_variance(scheduler) -> bool:
    """Whether ``scheduler.step`` reads the learned-variance channels after the noise."""
    return _reads_variance_channels(scheduler) and scheduler.config.get("variance_type") == "learned_range"


def check_variance_setting(scheduler, model_config) -> None:
    """Refuse a scheduler variance setting that cannot work with the U-Net (a clear error instead of NaNs)."""
    variance_type = scheduler.config.get("variance_type")
    if _reads_variance_channels(scheduler) and variance_type == "learned":
        raise ValueError(
            "variance_type='learned' reads the variance channel as a variance, which for these models is an "
            "interpolation value in [-1, 1] (its square root is NaN). The parameterisation is 'learned_range': "
            "pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, variance_type='learned_range')"
        )
    if scheduler_reads_learned_variance(scheduler) and not predicts_learned_variance(model_config):
        raise ValueError(
            f"the scheduler's variance_type={variance_type!r} needs a learned-variance model, but this U-Net predicts "
            "epsilon only; use e.g. DDPMScheduler.from_config(pipe.scheduler.config, variance_type='fixed_small')"
        )
