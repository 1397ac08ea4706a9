"""A DDIM step (eta > 0) that also returns the log-probability of the step it takes.

The step x_t -> x_{t-1} is Gaussian: mean from the DDIM update with the model's noise
prediction, standard deviation sigma_t = eta * sqrt(var_t). Its log-density is what DDPO's
importance ratio needs; given a stored x_{t-1} it is recomputed under the current weights.
The log-probability is averaged over the non-batch dimensions (as DDPO does), so its scale
does not depend on the latent size.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ddim_step_with_logprob", "gaussian_logprob"]


def gaussian_logprob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2), averaged over all but the first dimension."""
    logp = -((x.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return logp.mean(dim=tuple(range(1, logp.ndim)))


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def ddim_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: torch.Tensor | int,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step for an epsilon-predicting model. Returns (x_{t-1}, log p(x_{t-1} | x_t)).

    `timestep` may be one int or a tensor with one timestep per sample. With `prev_sample`
    given, that transition is scored instead of drawing a new one.
    """
    if eta <= 0:
        raise ValueError(f"eta must be > 0 for a stochastic policy with a log-probability, got {eta}")
    t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0]).long()
    step = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    prev_t = t - step
    alphas = scheduler.alphas_cumprod.to(sample.device)
    final = torch.as_tensor(scheduler.final_alpha_cumprod, device=sample.device)
    alpha_t = alphas[t]
    alpha_prev = torch.where(prev_t >= 0, alphas[prev_t.clamp(min=0)], final)
    beta_t = 1 - alpha_t
    variance = (1 - alpha_prev) / beta_t * (1 - alpha_t / alpha_prev)
    std = _per_sample(eta * variance.clamp(min=1e-20).sqrt(), sample)
    alpha_t, alpha_prev, beta_t = (_per_sample(v, sample) for v in (alpha_t, alpha_prev, beta_t))

    pred_x0 = (sample - beta_t.sqrt() * model_output) / alpha_t.sqrt()
    if scheduler.config.clip_sample:
        r = scheduler.config.clip_sample_range
        pred_x0 = pred_x0.clamp(-r, r)
    direction = (1 - alpha_prev - std**2).clamp(min=0).sqrt() * model_output
    mean = alpha_prev.sqrt() * pred_x0 + direction
    if prev_sample is None:
        where = generator.device if generator is not None else sample.device  # noise from the generator's device
        noise = torch.randn(sample.shape, generator=generator, device=where, dtype=torch.float32)
        noise = noise.to(sample.device, sample.dtype)
        prev_sample = mean + std * noise
    return prev_sample, gaussian_logprob(prev_sample, mean, std)
