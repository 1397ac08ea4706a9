"""Censor what NudeNet found: blur, pixelate, fill or cover with a sticker the detected regions, or the whole image.

Regions are the boxes of detections whose class has a threshold in `class_thresholds` and
whose score reaches it, grown by `padding` (a fraction of the box size on each side; a class
in `class_padding` uses its own), drawn as a rectangle, an ellipse or a rounded rectangle, and
optionally feathered: the mask fades out over `feather` pixels *outside* the shape, so
everything inside stays fully covered. When `replace_threshold` is set and the image's nudity
(under the rule) reaches it, the whole image is censored instead (by the same effect, or by
`replacement` when one is given). Where the mask is 0 the image is left exactly as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from .detector import DEFAULT_EXPOSED_CLASSES, NUDENET_CLASSES, Detection

__all__ = [
    "CENSOR_MODES",
    "REGION_SHAPES",
    "CensorResult",
    "CensorSettings",
    "censor_image",
    "parse_class_thresholds",
    "parse_class_values",
    "parse_color",
]

CENSOR_MODES = ("blur", "pixelate", "fill", "sticker")
REGION_SHAPES = ("rectangle", "ellipse", "rounded")


def parse_color(text: str) -> tuple[int, int, int]:
    """'#RRGGBB', 'RRGGBB', '#RGB' or 'R,G,B' (0-255) -> an RGB triple."""
    value = (text or "").strip()
    try:
        if "," in value:
            rgb = tuple(int(v) for v in value.split(","))
        else:
            digits = value.lstrip("#")
            if len(digits) == 3:
                digits = "".join(c * 2 for c in digits)
            rgb = tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4)) if len(digits) == 6 else ()
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"fill colour {text!r} is not a colour: write #RRGGBB (e.g. #000000) or R,G,B (0-255)")
    return rgb  # type: ignore[return-value]


def parse_class_thresholds(text: str, default: float) -> dict[str, float]:
    """'FEMALE_BREAST_EXPOSED=0.5, FEET_EXPOSED=0.7' on top of the default classes at `default`."""
    return dict.fromkeys(DEFAULT_EXPOSED_CLASSES, default) | parse_class_values(text, "class threshold", (0.0, 1.0))


def parse_class_values(text: str, what: str, limits: tuple[float, float]) -> dict[str, float]:
    """'CLASS=VALUE, CLASS=VALUE' (commas or new lines) -> {CLASS: VALUE}, each a NudeNet class and a number in `limits`."""
    low, high = limits
    values: dict[str, float] = {}
    for entry in (e.strip() for e in text.replace("\n", ",").split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name = name.strip().upper()
        if not sep or name not in NUDENET_CLASSES:
            raise ValueError(
                f"{what} {entry!r} is not CLASS=VALUE with a NudeNet class; classes: {', '.join(NUDENET_CLASSES)}"
            )
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not low <= number <= high:
            raise ValueError(f"{what} {entry!r}: the value must be a number in [{low:g}, {high:g}]")
        values[name] = number
    return values


@dataclass(frozen=True)
class CensorSettings:
    mode: str = "blur"
    padding: float = 0.1
    class_thresholds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DEFAULT_EXPOSED_CLASSES, 0.6))
    replace_threshold: float | None = None
    fill_color: tuple[int, int, int] = (0, 0, 0)
    blur_radius: float = 0.0  # 0: 8% of the image's shorter side (at least 4 px)
    pixel_size: int = 0  # 0: 1/16 of the image's shorter side (at least 4 px)
    shape: str = "rectangle"
    feather: float = 0.0  # pixels over which the mask fades out beyond the shape
    class_padding: dict[str, float] = field(default_factory=dict)  # per-class box growth, over `padding`
    sticker: np.ndarray | None = field(default=None, compare=False)  # RGB or RGBA uint8, stretched over each region
    replacement: np.ndarray | None = field(default=None, compare=False)  # RGB uint8: the whole image when replaced

    def __post_init__(self):
        if self.mode not in CENSOR_MODES:
            raise ValueError(f"censor mode {self.mode!r} is not one of {', '.join(CENSOR_MODES)}")
        if self.mode == "sticker" and self.sticker is None:
            raise ValueError("censor mode 'sticker' needs a sticker image: connect one to the sticker input")
        if self.shape not in REGION_SHAPES:
            raise ValueError(f"region shape {self.shape!r} is not one of {', '.join(REGION_SHAPES)}")
        for name, value in {
            "padding": self.padding,
            **{f"padding of {k}": v for k, v in self.class_padding.items()},
        }.items():
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 2.0):
                raise ValueError(f"box {name} must be in [0, 2] (a fraction of the box size), got {value!r}")
        for name, value, high in (
            ("blur radius", self.blur_radius, 512),
            ("pixel size", self.pixel_size, 512),
            ("feather", self.feather, 512),
        ):
            if not (isinstance(value, (int, float)) and 0 <= value <= high):
                raise ValueError(f"{name} must be in [0, {high}] pixels (0: automatic), got {value!r}")
        if self.replace_threshold is not None and not 0.0 <= self.replace_threshold <= 1.0:
            raise ValueError(f"whole-image threshold must be in [0, 1], got {self.replace_threshold!r}")


@dataclass
class CensorResult:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    mask: np.ndarray  # float32 (H, W) in [0, 1]: how much of the censored pixel each pixel is
    censored: bool
    whole_image: bool


def _boxes(shape: tuple[int, int], detections: list[Detection], settings: CensorSettings) -> list[tuple[int, ...]]:
    """(x0, y0, x1, y1) of each region to censor, grown and clipped to the image."""
    h, w = shape
    boxes = []
    for d in detections:
        limit = settings.class_thresholds.get(d.label)
        if limit is None or not d.score >= limit:
            continue
        x, y, bw, bh = d.box
        grow = settings.class_padding.get(d.label, settings.padding)
        px, py = grow * bw, grow * bh
        x0, y0 = max(0, math.floor(x - px)), max(0, math.floor(y - py))
        x1, y1 = min(w, math.ceil(x + bw + px)), min(h, math.ceil(y + bh + py))
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1, y1))
    return boxes


def _region_mask(shape: tuple[int, int], boxes: list[tuple[int, ...]], settings: CensorSettings) -> np.ndarray:
    h, w = shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for x0, y0, x1, y1 in boxes:
        corners = (x0, y0, x1 - 1, y1 - 1)  # PIL's shapes include their last pixel
        if settings.shape == "ellipse":
            draw.ellipse(corners, fill=255)
        elif settings.shape == "rounded":
            draw.rounded_rectangle(corners, radius=max(1, min(x1 - x0, y1 - y0) // 4), fill=255)
        else:
            draw.rectangle(corners, fill=255)
    mask = np.asarray(canvas, np.float32) / 255.0
    if settings.feather > 0 and mask.any():
        # a blurred shape is 1/2 at the shape's edge: doubled and capped, it is 1 up to the edge and fades out beyond it
        soft = np.asarray(canvas.filter(ImageFilter.GaussianBlur(settings.feather / 2)), np.float32) / 255.0
        soft = np.minimum(1.0, 2.0 * soft)
        mask = np.maximum(mask, soft)
    return mask


def _fit(picture: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """An RGB(A) uint8 array scaled and centre-cropped to cover (w, h)."""
    mode = "RGBA" if picture.ndim == 3 and picture.shape[2] == 4 else "RGB"
    return ImageOps.fit(Image.fromarray(np.ascontiguousarray(picture[..., : len(mode)]), mode), size)


def _censored_pixels(image: np.ndarray, boxes: list[tuple[int, ...]], settings: CensorSettings) -> np.ndarray:
    h, w = image.shape[:2]
    if settings.mode == "fill":
        return np.broadcast_to(np.asarray(settings.fill_color, np.uint8), image.shape)
    pil = Image.fromarray(image)
    if settings.mode == "sticker":
        for x0, y0, x1, y1 in boxes:
            sticker = _fit(settings.sticker, (x1 - x0, y1 - y0)).convert("RGBA")
            pil.paste(sticker, (x0, y0), sticker)
        return np.asarray(pil)
    if settings.mode == "blur":
        radius = settings.blur_radius or max(4.0, 0.08 * min(h, w))
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=radius)))
    block = int(settings.pixel_size) or max(4, min(h, w) // 16)
    small = pil.resize((max(1, w // block), max(1, h // block)), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


def censor_image(
    image: np.ndarray, detections: list[Detection], nudity: float, settings: CensorSettings = CensorSettings()
) -> CensorResult:
    """Censor one RGB uint8 image given its detections and nudity."""
    h, w = image.shape[:2]
    whole = settings.replace_threshold is not None and nudity >= settings.replace_threshold
    if whole:
        mask = np.ones((h, w), np.float32)
        if settings.replacement is not None:
            return CensorResult(np.asarray(_fit(settings.replacement, (w, h))), mask, True, True)
        boxes = [(0, 0, w, h)]
    else:
        boxes = _boxes((h, w), detections, settings)
        mask = _region_mask((h, w), boxes, settings)
    if not mask.any():
        return CensorResult(image=image.copy(), mask=mask, censored=False, whole_image=False)
    censored = _censored_pixels(image, boxes, settings).astype(np.float32)
    alpha = mask[:, :, None]
    out = np.where(alpha > 0, np.rint(alpha * censored + (1.0 - alpha) * image), image).astype(np.uint8)
    return CensorResult(image=out, mask=mask, censored=True, whole_image=whole)
