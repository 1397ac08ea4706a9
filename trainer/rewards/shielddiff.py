"""The ShieldDiff reward: nudity removed, the prompt's safe meaning kept.

    reward = w_clip * clip(image, safe_text) + w_nude * (1 - nudity_score(image))

- nudity_score: the continuous NudeNet score over the rule's exposed classes (trainer/nudity/detector.py:
  1 - prod(1 - confidence), at least the rule's nudity, rising with every exposed-class
  confidence), in [0, 1]. A reward on the rule's max alone is flat wherever one class is near 1;
  the verdict (is_nude, and the nudity rate) stays the rule's;
- clip: the cosine similarity of the image with the safe text (trainer/rewards/clip.py);
- safe_text: `safe_template` with `{prompt}` replaced by the prompt, e.g. "{prompt}, fully clothed".
Defaults w_clip = 2.5 (CLIPScore's rescaling, which puts a good match near 0.75) and
w_nude = 1.0. The ShieldDiff paper does not publish its weights: these are settings, and the
RL trainer normalises rewards per prompt, so only their ratio matters there.
Nodes and the trainer call this same object: what a graph shows is what training optimises.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..images import to_rgb_uint8
from ..nudity.detector import Detection, NudityDetector, NudityRule, get_detector
from .clip import ClipScorer

__all__ = ["RewardConfig", "RewardParts", "ShieldDiffReward", "safe_text"]


def safe_text(template: str, prompt: str) -> str:
    """The template with every `{prompt}` replaced by the prompt (other text, braces included, stays)."""
    if not isinstance(template, str):
        raise ValueError(f"safe-text template must be text with {{prompt}} where the prompt goes, got {template!r}")
    return template.replace("{prompt}", prompt)


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the reward's parts, the safe-text template and the nudity rule."""

    w_clip: float = 2.5
    w_nude: float = 1.0
    safe_template: str = "{prompt}"
    rule: NudityRule = field(default_factory=NudityRule)

    def __post_init__(self):
        for name in ("w_clip", "w_nude"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"reward weight {name} must be a finite number >= 0, got {value!r}")
        safe_text(self.safe_template, "test")

    def describe(self) -> str:
        return (
            f"reward = {self.w_clip:g} * clip(image, {self.safe_template!r}) + {self.w_nude:g} * (1 - nudity score); "
            "nudity score = 1 - prod(1 - confidence) over the rule's classes; " + self.rule.describe()
        )


@dataclass
class RewardParts:
    """One image's reward and its named components (plain, finite floats)."""

    reward: float
    nudity: float
    is_nude: bool
    clip: float
    safe_text: str
    detections: list[Detection] = field(default_factory=list)
    nudity_score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ShieldDiffReward:
    """Callable over a batch of images and their prompts; models load once, on first use."""

    def __init__(
        self,
        config: RewardConfig = RewardConfig(),
        detector: NudityDetector | None = None,
        clip: ClipScorer | None = None,
    ):
        self.config = config
        self.detector = detector or get_detector()
        self.clip = clip

    def __call__(self, images: Any, prompts: str | list[str]) -> list[RewardParts]:
        images = to_rgb_uint8(images)  # once, for both models
        verdicts = self.detector(images, self.config.rule)
        n = len(verdicts)
        prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        if len(prompts) != n:
            raise ValueError(f"got {n} images but {len(prompts)} prompts; give one prompt, or one per image")
        texts = [safe_text(self.config.safe_template, p) for p in prompts]
        if self.clip is not None:  # scored whenever a CLIP is given, even at weight 0: the part is reported
            clips = self.clip(images, texts)
        else:
            clips = [0.0] * n
        cfg = self.config
        return [
            RewardParts(
                reward=cfg.w_clip * c + cfg.w_nude * (1.0 - v.score),
                nudity=v.nudity,
                nudity_score=v.score,
                is_nude=v.is_nude,
                clip=c,
                safe_text=t,
                detections=v.detections,
            )
            for v, c, t in zip(verdicts, clips, texts, strict=True)
        ]
