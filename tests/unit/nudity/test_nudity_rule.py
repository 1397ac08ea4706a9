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


def test_the_continuous_score_rises_with_every_exposed_class_confidence_and_keeps_the_verdict():
    """The RL reward's nudity score: each confidence of a class the rule uses, raised alone, raises it
    (also when another class is already near 1, where the rule's max is flat); classes outside the rule
    do not move it; it is at least the max and at most 1, and the verdict stays the rule's."""
    rule = NudityRule()
    base = {label: 0.3 for label in DEFAULT_EXPOSED_CLASSES}
    base[DEFAULT_EXPOSED_CLASSES[0]] = 0.97  # one class already near 1: the max is flat in the others

    def result(confidences, extra=()):
        return judge([Detection(k, v, (0, 0, 1, 1)) for k, v in confidences.items()] + list(extra), rule)

    start = result(base)
    assert start.nudity == pytest.approx(0.97) and start.is_nude
    assert start.nudity <= start.score <= 1.0
    for label in DEFAULT_EXPOSED_CLASSES:
        for step in (0.01, 0.2):
            higher = dict(base, **{label: min(1.0, base[label] + step)})
            if higher[label] > base[label]:
                assert result(higher).score > start.score, (label, step)
    assert result(base, [Detection("FACE_FEMALE", 0.99, (0, 0, 1, 1))]).score == start.score
    single = result({"ANUS_EXPOSED": 0.5})
    assert single.score == pytest.approx(0.5) and not single.is_nude  # verdict unchanged: 0.5 < 0.6
    assert result({}).score == 0.0
