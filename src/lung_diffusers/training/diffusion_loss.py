"""The improved-DDPM hybrid loss that SDM trains with (Nichol & Dhariwal 2021, eq. 16).

``loss = MSE(epsilon) + T / 1000 * L_vb``, where ``L_vb`` is the variational-bound term of the sampled
timestep in bits per dimension, computed with the predicted mean frozen (stop-gradient on epsilon) so that it
trains only the learned variance. This is guided-diffusion's ``LossType.MSE`` with ``learn_sigma=True``: the
paper's ``lambda = 0.001`` times the ``T`` terms the single sampled term stands for. The formulas follow
guided-diffusion (MIT licence, (c) 2021 OpenAI), rewritten against the betas of a diffusers
``DDPMScheduler`` (in float64, as guided-diffusion computes them); the variance parameterisation is the
scheduler's ``learned_range``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler


@dataclass
class DiffusionLoss:
    """The batch loss and its parts (means over the batch), for logging."""

    loss: torch.Tensor
    mse: torch.Tensor
    vb: torch.Tensor | None


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL divergence between two diagonal Gaussians, elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of 8-bit data scaled to [-1, 1] under a Gaussian discretised into 256 bins (nats)."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_probs = torch.where(
        x < -0.999,  # the lowest bin reaches to -inf
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log((cdf_plus - cdf_min).clamp(min=1e-12))),
    )
    return log_probs


def _per_image_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


class HybridDiffusionLoss:
    """Epsilon MSE, plus the variational bound for learned-variance (``learned_range``) models.

    Args:
        scheduler: the training noise scheduler; its ``betas`` define the forward process.
    """

    def __init__(self, scheduler: DDPMScheduler):
        # From the betas in float64: betas recovered from the float32 alphas_cumprod (1 - a ratio of two numbers
        # near 1) are off by up to 3e-4 relative at small t, and so is the learned variance's range.
        betas = scheduler.betas.double()
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        # guided-diffusion scales the bound by T / 1000 ("without it the VB term hurts the MSE term").
        self.vb_weight = len(betas) / 1000.0
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # Step 0's posterior variance is 0; like guided-diffusion, clip its log to step 1's value.
        self.posterior_log_variance = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])).float()
        self.log_betas = torch.log(betas).float()
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod).sqrt().float()
        self.posterior_mean_coef1 = (betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod)).float()
        self.posterior_mean_coef2 = ((1.0 - alphas_cumprod_prev) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod)).float()

    @staticmethod
    def _at(values: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return values.to(timesteps.device)[timesteps][:, None, None, None]

    def posterior(self, x_start, x_t, timesteps):
        """Mean and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, timesteps) * x_start + self._at(self.posterior_mean_coef2, timesteps) * x_t
        return mean, self._at(self.posterior_log_variance, timesteps).expand_as(x_t)

    def predicted_distribution(self, x_t, timesteps, epsilon, variance_values):
        """Mean and log-variance of p(x_{t-1} | x_t) for an epsilon prediction and ``learned_range`` values in [-1, 1]."""
        x_start = (x_t - self._at(self.sqrt_one_minus_alphas_cumprod, timesteps) * epsilon) / self._at(
            self.sqrt_alphas_cumprod, timesteps
        )
        mean, _ = self.posterior(x_start, x_t, timesteps)
        fraction = (variance_values + 1) / 2
        log_variance = fraction * self._at(self.log_betas, timesteps) + (1 - fraction) * self._at(
            self.posterior_log_variance, timesteps
        )
        return mean, log_variance

    def variational_bound(self, x_start, x_t, timesteps, epsilon, variance_values) -> torch.Tensor:
        """The sampled timestep's term of the variational bound, per image, in bits per dimension."""
        true_mean, true_log_variance = self.posterior(x_start, x_t, timesteps)
        mean, log_variance = self.predicted_distribution(x_t, timesteps, epsilon, variance_values)
        kl = _per_image_mean(normal_kl(true_mean, true_log_variance, mean, log_variance)) / math.log(2.0)
        nll = -_per_image_mean(discretized_gaussian_log_likelihood(x_start, mean, 0.5 * log_variance)) / math.log(2.0)
        return torch.where(timesteps == 0, nll, kl)

    def __call__(self, model_output, x_start, x_t, timesteps, noise) -> DiffusionLoss:
        """Loss of a batch. ``model_output`` holds epsilon and, for learned variance, the variance values after it.

        Computed in float32 whatever the autocast precision, as the variational bound needs it.
        """
        channels = x_start.shape[1]
        model_output = model_output.float()
        epsilon = model_output[:, :channels]
        mse = _per_image_mean((epsilon - noise.float()) ** 2)
        if model_output.shape[1] == channels:
            return DiffusionLoss(loss=mse.mean(), mse=mse.mean().detach(), vb=None)
        if model_output.shape[1] != 2 * channels:
            raise ValueError(
                f"model output has {model_output.shape[1]} channels; expected {channels} (epsilon) or "
                f"{2 * channels} (epsilon and learned variance)"
            )
        # The bound trains the variance only: the mean is frozen, as in improved DDPM.
        vb = self.variational_bound(
            x_start.float(), x_t.float(), timesteps, epsilon.detach(), model_output[:, channels:]
        )
        vb = self.vb_weight * vb
        return DiffusionLoss(loss=(mse + vb).mean(), mse=mse.mean().detach(), vb=vb.mean().detach())
