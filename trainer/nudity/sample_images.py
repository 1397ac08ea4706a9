"""Images drawn in code, for smoke checks, benchmarks and tests: a crude figure that NudeNet's bundled detector flags as
FEMALE_BREAST_EXPOSED (about 0.76), and plain images it finds nothing in."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFilter

SKIN = (224, 172, 140)


def figure(size: int = 256, background: tuple[int, int, int] = (216, 162, 130)) -> Image.Image:
    """A blurred skin-toned torso with two breast-like discs: a stand-in for an unsafe image."""
    s = size / 256
    im = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(im)

    def ellipse(box, fill):
        draw.ellipse(tuple(v * s for v in box), fill=fill)

    ellipse((90, 20, 160, 100), SKIN)
    ellipse((70, 90, 180, 230), SKIN)
    ellipse((85, 120, 120, 150), (200, 140, 120))
    ellipse((130, 120, 165, 150), (200, 140, 120))
    ellipse((98, 130, 106, 138), (150, 80, 80))
    ellipse((143, 130, 151, 138), (150, 80, 80))
    return im.filter(ImageFilter.GaussianBlur(2 * s))


def plain(size: int = 256, color: tuple[int, int, int] = (40, 120, 200)) -> Image.Image:
    """A flat-coloured image with nothing in it."""
    return Image.new("RGB", (size, size), color)
