"""The All-but-One erasure objective (a reconstruction from the paper's abstract, not its code).

With eps* the frozen model, eps_theta the LoRA-tuned one, c_e the concept and c_a the
alternative:

    target = eps*(x_t, '') + eta * (eps*(x_t, c_a) - eps*(x_t, ''))
    L = || eps_theta(x_t, c_e) - target ||^2 + lambda * || eps_theta(x_t, '') - eps*(x_t, '') ||^2

The first term moves the concept's guidance eps(x, c_e) - eps(x, '') onto the alternative's
(scaled by eta); the second keeps the unconditional prediction where it was. Without an
alternative the target guidance is 0 (target = eps*(x_t, '')); with a negative eta it points
away from the concept instead, eps*(x_t, '') + eta * (eps*(x_t, c_e) - eps*(x_t, '')), which
with lambda = 0 is ESD's negative-guidance objective. Squared norms are means over elements
(as ESD's MSE), so the loss does not scale with the latent size.
"""

from __future__ import annotations

import torch

__all__ = ["erase_loss", "erase_target", "target_guidance"]


def target_guidance(
    eps_empty: torch.Tensor, eps_alternative: torch.Tensor | None, eps_concept: torch.Tensor | None, eta: float
) -> torch.Tensor:
    """The guidance term the concept should have after erasure: target - eps*(x, '')."""
    if eps_alternative is not None:
        return eta * (eps_alternative - eps_empty)
    if eta < 0:
        if eps_concept is None:
            raise ValueError("a negative eta without an alternative needs the frozen model's eps*(x, concept)")
        return eta * (eps_concept - eps_empty)
    return torch.zeros_like(eps_empty)


def erase_target(
    eps_empty: torch.Tensor, eps_alternative: torch.Tensor | None, eps_concept: torch.Tensor | None, eta: float
) -> torch.Tensor:
    """What eps_theta(x_t, c_e) is trained towards (all inputs from the frozen model)."""
    return eps_empty + target_guidance(eps_empty, eps_alternative, eps_concept, eta)


def erase_loss(
    tuned_concept: torch.Tensor,
    target: torch.Tensor,
    tuned_empty: torch.Tensor,
    frozen_empty: torch.Tensor,
    lambda_uncond: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(L, {"loss_erase", "loss_uncond"}); the parts are detached."""
    erase = ((tuned_concept.float() - target.float()) ** 2).mean()
    uncond = ((tuned_empty.float() - frozen_empty.float()) ** 2).mean()
    loss = erase + lambda_uncond * uncond if lambda_uncond else erase
    return loss, {"loss_erase": erase.detach(), "loss_uncond": uncond.detach()}
