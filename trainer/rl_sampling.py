"""Sampling with log-probabilities: DDIM (eta > 0) with classifier-free guidance, recording the
whole trajectory so each step's log-probability can be recomputed under new weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .ddim_logprob import ddim_step_with_logprob
from .training_run import TrainingCancelled

__all__ = ["Trajectories", "decode_images", "guided_eps", "sample_with_logprob"]


@dataclass
class Trajectories:
    latents: torch.Tensor  # (B, T + 1, C, h, w): x_T ... x_0
    log_probs: torch.Tensor  # (B, T)
    timesteps: torch.Tensor  # (T,)
    prompt_embeds: torch.Tensor  # (B, 77, D)


def guided_eps(unet, latents, t, prompt_embeds, negative_embeds, guidance: float) -> torch.Tensor:
    """The classifier-free-guided noise prediction (one UNet call on the doubled batch)."""
    model_in = torch.cat([latents, latents])
    t_in = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim == 1 else t  # per-sample timesteps, doubled
    eps = unet(model_in, t_in, encoder_hidden_states=torch.cat([negative_embeds, prompt_embeds])).sample
    eps_uncond, eps_text = eps.chunk(2)
    return eps_uncond + guidance * (eps_text - eps_uncond)


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


@torch.no_grad()
def decode_images(vae, latents: torch.Tensor) -> list[np.ndarray]:
    """Final latents -> RGB uint8 images."""
    images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return list(images.permute(0, 2, 3, 1).cpu().numpy())
