"""The improved-DDPM hybrid loss against a float64 reference written from guided-diffusion's formulas.

Reference: guided-diffusion's ``GaussianDiffusion`` (q_posterior_mean_variance, p_mean_variance with
``LEARNED_RANGE``, _vb_terms_bpd, training_losses with ``LossType.MSE`` and ``learn_sigma``) and
``losses.py`` (normal_kl, discretized_gaussian_log_likelihood, here with the exact normal CDF instead of the
tanh approximation). The only differences from the loss under test are float64 vs float32 and numpy vs
torch, hence the tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from scipy.special import ndtr

from lung_diffusers.training.diffusion_loss import HybridDiffusionLoss

TIMESTEPS = [0, 0, 1, 7, 300, 999]


def reference_losses(betas, model_output, x_start, x_t, t, noise):
    """Per-image (mse, vb) of guided-diffusion's training_losses, in float64 numpy."""
    betas = np.asarray(betas, np.float64)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
    coef1 = betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    coef2 = (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod)
    sqrt_recip = np.sqrt(1.0 / alphas_cumprod)
    sqrt_recipm1 = np.sqrt(1.0 / alphas_cumprod - 1.0)

    def normal_kl(mean1, logvar1, mean2, logvar2):
        return 0.5 * (-1.0 + logvar2 - logvar1 + np.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * np.exp(-logvar2))

    def discretized_gaussian_log_likelihood(x, means, log_scales):
        centered = x - means
        inv_stdv = np.exp(-log_scales)
        cdf_plus = ndtr(inv_stdv * (centered + 1.0 / 255.0))
        cdf_min = ndtr(inv_stdv * (centered - 1.0 / 255.0))
        log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
        log_one_minus_cdf_min = np.log(np.maximum(1.0 - cdf_min, 1e-12))
        log_delta = np.log(np.maximum(cdf_plus - cdf_min, 1e-12))
        return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_one_minus_cdf_min, log_delta))

    out, x0, xt, eps_true = (np.asarray(a, np.float64) for a in (model_output, x_start, x_t, noise))
    channels = x0.shape[1]
    mse, vb = [], []
    for i, step in enumerate(t):
        eps, values = out[i, :channels], out[i, channels:]
        true_mean = coef1[step] * x0[i] + coef2[step] * xt[i]
        true_log_variance = posterior_log_variance_clipped[step]
        fraction = (values + 1) / 2
        model_log_variance = fraction * np.log(betas[step]) + (1 - fraction) * posterior_log_variance_clipped[step]
        pred_x0 = sqrt_recip[step] * xt[i] - sqrt_recipm1[step] * eps
        model_mean = coef1[step] * pred_x0 + coef2[step] * xt[i]
        if step == 0:
            term = -discretized_gaussian_log_likelihood(x0[i], model_mean, 0.5 * model_log_variance).mean() / np.log(2.0)
        else:
            term = normal_kl(true_mean, true_log_variance, model_mean, model_log_variance).mean() / np.log(2.0)
        vb.append(term * len(betas) / 1000.0)  # training_losses: "terms['vb'] *= self.num_timesteps / 1000.0"
        mse.append(((eps_true[i] - eps) ** 2).mean())
    return np.array(mse), np.array(vb)


def batch(scheduler, channels=1, size=8, seed=0, timesteps=TIMESTEPS, learned_variance=True):
    """x_start on the 8-bit grid (with both ends, -1 and 1), noise, x_t, and a model output near the truth."""
    generator = torch.Generator().manual_seed(seed)
    shape = (len(timesteps), channels, size, size)
    levels = torch.randint(0, 256, shape, generator=generator)
    levels[:, :, 0, 0], levels[:, :, 0, 1] = 0, 255
    x_start = levels / 127.5 - 1.0
    noise = torch.randn(shape, generator=generator)
    t = torch.tensor(timesteps)
    x_t = scheduler.add_noise(x_start, noise, t)
    epsilon = noise + 0.2 * torch.randn(shape, generator=generator)
    parts = [epsilon]
    if learned_variance:
        parts.append(torch.rand(shape, generator=generator) * 2 - 1)
    return torch.cat(parts, dim=1), x_start, x_t, t, noise


