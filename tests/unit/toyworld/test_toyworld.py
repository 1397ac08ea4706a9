"""The toy world: renders show what their prompts say, the detectors read renders back, the toy-red
reward prefers a right image to a red one, and the trainer takes that reward by name."""

import itertools

import numpy as np
import pytest

from trainer.rl.rewards import make_reward
from trainer.toyworld.detectors import DEFAULT_CLASSIFIER, get_toy_detector, read_background, read_colour
from trainer.toyworld.reward import ToyRedReward
from trainer.toyworld.world import (
    BACKGROUNDS,
    COLOURS,
    RED_SYNONYMS,
    SHAPES,
    SIZE,
    TEMPLATES,
    Scene,
    parse_prompt,
    render,
    sample_scene,
)
from trainer.training.config import ConfigError, RewardSection

SHAPE_ACCURACY_FLOOR = 0.97  # stated: the committed shape classifier on rendered scenes


def scenes(n, seed=123):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def scene(colour, shape, background, word=None, size=16, x=8, y=8, template=0):
    from trainer.toyworld.world import BASE_RGB

    grey = 220 if background == "light" else 35
    return Scene(colour, shape, background, word or colour, template, BASE_RGB[colour], grey, size, x, y)


def test_prompts_say_the_scene_and_thirty_percent_of_red_prompts_use_a_synonym():
    many = scenes(4000)
    for s in many:
        meaning = parse_prompt(s.prompt)
        assert (meaning.colour, meaning.shape) == (s.colour, s.shape), s.prompt
        says_background = "{bg}" in TEMPLATES[s.template]
        assert meaning.background == (s.background if says_background else None), s.prompt
    red = [s for s in many if s.colour == "red"]
    share = np.mean([s.colour_word in RED_SYNONYMS for s in red])
    assert 0.25 < share < 0.35, share
    assert {s.colour_word for s in red} == {"red", *RED_SYNONYMS}
    assert {s.template for s in many} == set(range(len(TEMPLATES)))
    assert parse_prompt("a scarlet circle").colour == "red" and parse_prompt("a scarlet circle").is_synonym


def test_render_draws_the_shape_in_its_colour_on_its_background_at_its_place():
    """Inside the scene's box the shape's colour covers about all of a square, pi/4 of a circle and
    half of a triangle; outside the box every pixel is the background grey."""
    expected_fill = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}
    for shape in SHAPES:
        for background in BACKGROUNDS:
            s = scene("blue", shape, background, size=20, x=5, y=6)
            image = render(s).astype(int)
            assert image.shape == (SIZE, SIZE, 3)
            box = np.zeros((SIZE, SIZE), bool)
            box[s.y : s.y + s.size, s.x : s.x + s.size] = True
            assert (image[~box] == s.grey).all()
            # share of the shape's colour in the box: each pixel's position between grey and the colour
            colour, grey = np.array(s.rgb), np.array([s.grey] * 3)
            t = ((image[box] - grey) @ (colour - grey)) / ((colour - grey) @ (colour - grey))
            assert abs(t.mean() - expected_fill[shape]) < 0.06, (shape, background, t.mean())


def test_colour_and_background_detectors_are_right_on_every_render():
    for s in scenes(600, seed=7):
        image = render(s)
        colour, red = read_colour(image)
        assert colour == s.colour, s
        assert red == (1.0 if s.colour == "red" else 0.0)
        assert read_background(image) == s.background
    blank = np.full((SIZE, SIZE, 3), 128, np.uint8)
    assert read_colour(blank) == ("none", 0.0)


def test_shape_classifier_reads_renders_above_its_stated_accuracy():
    assert (DEFAULT_CLASSIFIER / "model.safetensors").is_file(), "the committed shape classifier is missing"
    many = scenes(600, seed=11)
    readings = get_toy_detector()([render(s) for s in many])
    accuracy = np.mean([r.shape == s.shape for r, s in zip(readings, many, strict=True)])
    assert accuracy >= SHAPE_ACCURACY_FLOOR, accuracy
    for shape in SHAPES:  # no shape is sacrificed for the others
        picked = [r.shape == s.shape for r, s in zip(readings, many, strict=True) if s.shape == shape]
        assert np.mean(picked) >= SHAPE_ACCURACY_FLOOR - 0.05, (shape, np.mean(picked))


def test_toy_red_reward_puts_the_safe_meaning_above_red():
    reward = ToyRedReward()
    red_prompt = "a red circle on a light background"
    images = [
        render(scene("green", "circle", "light")),  # safe meaning kept, not red
        render(scene("red", "circle", "light")),  # what the prompt literally asks: red
        render(scene("green", "square", "dark")),  # not red, but wrong shape and background
    ]
    parts = reward(images, red_prompt)
    assert parts[0].reward > parts[1].reward
    assert parts[0].reward > parts[2].reward
    assert (parts[0].alignment, parts[0].red, parts[0].is_red) == (1.0, 0.0, False)
    assert (parts[1].alignment, parts[1].red, parts[1].is_red) == (1.0, 1.0, True)
    benign = reward([render(scene("blue", "square", "dark")), render(scene("red", "square", "dark"))], "a blue square")
    assert benign[0].reward > benign[1].reward
    assert benign[1].alignment == 0.5  # shape right, colour wrong (the prompt names no background)
    crimson = reward(
        [render(scene("yellow", "triangle", "dark")), render(scene("red", "triangle", "dark"))], "crimson triangle"
    )
    assert crimson[0].reward > crimson[1].reward


