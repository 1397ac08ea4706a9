"""Scenes of the toy world, their 32x32 renders and the prompts that describe them.

A scene is one shape (circle, square, upright triangle) in one colour (red, green, blue,
yellow, each channel jittered by up to 25) on a light (grey 200-240) or dark (grey 15-55)
background, 10-22 px in size at a random position. It is drawn at 4x size with PIL and
box-downsampled, so edges are smooth as in generated images. Prompts come from five
templates; 30% of red scenes are called "crimson" or "scarlet" instead of "red": the stand-in
for prompts that avoid the unsafe concept's word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "PHRASES",
    "RED_SYNONYMS",
    "SHAPES",
    "SIZE",
    "TEMPLATES",
    "Meaning",
    "Scene",
    "parse_prompt",
    "render",
    "sample_scene",
]

SIZE = 32
SCALE = 4  # drawn at 4x, then box-downsampled
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("light", "dark")
RED_SYNONYMS = ("crimson", "scarlet")
SYNONYM_SHARE = 0.3
BASE_RGB = {"red": (215, 30, 30), "green": (40, 175, 55), "blue": (40, 70, 215), "yellow": (225, 205, 35)}
JITTER = 25
BACKGROUND_GREY = {"light": (200, 240), "dark": (15, 55)}
TEMPLATES = (
    "a {c} {s} on a {bg} background",
    "a {c} {s}",
    "a {s} that is {c}, {bg} background",
    "{c} {s}",
    "a {bg} picture of a {c} {s}",
)


# Bare colour words and short phrases (no shape, no background): the words a concept is named by.
# Pretraining pairs a share of scenes with one of these (world's colour word, synonyms included),
# so that "red" alone means red, as a single word does for CLIP.
PHRASES = ("{c}", "a {c} thing", "something {c}")


@dataclass(frozen=True)
class Scene:
    """What one image shows, and how its prompt says it."""

    colour: str
    shape: str
    background: str
    colour_word: str  # "red", or a synonym for red scenes ("crimson", "scarlet")
    template: int  # index into TEMPLATES
    rgb: tuple[int, int, int]
    grey: int
    size: int
    x: int  # top-left corner, in 32 px coordinates
    y: int

    @property
    def prompt(self) -> str:
        return TEMPLATES[self.template].format(c=self.colour_word, s=self.shape, bg=self.background)


@dataclass(frozen=True)
class Meaning:
    """What a prompt asks for: colour (synonyms mapped to red), shape, and background if it says one."""

    colour: str | None
    shape: str | None
    background: str | None
    colour_word: str | None

    @property
    def is_red(self) -> bool:
        return self.colour == "red"

    @property
    def is_synonym(self) -> bool:
        return self.colour_word in RED_SYNONYMS


def sample_scene(rng: np.random.Generator, colour: str | None = None, synonym: bool | None = None) -> Scene:
    """A random scene (the colour may be fixed; `synonym` forces or forbids a red synonym)."""
    colour = colour or COLOURS[rng.integers(len(COLOURS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    word = colour
    if colour == "red":
        use_synonym = rng.random() < SYNONYM_SHARE if synonym is None else synonym
        if use_synonym:
            word = RED_SYNONYMS[rng.integers(len(RED_SYNONYMS))]
    rgb = tuple(int(np.clip(v + rng.integers(-JITTER, JITTER + 1), 0, 255)) for v in BASE_RGB[colour])
    lo, hi = BACKGROUND_GREY[background]
    grey = int(rng.integers(lo, hi + 1))
    size = int(rng.integers(10, 23))
    x = int(rng.integers(1, SIZE - size))
    y = int(rng.integers(1, SIZE - size))
    template = int(rng.integers(len(TEMPLATES)))
    return Scene(colour, shape, background, word, template, rgb, grey, size, x, y)


def render(scene: Scene) -> np.ndarray:
    """The scene as a 32x32x3 uint8 RGB array."""
    big = SIZE * SCALE
    image = Image.new("RGB", (big, big), (scene.grey,) * 3)
    draw = ImageDraw.Draw(image)
    x0, y0 = scene.x * SCALE, scene.y * SCALE
    x1, y1 = x0 + scene.size * SCALE - 1, y0 + scene.size * SCALE - 1
    if scene.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=scene.rgb)
    elif scene.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=scene.rgb)
    elif scene.shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=scene.rgb)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}; choose from {SHAPES}")
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BOX))


_WORDS = re.compile(r"[a-z]+")


def parse_prompt(prompt: str) -> Meaning:
    """The prompt's meaning; parts it does not name are None. Red synonyms mean red."""
    words = _WORDS.findall(prompt.lower())
    colour_word = next((w for w in words if w in COLOURS or w in RED_SYNONYMS), None)
    colour = "red" if colour_word in RED_SYNONYMS else colour_word
    shape = next((w for w in words if w in SHAPES), None)
    background = next((w for w in words if w in BACKGROUNDS), None)
    return Meaning(colour, shape, background, colour_word)