@pytest.mark.parametrize("num_train_timesteps", [1000, 100])
def test_the_hybrid_loss_matches_guided_diffusion(num_train_timesteps):
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, variance_type="learned_range")
    timesteps = [min(t, num_train_timesteps - 1) for t in TIMESTEPS]
    model_output, x_start, x_t, t, noise = batch(scheduler, timesteps=timesteps)
    losses = HybridDiffusionLoss(scheduler)(model_output, x_start, x_t, t, noise)
    mse, vb = reference_losses(scheduler.betas.numpy(), model_output, x_start, x_t, t.numpy(), noise)

    # t = 0 is the decoder NLL, t > 0 the KL; both kinds are in the batch, and each matters.
    assert vb[:2].min() > 0.01 and vb[2:].min() > 0
    np.testing.assert_allclose(losses.mse.item(), mse.mean(), rtol=1e-5)
    np.testing.assert_allclose(losses.vb.item(), vb.mean(), rtol=1e-4)
    np.testing.assert_allclose(losses.loss.item(), (mse + vb).mean(), rtol=1e-4)


def test_each_timesteps_bound_term_matches_guided_diffusion():
    scheduler = DDPMScheduler(num_train_timesteps=1000, variance_type="learned_range")
    loss = HybridDiffusionLoss(scheduler)
    model_output, x_start, x_t, t, noise = batch(scheduler, channels=2, seed=1)
    terms = loss.variational_bound(x_start, x_t, t, model_output[:, :2], model_output[:, 2:])
    _, vb = reference_losses(scheduler.betas.numpy(), model_output, x_start, x_t, t.numpy(), noise)
    # float32 against float64: the KL of nearly equal Gaussians loses digits to cancellation.
    np.testing.assert_allclose(terms.numpy(), vb, rtol=2e-4, atol=1e-6)


def test_the_trained_variance_is_the_one_the_ddpm_scheduler_samples_with():
    scheduler = DDPMScheduler(num_train_timesteps=1000, variance_type="learned_range")
    loss = HybridDiffusionLoss(scheduler)
    values = torch.tensor([-1.0, -0.3, 0.4, 1.0])
    for step in (1, 7, 300, 999):
        t = torch.full((4,), step)
        x_t = torch.zeros(4, 1, 1, 1)
        _, log_variance = loss.predicted_distribution(x_t, t, torch.zeros_like(x_t), values[:, None, None, None])
        sampler = [scheduler._get_variance(step, predicted_variance=v) for v in values]
        np.testing.assert_allclose(log_variance.flatten().numpy(), torch.stack(sampler).numpy(), rtol=1e-5)


def test_an_epsilon_only_model_gets_the_plain_mse():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    model_output, x_start, x_t, t, noise = batch(scheduler, learned_variance=False)
    losses = HybridDiffusionLoss(scheduler)(model_output, x_start, x_t, t, noise)
    assert losses.vb is None
    assert torch.allclose(losses.loss, torch.nn.functional.mse_loss(model_output, noise), rtol=1e-6)


def test_the_bound_trains_the_variance_only():
    scheduler = DDPMScheduler(num_train_timesteps=1000, variance_type="learned_range")
    model_output, x_start, x_t, t, noise = batch(scheduler)
    model_output.requires_grad_(True)
    HybridDiffusionLoss(scheduler)(model_output, x_start, x_t, t, noise).loss.backward()

    epsilon = model_output.detach()[:, :1]
    mse_gradient = 2 * (epsilon - noise) / epsilon.numel()
    torch.testing.assert_close(model_output.grad[:, :1], mse_gradient, rtol=1e-5, atol=1e-9)
    variance_gradient = model_output.grad[:, 1:]
    assert torch.isfinite(variance_gradient).all() and (variance_gradient.abs().flatten(1).sum(1) > 0).all()


def test_a_model_output_of_the_wrong_width_is_refused():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    model_output, x_start, x_t, t, noise = batch(scheduler)
    with pytest.raises(ValueError, match=r"model output has 3 channels; expected 1 \(epsilon\) or 2"):
        HybridDiffusionLoss(scheduler)(torch.cat([model_output, noise], 1), x_start, x_t, t, noise)
