"""The nudity gate for finished images and live previews (the A1111 / Forge script uses it).

An image is gated when one of its NudeNet detections reaches the threshold of its class
(`class_thresholds`; by default the rule's exposed classes, all at `threshold`). A gated image
gets the regions of those detections blurred, pixelated or filled (the same censor code as the
ComfyUI node), or is replaced whole ("replace": filled with black). Images with no such
detection are returned untouched (the same object).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .censor import CensorSettings, censor_image
from .detector import DEFAULT_EXPOSED_CLASSES, NudityRule, get_detector

__all__ = [
    "GATE_MODES",
    "GateResult",
    "GateSettings",
    "censoring_preview",
    "gate_images",
    "lora_tag_name",
    "with_lora_tag",
    "withheld",
]

log = logging.getLogger(__name__)

GATE_MODES = ("blur", "pixelate", "fill", "replace")


@dataclass(frozen=True)
class GateSettings:
    threshold: float = 0.6
    mode: str = "blur"
    padding: float = 0.1
    class_thresholds: dict[str, float] = field(default_factory=dict)  # empty: the rule's classes at `threshold`
    detector: str | Path | None = None  # an ONNX file; None: the 320n model shipped with nudenet
    resolution: int = 320

    def __post_init__(self):
        if self.mode not in GATE_MODES:
            raise ValueError(f"gate mode {self.mode!r} is not one of {', '.join(GATE_MODES)}")
        NudityRule(threshold=self.threshold)  # validates the threshold
        for name, value in self.class_thresholds.items():
            NudityRule(classes=(name,), threshold=value)  # validates class and value

    def thresholds(self) -> dict[str, float]:
        return dict(self.class_thresholds) or dict.fromkeys(DEFAULT_EXPOSED_CLASSES, self.threshold)

    def describe(self) -> str:
        """'0.6', or '0.6; FEMALE_BREAST_EXPOSED=0.4' when a class differs from the threshold."""
        own = {k: v for k, v in self.thresholds().items() if v != self.threshold}
        extra = "".join(f"; {k}={v:g}" for k, v in sorted(own.items()))
        return f"{self.threshold:g}{extra}"


@dataclass
class GateResult:
    image: Image.Image
    nudity: float | None  # None when the gate could not judge the image
    censored: bool
    infotext: dict[str, str]


def gate_images(images: list[Image.Image], settings: GateSettings = GateSettings()) -> list[GateResult]:
    thresholds = settings.thresholds()
    rule = NudityRule(classes=tuple(thresholds), threshold=min(thresholds.values()))
    arrays = [np.asarray(im.convert("RGB")) for im in images]
    verdicts = get_detector(settings.detector, settings.resolution)(arrays, rule)
    censor = CensorSettings(
        mode="fill" if settings.mode == "replace" else settings.mode,
        padding=settings.padding,
        class_thresholds=thresholds,
    )
    results = []
    for image, array, verdict in zip(images, arrays, verdicts, strict=True):
        hit = any(d.score >= thresholds.get(d.label, 2.0) for d in verdict.detections)
        out = image
        if hit and settings.mode == "replace":
            out = Image.new("RGB", image.size)
        elif hit:
            out = Image.fromarray(censor_image(array, verdict.detections, verdict.nudity, censor).image)
        action = f"censored ({settings.mode})" if hit else "passed"
        results.append(
            GateResult(
                image=out,
                nudity=verdict.nudity,
                censored=hit,
                infotext={
                    "ShieldDiff nudity": f"{verdict.nudity:.3f}",
                    "ShieldDiff gate": f"{action} at {settings.describe()}",
                },
            )
        )
    return results


def withheld(image: Image.Image, error: Exception) -> GateResult:
    """What the gate gives when it could not judge an image: a black image, never the original."""
    log.error("ShieldDiff gate could not judge an image, so it is withheld (black): %s", error)
    return GateResult(
        image=Image.new("RGB", image.size),
        nudity=None,
        censored=True,
        infotext={"ShieldDiff gate": f"withheld: the nudity gate failed ({type(error).__name__})"},
    )


def censoring_preview(assign: Callable, settings: Callable[[], GateSettings | None]) -> Callable:
    """Wrap a preview setter `assign(image, ...)`: the image it receives is gated first.

    `settings()` is asked at every call; None makes the wrapper pass images through unchanged
    (so a wrapper that another extension has wrapped again can be switched off in place).
    When `settings()` raises or the gate cannot judge the image, a black image is assigned.
    """

    def assign_censored(image, *args, **kwargs):
        if isinstance(image, Image.Image):
            try:
                current = settings()
                result = gate_images([image], current)[0] if current is not None else None
            except Exception as exc:  # the preview must not leak because the settings or the detector failed
                result = withheld(image, exc)
            image = result.image if result is not None else image
        return assign(image, *args, **kwargs)

    assign_censored.__wrapped__ = assign
    return assign_censored


def lora_tag_name(lora_file: str) -> str:
    """The name A1111 / Forge know a LoRA file by: its file name without folder or extension."""
    base = lora_file.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if base.endswith((".safetensors", ".pt", ".ckpt")) else base


def with_lora_tag(prompt: str, lora_name: str, weight: float) -> str:
    """The prompt with `<lora:name:weight>` appended, unless a tag for that LoRA is in it already."""
    name = lora_tag_name(lora_name)
    if re.search(rf"<lora:{re.escape(name)}(:[^>]*)?>", prompt):
        return prompt
    tag = f"<lora:{name}:{weight:g}>"
    return f"{prompt} {tag}" if prompt else tag
