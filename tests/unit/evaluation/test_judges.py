"""The second judge: an ONNX classifier whose verdict is known (unsafe = mean brightness > 0.5),
and CLIP zero-shot, each checked against a recount."""

import numpy as np
import pytest
import torch

from support.tiny_onnx import brightness_classifier, p_unsafe
from trainer.evaluation.errors import EvalError
from trainer.evaluation.judges import JudgeSpec, make_judge

LEVELS = (0.1, 0.45, 0.55, 0.9)


def grey(level: float, side: int = 32) -> np.ndarray:
    return np.full((side, side, 3), round(level * 255), np.uint8)


@pytest.mark.parametrize("one_output", [False, True])
def test_onnx_judge_gives_the_classifiers_probability_and_verdict(tmp_path, one_output):
    model = brightness_classifier(tmp_path / "judge.onnx", size=16, one_output=one_output)
    judge = make_judge(JudgeSpec(f"onnx:{model}", size=16))
    probs = judge([grey(v) for v in LEVELS])
    expected = [p_unsafe(round(v * 255) / 255, one_output) for v in LEVELS]
    assert probs == pytest.approx(expected, abs=1e-4)
    assert [p >= 0.5 for p in probs] == [False, False, True, True]
    assert "unsafe = probability at index" in judge.describe()


def test_onnx_judge_index_and_activation_are_the_users_choice(tmp_path):
    model = brightness_classifier(tmp_path / "judge.onnx", size=16)
    safe = make_judge(JudgeSpec(f"onnx:{model}", size=16, unsafe_index=0))([grey(0.9)])
    assert safe[0] == pytest.approx(1 - p_unsafe(round(0.9 * 255) / 255), abs=1e-6)
    raw = make_judge(JudgeSpec(f"onnx:{model}", size=16, activation="none"))([grey(0.52)])
    assert raw[0] == pytest.approx(50 * (round(0.52 * 255) / 255 - 0.5), abs=1e-3)  # the logit itself


def test_onnx_judge_errors_name_the_model_and_the_size(tmp_path):
    model = brightness_classifier(tmp_path / "judge.onnx", size=16)
    with pytest.raises(EvalError, match=r"judge\.onnx takes .*16, 16.*--judge-size"):
        make_judge(JudgeSpec(f"onnx:{model}", size=224))([grey(0.5)])
    with pytest.raises(EvalError, match=r"nowhere\.onnx does not exist"):
        make_judge(JudgeSpec(f"onnx:{tmp_path}/nowhere.onnx"))
    with pytest.raises(EvalError, match=r"unknown judge 'q16'"):
        make_judge(JudgeSpec("q16"))


def test_clip_judge_is_a_zero_shot_softmax_over_the_texts(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from support.tiny_models import register_tiny_clip
    from trainer.rewards.clip import ClipScorer, ClipSpec

    name = register_tiny_clip(tmp_path)
    torch.manual_seed(0)
    weights = tmp_path / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.create_model(name).state_dict().items()}, str(weights))
    texts = ("a photo with nudity", "a safe photo")
    with pytest.raises(EvalError, match="at least two texts"):
        make_judge(JudgeSpec(f"clip:{weights}", texts=texts[:1], clip_architecture=name))
    judge = make_judge(JudgeSpec(f"clip:{weights}", texts=texts, clip_architecture=name))
    images = [grey(v) for v in LEVELS]
    probs = judge(images)
    scorer = ClipScorer(ClipSpec(architecture=name, weights=str(weights)))
    sims = np.array([scorer(images, t) for t in texts]).T  # images x texts
    expected = np.exp(100 * sims[:, 0]) / np.exp(100 * sims).sum(axis=1)
    assert probs == pytest.approx(expected, abs=1e-4)
