"""Reward functions the RL trainer can optimise, by name: fn(images, prompts) -> Scores(rewards, parts).

- "shielddiff": the ShieldDiff reward (trainer/rewards/shielddiff.py), the one the nodes show.
- "toy-red": the toy world's reward (trainer/toyworld/reward.py): w_align * alignment + w_nude * (1 - red).
- "brightness", "center-brightness", "redness": simple rewards with a clear optimum, for tests and
  sanity checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..training.config import ConfigError, RewardSection

__all__ = ["RewardFn", "Scores", "make_reward"]


class Scores(NamedTuple):
    """A reward function's answer for a batch: one reward per image, and the named parts it is made of
    (each one value per image; the trainer reports their means and reads "is_nude" / "is_red")."""

    rewards: np.ndarray
    parts: dict[str, np.ndarray]


RewardFn = Callable[[list[np.ndarray], list[str]], Scores]


def _brightness(images, prompts):
    values = np.array([im.astype(np.float32).mean() / 255.0 for im in images])
    return Scores(values, {"brightness": values})


def _center_brightness(images, prompts):
    """Mean brightness of the central half (by side) of each image: a target the policy can reach."""
    values = []
    for im in images:
        h, w = im.shape[:2]
        values.append(im[h // 4 : h - h // 4, w // 4 : w - w // 4].astype(np.float32).mean() / 255.0)
    values = np.array(values)
    return Scores(values, {"center_brightness": values})


def _redness(images, prompts):
    values = np.array(
        [(im[..., 0].astype(np.float32) - im[..., 1:].astype(np.float32).mean(-1)).mean() / 255.0 for im in images]
    )
    return Scores(values, {"redness": values})


def _toy_red(section: RewardSection) -> RewardFn:
    from ..toyworld.detectors import get_toy_detector
    from ..toyworld.reward import ToyRedConfig, ToyRedReward

    reward = ToyRedReward(
        ToyRedConfig(w_align=section.w_align, w_red=section.w_nude, red_margin=section.red_margin),
        get_toy_detector(section.toy_shape_classifier or None),
    )

    def toy_red(images, prompts):
        parts = reward(images, prompts)
        values = np.array([p.reward for p in parts])
        named = {
            "red": np.array([p.red for p in parts]),
            "is_red": np.array([float(p.is_red) for p in parts]),
            "alignment": np.array([p.alignment for p in parts]),
        }
        return Scores(values, named)

    return toy_red


def make_reward(section: RewardSection) -> RewardFn:
    if section.kind == "brightness":
        return _brightness
    if section.kind == "redness":
        return _redness
    if section.kind == "center-brightness":
        return _center_brightness
    if section.kind == "toy-red":
        return _toy_red(section)
    if section.kind != "shielddiff":
        raise ConfigError(
            f"reward.kind {section.kind!r} is not one of shielddiff, toy-red, brightness, center-brightness, redness"
        )
    from ..nudity.detector import NudityRule, get_detector
    from ..rewards.clip import ClipScorer, ClipSpec
    from ..rewards.shielddiff import RewardConfig, ShieldDiffReward

    clip = None
    if section.clip_weights:
        clip = ClipScorer(ClipSpec(architecture=section.clip_architecture, weights=section.clip_weights))
    config = RewardConfig(
        w_clip=section.w_clip,
        w_nude=section.w_nude,
        safe_template=section.safe_template,
        rule=NudityRule(threshold=section.threshold),
    )
    reward = ShieldDiffReward(config, get_detector(provider=section.nudenet_provider), clip)

    def shielddiff(images, prompts):
        parts = reward(images, prompts)
        values = np.array([p.reward for p in parts])
        named = {
            "nudity": np.array([p.nudity for p in parts]),
            "nudity_score": np.array([p.nudity_score for p in parts]),
            "is_nude": np.array([float(p.is_nude) for p in parts]),
        }
        if clip is not None:  # without CLIP weights there is no CLIP part to report
            named["clip"] = np.array([p.clip for p in parts])
        return Scores(values, named)

    return shielddiff
