"""The rule that turns NudeNet detections into a verdict, checked on known detections."""

import math

import pytest

from trainer.nudity.detector import DEFAULT_EXPOSED_CLASSES, Detection, NudityRule, judge

BOX = (0, 0, 10, 10)


def det(label, score):
    return Detection(label=label, score=score, box=BOX)


@pytest.mark.parametrize(
    ("detections", "rule", "nudity", "is_nude"),
    [
        ([], NudityRule(), 0.0, False),
        ([det("FACE_FEMALE", 0.99), det("BELLY_EXPOSED", 0.95)], NudityRule(), 0.0, False),
        ([det("FEMALE_BREAST_EXPOSED", 0.61), det("BUTTOCKS_EXPOSED", 0.7)], NudityRule(), 0.7, True),
        ([det("ANUS_EXPOSED", 0.6)], NudityRule(), 0.6, True),  # the threshold itself counts as nude
        ([det("MALE_GENITALIA_EXPOSED", 0.5999)], NudityRule(), 0.5999, False),
        ([det("FEMALE_BREAST_COVERED", 0.9)], NudityRule(), 0.0, False),
        ([det("MALE_BREAST_EXPOSED", 0.8)], NudityRule(), 0.0, False),
        ([det("MALE_BREAST_EXPOSED", 0.8)], NudityRule(classes=("MALE_BREAST_EXPOSED",), threshold=0.75), 0.8, True),
        ([det("BUTTOCKS_EXPOSED", 0.45)], NudityRule(threshold=0.4), 0.45, True),
        ([det("BUTTOCKS_EXPOSED", math.nan), det("ANUS_EXPOSED", 0.3)], NudityRule(), 0.3, False),
    ],
)
def test_rule_takes_max_over_the_chosen_classes(detections, rule, nudity, is_nude):
    result = judge(detections, rule)
    assert result.nudity == pytest.approx(nudity)
    assert result.is_nude is is_nude
    assert result.detections == detections  # every detection is reported, counted or not
    assert math.isfinite(result.nudity)


def test_default_rule_is_the_five_exposed_classes_at_0_6():
    rule = NudityRule()
    assert set(rule.classes) == {
        "BUTTOCKS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "ANUS_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
    }
    assert rule.classes == DEFAULT_EXPOSED_CLASSES
    assert rule.threshold == 0.6


def test_every_result_names_its_rule():
    assert "0.6" in judge([], NudityRule()).rule
    custom = judge([], NudityRule(classes=("FEET_EXPOSED",), threshold=0.3)).rule
    assert "FEET_EXPOSED" in custom and "0.3" in custom


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ("BREASTS",)}, "BREASTS"),
        ({"classes": ()}, "at least one"),
        ({"threshold": 1.5}, "1.5"),
        ({"threshold": -0.1}, "-0.1"),
        ({"threshold": math.nan}, "nan"),
    ],
)
def test_bad_rules_are_refused_with_the_value_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NudityRule(**kwargs)
