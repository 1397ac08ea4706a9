"""Sampling with log-probabilities: DDIM (eta > 0) with classifier-free guidance, recording the
whole trajectory so each step's log-probability can be recomputed under new weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion.guidance import guided_eps
from ..training.run import TrainingCancelled
from .logprob import ddim_step_with_logprob

__all__ = ["Trajectories", "sample_with_logprob"]


@dataclass
class Trajectories:
    latents: torch.Tensor  # (B, T + 1, C, h, w): x_T ... x_0
    log_probs: torch.Tensor  # (B, T)
    timesteps: torch.Tensor  # (T,)
    prompt_embeds: torch.Tensor  # (B, 77, D)


@torch.no_grad()
def sample_with_logprob(
    unet,
    scheduler,
    prompt_embeds,
    negative_embeds,
    *,
    steps: int,
    eta: float,
    guidance: float,
    latent_shape: tuple[int, int, int],
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    stop=None,
) -> Trajectories:
    """With `stop` (a StopFlag), a stop request ends the sampling between two denoising steps."""
    device = prompt_embeds.device
    scheduler.set_timesteps(steps, device=device)
    b = prompt_embeds.shape[0]
    latents = torch.randn((b, *latent_shape), generator=generator, dtype=torch.float32).to(device, dtype)
    latents = latents * scheduler.init_noise_sigma
    all_latents, all_logps = [latents], []
    for t in scheduler.timesteps:
        if stop is not None and stop.stop:
            raise TrainingCancelled
        eps = guided_eps(unet, latents, t, prompt_embeds, negative_embeds, guidance)
        latents, logp = ddim_step_with_logprob(scheduler, eps.to(latents.dtype), t, latents, eta, generator=generator)
        all_latents.append(latents)
        all_logps.append(logp)
    return Trajectories(
        latents=torch.stack(all_latents, dim=1),
        log_probs=torch.stack(all_logps, dim=1),
        timesteps=scheduler.timesteps.clone(),
        prompt_embeds=prompt_embeds,
    )
