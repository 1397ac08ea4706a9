"""The policy-gradient pieces of DDPO-IS as pure functions, and the reward normalisers: within each
prompt's group of samples (GRPO-style), or by running per-prompt statistics (DDPO's)."""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

__all__ = ["PerPromptStatTracker", "clip_advantages", "group_advantages", "ppo_loss"]


def clip_advantages(advantages: torch.Tensor, limit: float) -> torch.Tensor:
    return advantages.clamp(-limit, limit)


def group_advantages(prompts: list[str], rewards, std_floor: float = 0.0) -> np.ndarray:
    """Each reward normalised within its prompt's group: (r - group mean) / max(group std, std_floor).

    A group whose rewards are all equal (or a floor of 0 and no spread) gives zeros, never NaN: it
    carries no information about which sample was better. A prompt with a single sample has no
    group; those samples are normalised over all single-sample rewards of the batch instead (with
    group size 1 this is DDPO's batch normalisation).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if len(prompts) != len(rewards):
        raise ValueError(f"got {len(prompts)} prompts but {len(rewards)} rewards; give one prompt per reward")
    advantages = np.zeros_like(rewards)
    keys = np.array(prompts, dtype=object)
    singles = np.zeros(len(rewards), dtype=bool)
    for prompt in dict.fromkeys(prompts):
        idx = keys == prompt
        if idx.sum() < 2:
            singles |= idx
            continue
        advantages[idx] = _normalise(rewards[idx], std_floor)
    if singles.sum() >= 2:
        advantages[singles] = _normalise(rewards[singles], std_floor)
    return advantages


def _normalise(values: np.ndarray, std_floor: float) -> np.ndarray:
    centred = values - values.mean()
    scale = max(float(values.std()), std_floor)
    if scale < 1e-8 or not np.any(np.abs(centred) > 1e-12):
        return np.zeros_like(values)
    return centred / scale


def ppo_loss(
    advantages: torch.Tensor,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    clip_range: float,
    dims: int = 1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped importance-sampling surrogate (to minimise) and its diagnostics.

    loss = mean(max(-A * r, -A * clip(r, 1 - e, 1 + e))), r = exp(log_prob - old_log_prob).
    The log-probabilities are means over `dims` latent elements (as DDPO's); approx_kl is
    0.5 * mean((dims * log-ratio)^2): the KL between the sampling policy and the current one in
    nats per denoising step of the whole latent, a number that can be read (DDPO's per-element
    figure is dims^2 times smaller).
    """
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    info = {
        "approx_kl": 0.5 * ((dims * (log_prob - old_log_prob)) ** 2).mean().detach(),
        "clip_fraction": ((ratio - 1.0).abs() > clip_range).float().mean().detach(),
        "ratio": ratio.mean().detach(),
    }
    return loss, info


class PerPromptStatTracker:
    """Normalise each reward by the mean and std of recent rewards for the same prompt.

    Until a prompt has `min_count` rewards in its buffer (of size `buffer_size`), a fallback is
    used instead (the trainer passes the group advantages; else the whole batch's mean and std).
    """

    def __init__(self, buffer_size: int = 16, min_count: int = 16):
        self.buffer_size = buffer_size
        self.min_count = min_count
        self.stats: dict[str, deque] = {}

    def update(self, prompts: list[str], rewards: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
        """Advantages; a prompt with fewer than `min_count` rewards takes `fallback`'s values (given, e.g.
        the group advantages) or the batch-normalised ones."""
        rewards = np.asarray(rewards, dtype=np.float64)
        advantages = np.empty_like(rewards)
        batch_mean, batch_std = rewards.mean(), rewards.std() + 1e-6
        for prompt in sorted(set(prompts)):
            idx = np.array([p == prompt for p in prompts])
            buffer = self.stats.setdefault(prompt, deque(maxlen=self.buffer_size))
            buffer.extend(rewards[idx].tolist())
            if len(buffer) < self.min_count:
                if fallback is not None:
                    advantages[idx] = np.asarray(fallback)[idx]
                    continue
                mean, std = batch_mean, batch_std
            else:
                mean, std = np.mean(buffer), np.std(buffer) + 1e-6
            advantages[idx] = (rewards[idx] - mean) / std
        return advantages

    def state_dict(self) -> dict:
        return {
            "buffer_size": self.buffer_size,
            "min_count": self.min_count,
            "stats": {k: list(v) for k, v in self.stats.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.buffer_size, self.min_count = state["buffer_size"], state["min_count"]
        self.stats = {k: deque(v, maxlen=self.buffer_size) for k, v in state["stats"].items()}
