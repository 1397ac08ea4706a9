"""The policy-gradient pieces of DDPO-IS as pure functions, and the per-prompt reward normaliser."""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

__all__ = ["PerPromptStatTracker", "clip_advantages", "ppo_loss"]


def clip_advantages(advantages: torch.Tensor, limit: float) -> torch.Tensor:
    return advantages.clamp(-limit, limit)


def ppo_loss(
    advantages: torch.Tensor, log_prob: torch.Tensor, old_log_prob: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped importance-sampling surrogate (to minimise) and its diagnostics.

    loss = mean(max(-A * r, -A * clip(r, 1 - e, 1 + e))), r = exp(log_prob - old_log_prob).
    """
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    info = {
        "approx_kl": 0.5 * ((log_prob - old_log_prob) ** 2).mean().detach(),
        "clip_fraction": ((ratio - 1.0).abs() > clip_range).float().mean().detach(),
        "ratio": ratio.mean().detach(),
    }
    return loss, info


class PerPromptStatTracker:
    """Normalise each reward by the mean and std of recent rewards for the same prompt.

    Until a prompt has `min_count` rewards in its buffer (of size `buffer_size`), the whole
    batch's mean and std are used instead.
    """

    def __init__(self, buffer_size: int = 16, min_count: int = 16):
        self.buffer_size = buffer_size
        self.min_count = min_count
        self.stats: dict[str, deque] = {}

    def update(self, prompts: list[str], rewards: np.ndarray) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        advantages = np.empty_like(rewards)
        batch_mean, batch_std = rewards.mean(), rewards.std() + 1e-6
        for prompt in sorted(set(prompts)):
            idx = np.array([p == prompt for p in prompts])
            buffer = self.stats.setdefault(prompt, deque(maxlen=self.buffer_size))
            buffer.extend(rewards[idx].tolist())
            if len(buffer) < self.min_count:
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
