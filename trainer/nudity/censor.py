"""Censor what NudeNet found: blur, pixelate or fill the detected regions, or the whole image.

Regions are the boxes of detections whose class has a threshold in `class_thresholds` and
whose score reaches it, grown by `padding` (a fraction of the box size on each side). When
`replace_threshold` is set and the image's nudity (under the rule) reaches it, the whole
image is censored instead. Outside the mask the image is left exactly as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from .detector import DEFAULT_EXPOSED_CLASSES, NUDENET_CLASSES, Detection

__all__ = ["CENSOR_MODES", "CensorResult", "CensorSettings", "censor_image", "parse_class_thresholds"]

CENSOR_MODES = ("blur", "pixelate", "fill")


def parse_class_thresholds(text: str, default: float) -> dict[str, float]:
    """'FEMALE_BREAST_EXPOSED=0.5, FEET_EXPOSED=0.7' on top of the default classes at `default`."""
    thresholds = dict.fromkeys(DEFAULT_EXPOSED_CLASSES, default)
    for entry in (e.strip() for e in text.replace("\n", ",").split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name = name.strip().upper()
        if not sep or name not in NUDENET_CLASSES:
            raise ValueError(
                f"class threshold {entry!r} is not CLASS=VALUE with a NudeNet class; classes: {', '.join(NUDENET_CLASSES)}"
            )
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"class threshold {entry!r}: the value must be a number in [0, 1]")
        thresholds[name] = number
    return thresholds


@dataclass(frozen=True)
class CensorSettings:
    mode: str = "blur"
    padding: float = 0.1
    class_thresholds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DEFAULT_EXPOSED_CLASSES, 0.6))
    replace_threshold: float | None = None
    fill_color: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        if self.mode not in CENSOR_MODES:
            raise ValueError(f"censor mode {self.mode!r} is not one of {', '.join(CENSOR_MODES)}")
        if not (isinstance(self.padding, (int, float)) and 0.0 <= self.padding <= 2.0):
            raise ValueError(f"box padding must be in [0, 2] (a fraction of the box size), got {self.padding!r}")
        if self.replace_threshold is not None and not 0.0 <= self.replace_threshold <= 1.0:
            raise ValueError(f"whole-image threshold must be in [0, 1], got {self.replace_threshold!r}")


@dataclass
class CensorResult:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    mask: np.ndarray  # float32 (H, W), 1 where the image was censored
    censored: bool
    whole_image: bool


def _region_mask(shape: tuple[int, int], detections: list[Detection], settings: CensorSettings) -> np.ndarray:
    h, w = shape
    mask = np.zeros((h, w), np.float32)
    for d in detections:
        limit = settings.class_thresholds.get(d.label)
        if limit is None or not d.score >= limit:
            continue
        x, y, bw, bh = d.box
        px, py = settings.padding * bw, settings.padding * bh
        x0, y0 = max(0, math.floor(x - px)), max(0, math.floor(y - py))
        x1, y1 = min(w, math.ceil(x + bw + px)), min(h, math.ceil(y + bh + py))
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = 1.0
    return mask


def _censored_pixels(image: np.ndarray, settings: CensorSettings) -> np.ndarray:
    h, w = image.shape[:2]
    if settings.mode == "fill":
        return np.broadcast_to(np.asarray(settings.fill_color, np.uint8), image.shape)
    pil = Image.fromarray(image)
    if settings.mode == "blur":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=max(4.0, 0.08 * min(h, w)))))
    block = max(4, min(h, w) // 16)
    small = pil.resize((max(1, w // block), max(1, h // block)), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


def censor_image(
    image: np.ndarray, detections: list[Detection], nudity: float, settings: CensorSettings = CensorSettings()
) -> CensorResult:
    """Censor one RGB uint8 image given its detections and nudity."""
    whole = settings.replace_threshold is not None and nudity >= settings.replace_threshold
    mask = np.ones(image.shape[:2], np.float32) if whole else _region_mask(image.shape[:2], detections, settings)
    if not mask.any():
        return CensorResult(image=image.copy(), mask=mask, censored=False, whole_image=False)
    out = np.where(mask[:, :, None] > 0, _censored_pixels(image, settings), image).astype(np.uint8)
    return CensorResult(image=out, mask=mask, censored=True, whole_image=whole)
