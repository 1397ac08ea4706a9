"""The "toy-red" reward: the prompt's safe meaning kept, the colour red removed.

    reward = w_align * alignment + w_red * (1 - red)

- alignment: the share of what the prompt's safe meaning asks for that the image shows. For a
  prompt about a red thing (also "crimson", "scarlet") the safe meaning is its shape and, when
  the prompt names one, its background; for any other prompt it is colour, shape and background.
- red: the detector's graded red score (detectors.py): above 0 exactly when the detector reads
  the image as red, falling only as its colour moves towards the edge of the red region (towards
  orange, magenta or grey); darkening red to maroon earns nothing, any colour that reads as not
  red gets the full (1 - red) = 1. With `red_margin` (a hue distance) the red part reaches 0 only
  that far beyond the band's edges, so that a colour just outside the band, which a little noise
  brings back to red, still pays to move further away (darkening still earns nothing). The share
  of red foreground pixels is reported as red_share.
It stands in for the ShieldDiff reward (alignment for CLIP, red for nudity) in the toy world.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..images import to_rgb_uint8
from .detectors import ToyDetector, ToyReading, get_toy_detector, graded_red
from .world import parse_prompt

__all__ = ["ToyRedConfig", "ToyRedParts", "ToyRedReward", "alignment"]


@dataclass(frozen=True)
class ToyRedConfig:
    w_align: float = 1.0
    w_red: float = 1.0
    red_margin: float = 0.0  # hue margin beyond the red band over which the red part falls to 0

    def __post_init__(self):
        if not (isinstance(self.red_margin, (int, float)) and 0 <= self.red_margin <= 0.2):
            raise ValueError(f"toy-red red_margin must be a hue distance in [0, 0.2], got {self.red_margin!r}")
        for name in ("w_align", "w_red"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"toy-red reward weight {name} must be a finite number >= 0, got {value!r}")

    def describe(self) -> str:
        return (
            f"reward = {self.w_align:g} * alignment(safe meaning: shape, background; colour unless red) "
            f"+ {self.w_red:g} * (1 - graded red score: 0 for any colour the detector reads as not red"
            + (f", or {self.red_margin:g} in hue beyond that)" if self.red_margin else ")")
        )


@dataclass
class ToyRedParts:
    reward: float
    red: float  # the graded red score the reward uses
    is_red: bool
    alignment: float
    colour: str
    shape: str
    background: str
    red_share: float = 0.0  # share of red foreground pixels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alignment(reading: ToyReading, prompt: str) -> float:
    """Share of the prompt's safe meaning (see module doc) the reading matches; 1.0 if it asks nothing."""
    meaning = parse_prompt(prompt)
    checks = []
    if meaning.colour is not None and not meaning.is_red:
        checks.append(reading.colour == meaning.colour)
    if meaning.shape is not None:
        checks.append(reading.shape == meaning.shape)
    if meaning.background is not None:
        checks.append(reading.background == meaning.background)
    return sum(checks) / len(checks) if checks else 1.0


class ToyRedReward:
    """Callable over images and prompts, like ShieldDiffReward; the shape CNN loads on first use."""

    def __init__(self, config: ToyRedConfig = ToyRedConfig(), detector: ToyDetector | None = None):
        self.config = config
        self.detector = detector or get_toy_detector()

    def __call__(self, images: Any, prompts: str | list[str]) -> list[ToyRedParts]:
        readings = self.detector(to_rgb_uint8(images))
        n = len(readings)
        prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        if len(prompts) != n:
            raise ValueError(f"got {n} images but {len(prompts)} prompts; give one prompt, or one per image")
        parts = []
        for reading, prompt in zip(readings, prompts, strict=True):
            align = alignment(reading, prompt)
            red = graded_red(reading.hue, reading.saturation, margin) if (margin := self.config.red_margin) else None
            red = reading.red_score if red is None else red
            parts.append(
                ToyRedParts(
                    reward=self.config.w_align * align + self.config.w_red * (1.0 - red),
                    red=red,
                    is_red=reading.is_red,
                    alignment=align,
                    colour=reading.colour,
                    shape=reading.shape,
                    background=reading.background,
                    red_share=reading.red,
                )
            )
        return parts
