"""Deterministic DDIM inversion and regeneration, for concept purification.

Written against a noise-prediction callable `eps(x, t, cond) -> Tensor` (an epsilon-predicting
model at integer training timestep t) and the schedule's `alphas_cumprod`, so the same math
runs on a diffusers UNet (tests, trainer) and on ComfyUI's model (the Purify Image node).

Inversion walks an image's latent x_0 up the DDIM trajectory (eta = 0) to x_t; regeneration
walks back down with the same timesteps, possibly with another model (the erased one). With
the same model, regeneration undoes inversion up to the usual DDIM-inversion approximation
(the noise at the next timestep is predicted from the current latent). `strength` is how far
up to go, as img2img's denoise: 1.0 inverts every step, to noise; 0 changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["EpsFn", "ddim_invert", "ddim_regenerate", "inversion_timesteps", "purify_latents"]

EpsFn = Callable[[torch.Tensor, int, Any], torch.Tensor]


def inversion_timesteps(num_train_timesteps: int, steps: int, strength: float) -> list[int]:
    """The first round(strength * steps) of DDIM's `steps` evenly spaced timesteps, ascending."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    stride = num_train_timesteps // steps
    if stride < 1:
        raise ValueError(f"steps ({steps}) must not exceed the schedule's {num_train_timesteps} timesteps")
    count = round(strength * steps)
    return [i * stride + (stride - 1) for i in range(count)]  # ends at the last timestep when strength = 1


def _step(x: torch.Tensor, eps: torch.Tensor, alpha_from: torch.Tensor, alpha_to: torch.Tensor) -> torch.Tensor:
    """Move x from noise level alpha_from to alpha_to along the DDIM (eta = 0) line through eps."""
    x0 = (x - (1 - alpha_from).sqrt() * eps) / alpha_from.sqrt()
    return alpha_to.sqrt() * x0 + (1 - alpha_to).sqrt() * eps


def ddim_invert(
    eps: EpsFn,
    x0: torch.Tensor,
    cond: Any,
    alphas_cumprod: torch.Tensor,
    timesteps: list[int],
    progress: Callable[[], None] | None = None,
    refine: int = 0,
) -> torch.Tensor:
    """x_0 -> x_t for the last of `timesteps` (ascending).

    Each step first uses the current latent's noise prediction (plain DDIM inversion); with
    `refine` > 0 it then re-predicts the noise at the new latent that many times (a fixed-point
    iteration), so that going back down with the same model lands nearer where it started.
    """
    x = x0.float()
    alpha_prev = torch.ones((), dtype=torch.float64)
    for t in timesteps:
        alpha_t = alphas_cumprod[t].double()
        e = eps(x, t, cond).float()
        nxt = _step(x.double(), e.double(), alpha_prev, alpha_t).float()
        for _ in range(refine):
            e = eps(nxt, t, cond).float()
            nxt = _step(x.double(), e.double(), alpha_prev, alpha_t).float()
        x = nxt
        alpha_prev = alpha_t
        if progress:
            progress()
    return x


def ddim_regenerate(
    eps: EpsFn,
    x_t: torch.Tensor,
    cond: Any,
    alphas_cumprod: torch.Tensor,
    timesteps: list[int],
    progress: Callable[[], None] | None = None,
) -> torch.Tensor:
    """x_t (at the last of `timesteps`) -> x_0, down the same timesteps."""
    x = x_t.float()
    for i in range(len(timesteps) - 1, -1, -1):
        t = timesteps[i]
        alpha_t = alphas_cumprod[t].double()
        alpha_prev = alphas_cumprod[timesteps[i - 1]].double() if i > 0 else torch.ones((), dtype=torch.float64)
        e = eps(x, t, cond).float()
        x = _step(x.double(), e.double(), alpha_t, alpha_prev).float()
        if progress:
            progress()
    return x


def purify_latents(
    eps_base: EpsFn,
    eps_erased: EpsFn,
    x0: torch.Tensor,
    cond_base: Any,
    cond_erased: Any,
    alphas_cumprod: torch.Tensor,
    steps: int,
    strength: float,
    progress: Callable[[], None] | None = None,
    refine: int = 0,
) -> torch.Tensor:
    """Invert x0 with the base model, regenerate with the erased one (All-but-One's purification)."""
    timesteps = inversion_timesteps(len(alphas_cumprod), steps, strength)
    if not timesteps:
        return x0.clone()
    x_t = ddim_invert(eps_base, x0, cond_base, alphas_cumprod, timesteps, progress, refine=refine)
    return ddim_regenerate(eps_erased, x_t, cond_erased, alphas_cumprod, timesteps, progress)
