"""The nudity gate for finished images (the A1111 / Forge script uses it): score, and censor the nude ones.

An image is gated when its nudity under the rule reaches the threshold. A gated image gets its
exposed regions blurred, pixelated or filled (the same censor code as the ComfyUI node), or
is replaced whole ("replace": filled with black). Images below the threshold are not touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .censor import CENSOR_MODES, CensorSettings, censor_image
from .detector import NudityRule, get_detector

__all__ = ["GATE_MODES", "GateResult", "GateSettings", "gate_images", "with_lora_tag"]

GATE_MODES = (*CENSOR_MODES, "replace")


@dataclass(frozen=True)
class GateSettings:
    threshold: float = 0.6
    mode: str = "blur"
    padding: float = 0.1

    def __post_init__(self):
        if self.mode not in GATE_MODES:
            raise ValueError(f"gate mode {self.mode!r} is not one of {', '.join(GATE_MODES)}")
        NudityRule(threshold=self.threshold)  # validates the threshold


@dataclass
class GateResult:
    image: Image.Image
    nudity: float
    censored: bool
    infotext: dict[str, str]


def gate_images(images: list[Image.Image], settings: GateSettings = GateSettings()) -> list[GateResult]:
    rule = NudityRule(threshold=settings.threshold)
    arrays = [np.asarray(im.convert("RGB")) for im in images]
    verdicts = get_detector()(arrays, rule)
    censor = CensorSettings(
        mode="fill" if settings.mode == "replace" else settings.mode,
        padding=settings.padding,
        class_thresholds=dict.fromkeys(rule.classes, settings.threshold),
        replace_threshold=settings.threshold if settings.mode == "replace" else None,
    )
    results = []
    for image, array, verdict in zip(images, arrays, verdicts, strict=True):
        out, censored = image, False
        if verdict.is_nude:
            done = censor_image(array, verdict.detections, verdict.nudity, censor)
            if done.censored:
                out, censored = Image.fromarray(done.image), True
        action = f"censored ({settings.mode})" if censored else "passed"
        results.append(
            GateResult(
                image=out,
                nudity=verdict.nudity,
                censored=censored,
                infotext={
                    "ShieldDiff nudity": f"{verdict.nudity:.3f}",
                    "ShieldDiff gate": f"{action} at {settings.threshold:g}",
                },
            )
        )
    return results


def with_lora_tag(prompt: str, lora_name: str, weight: float) -> str:
    """The prompt with `<lora:name:weight>` appended once (A1111's and Forge's LoRA syntax)."""
    name = lora_name.rsplit(".", 1)[0] if lora_name.endswith((".safetensors", ".pt", ".ckpt")) else lora_name
    tag = f"<lora:{name}:{weight:g}>"
    if f"<lora:{name}:" in prompt:
        return prompt
    return f"{prompt} {tag}" if prompt else tag
