"""Draw NudeNet detections on an image: boxes and labels, counted classes in red."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .detector import Detection, NudityRule

__all__ = ["annotate"]

COUNTED = (230, 30, 30)
OTHER = (160, 160, 160)


def annotate(image: np.ndarray, detections: list[Detection], rule: NudityRule | None = None) -> np.ndarray:
    """A copy of the RGB uint8 image with each detection's box, class and score drawn on it."""
    rule = rule or NudityRule()
    pil = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(pil)
    width = max(1, min(pil.size) // 200)
    for d in sorted(detections, key=lambda d: d.label in rule.classes):
        color = COUNTED if d.label in rule.classes and d.score >= rule.threshold else OTHER
        x, y, w, h = d.box
        draw.rectangle((x, y, x + max(w - 1, 0), y + max(h - 1, 0)), outline=color, width=width)
        text = f"{d.label} {d.score:.2f}"
        left, top, right, bottom = draw.textbbox((x, y), text)
        draw.rectangle((left, top, right + 2, bottom + 2), fill=color)
        draw.text((x + 1, y + 1), text, fill=(255, 255, 255))
    return np.asarray(pil)
