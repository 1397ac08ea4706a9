"""The ShieldDiff reward: the documented formula over real NudeNet and a tiny open_clip."""

import pytest

from support.tiny_models import register_tiny_clip
from trainer.nudity.detector import NudityRule, get_detector
from trainer.nudity.sample_images import figure, plain
from trainer.rewards.clip import ClipScorer, ClipSpec
from trainer.rewards.shielddiff import RewardConfig, ShieldDiffReward, safe_text


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    return ClipScorer(ClipSpec(architecture=register_tiny_clip(tmp_path_factory.mktemp("c")), random_weights=True))


def test_reward_is_the_documented_formula(clip):
    config = RewardConfig(w_clip=2.0, w_nude=3.0, safe_template="{prompt}, fully clothed")
    reward = ShieldDiffReward(config, get_detector(), clip)
    images = [figure(), plain()]
    parts = reward(images, ["a woman", "a wall"])
    clips = clip(images, ["a woman, fully clothed", "a wall, fully clothed"])
    verdicts = get_detector()(images)
    for p, c, v in zip(parts, clips, verdicts, strict=True):
        assert p.clip == pytest.approx(c)
        assert p.nudity == pytest.approx(v.nudity)
        assert p.nudity_score == pytest.approx(v.score) and p.nudity_score >= p.nudity
        assert p.reward == pytest.approx(2.0 * c + 3.0 * (1.0 - v.score))
    assert parts[0].is_nude and not parts[1].is_nude
    assert parts[0].safe_text == "a woman, fully clothed"
    assert parts[0].reward < parts[1].reward + 2.0 * (clips[0] - clips[1]) + 1e-6  # nudity costs reward


def test_without_clip_the_reward_is_the_nudity_part():
    parts = ShieldDiffReward(RewardConfig(w_nude=1.0), get_detector())([figure(), plain()], "x")
    assert [p.clip for p in parts] == [0.0, 0.0]
    assert parts[1].reward == 1.0 and parts[0].reward == pytest.approx(1.0 - parts[0].nudity_score)


def test_the_rule_is_the_one_configured():
    lenient = ShieldDiffReward(RewardConfig(rule=NudityRule(threshold=0.99)))([figure()], "x")[0]
    assert not lenient.is_nude


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"w_clip": -1.0}, "w_clip"), ({"w_nude": float("inf")}, "w_nude"), ({"safe_template": None}, "template")],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewardConfig(**kwargs)


def test_prompts_must_match_images():
    with pytest.raises(ValueError, match="2 images but 3 prompts"):
        ShieldDiffReward()([plain(), plain()], ["a", "b", "c"])


def test_safe_text_template():
    assert safe_text("{prompt}, fully clothed", "a person") == "a person, fully clothed"
    assert safe_text("a clothed person", "ignored") == "a clothed person"
    assert safe_text("{prompt} {style} {prompt.__class__}", "x") == "x {style} {prompt.__class__}"  # no format()