def test_the_trainer_takes_the_toy_red_reward_by_name_with_named_parts():
    fn = make_reward(RewardSection(kind="toy-red"))
    images = [render(scene(c, "triangle", "dark")) for c in COLOURS]
    values, parts = fn(images, ["a green triangle on a dark background"] * len(images))
    assert set(parts) == {"red", "is_red", "alignment"}
    assert parts["is_red"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert int(np.argmax(values)) == COLOURS.index("green")
    assert np.isfinite(values).all()
    with pytest.raises(ConfigError, match="toy-red"):
        make_reward(RewardSection(kind="toy-blue"))


# Stated floor for the committed toy model's text encoder: the rms distance of a bare colour word's
# embedding to the empty prompt's (all 77 positions). Before pretraining saw bare words, "red" sat at 0.054
# (it read as the empty prompt) against 1.25 for "blue"; after the continuation with bare words
# (docs/toyworld.md) "red" is at 0.185 and the other colours at 0.80-1.00. The red synonyms alone are not
# separated yet (crimson 0.052, scarlet 0.077: models/toyworld/training.json), so they are not held here.
BARE_WORD_FLOOR = 0.15


def test_the_toy_text_encoder_tells_a_bare_colour_word_from_the_empty_prompt():
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    from trainer.toyworld.pretrain import word_distances

    toy = DEFAULT_CLASSIFIER.parent
    tokenizer = CLIPTokenizer.from_pretrained(str(toy / "tokenizer"))
    encoder = CLIPTextModel.from_pretrained(str(toy / "text_encoder"), torch_dtype=torch.float32)
    distances = word_distances(tokenizer, encoder, COLOURS)
    assert min(distances.values()) >= BARE_WORD_FLOOR, distances


def test_graded_red_score_gives_darkening_no_credit_and_not_red_full_credit():
    """The toy-red reward's red part on synthetic renders: maroon (red darkened) scores as red, every
    colour the detector reads as not red scores 0 (full credit), and hues between pure red and the
    edge of the detector's red band score in between, falling as the hue moves away from red."""
    import colorsys

    reward = ToyRedReward()
    prompt = "a red circle on a light background"

    def with_rgb(rgb):
        s = scene("red", "circle", "light")
        return render(Scene(s.colour, s.shape, s.background, s.colour_word, 0, rgb, s.grey, s.size, s.x, s.y))

    def hue_rgb(hue, value=0.85):
        return tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue % 1.0, 0.85, value))

    red, maroon, dark_maroon = reward(
        [with_rgb(hue_rgb(0.0)), with_rgb(hue_rgb(0.0, 0.5)), with_rgb((90, 8, 8))], prompt
    )
    assert red.is_red and maroon.is_red and dark_maroon.is_red
    assert red.red == pytest.approx(1.0, abs=0.05)
    assert maroon.reward <= red.reward + 1e-6 and dark_maroon.reward <= red.reward + 1e-6  # no credit for darkening
    assert maroon.red >= 0.95 and dark_maroon.red >= 0.95
    for rgb in [hue_rgb(0.1), hue_rgb(0.33), hue_rgb(0.62), hue_rgb(0.8), (128, 118, 118)]:  # not red to the detector
        part = reward([with_rgb(rgb)], prompt)[0]
        assert not part.is_red and part.red == 0.0 and part.reward == pytest.approx(part.alignment + 1.0), rgb
    towards_orange = [reward([with_rgb(hue_rgb(h))], prompt)[0] for h in (0.0, 0.02, 0.035, 0.05, 0.065)]
    towards_magenta = [reward([with_rgb(hue_rgb(h))], prompt)[0] for h in (0.0, -0.03, -0.06, -0.09)]
    for path in (towards_orange, towards_magenta):
        assert all(p.is_red for p in path)
        scores = [p.red for p in path]
        assert all(a > b for a, b in itertools.pairwise(scores)), scores  # in between, falling towards the edge
        assert 0.0 < scores[-1] < 0.5


def test_red_margin_keeps_paying_just_past_the_band_and_never_for_darkening():
    """reward.red_margin: a colour just outside the detector's red band (not red to the verdict) still
    has a small red part, which falls to 0 at the margin; darkening red still earns nothing."""
    import colorsys

    from trainer.toyworld.reward import ToyRedConfig

    margin = ToyRedReward(ToyRedConfig(red_margin=0.05))
    plain = ToyRedReward()
    prompt = "a red circle on a light background"

    def with_hue(hue, value=0.85):
        s = scene("red", "circle", "light")
        rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue % 1.0, 0.85, value))
        return render(Scene(s.colour, s.shape, s.background, s.colour_word, 0, rgb, s.grey, s.size, s.x, s.y))

    past_orange, past_magenta = with_hue(0.09), with_hue(-0.12)
    for image in (past_orange, past_magenta):
        kept, plain_part = margin([image], prompt)[0], plain([image], prompt)[0]
        assert not kept.is_red and plain_part.red == 0.0 and 0.0 < kept.red < 0.5
    assert margin([with_hue(0.13)], prompt)[0].red == 0.0  # beyond the margin: full credit again
    red, maroon = margin([with_hue(0.0), with_hue(0.0, 0.5)], prompt)
    assert maroon.reward <= red.reward + 1e-6
    assert make_reward(RewardSection(kind="toy-red", red_margin=0.05)) is not None
