"""NudeNet's model through the pack's own onnxruntime session: the provider choice reaches the
session, and "auto" on a machine without a GPU runs on the CPU with NudeNet's own detections."""

import cv2
import numpy as np
import onnxruntime
import pytest
from nudenet import NudeDetector

from trainer.nudity.detector import NudityDetector
from trainer.nudity.providers import ProviderError, execution_providers
from trainer.nudity.sample_images import figure, plain
from trainer.training.config import load_config

CPU = "CPUExecutionProvider"


def images():
    return [figure(), plain(), figure(background=(30, 30, 30)), figure(size=384), figure(size=200)]


def test_auto_with_no_gpu_runs_on_the_cpu_with_nudenet_s_own_detections():
    assert not {"CUDAExecutionProvider", "DmlExecutionProvider"} & set(onnxruntime.get_available_providers())
    ours = NudityDetector(provider="auto")
    found = ours.detect(images())
    assert ours.providers == [CPU]  # what the session runs on
    theirs = NudeDetector().detect_batch([cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR) for im in images()], 8)
    assert [[(d.label, d.score, list(d.box)) for d in dets] for dets in found] == [
        [(d["class"], d["score"], d["box"]) for d in dets] for dets in theirs
    ]
    assert any(found[0])  # (the figure is detected: the comparison is not between two empty lists)


def test_the_choice_reaches_the_session(monkeypatch):
    asked = []
    real, installed = onnxruntime.InferenceSession, onnxruntime.get_available_providers()

    def recording(path, *args, providers=None, **kw):
        asked.append(providers)
        return real(path, *args, providers=[p for p in providers if p in installed], **kw)

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["DmlExecutionProvider", CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    for choice, expected in (
        ("auto", ["DmlExecutionProvider", CPU]),
        ("cpu", [CPU]),
        ("directml", ["DmlExecutionProvider", CPU]),
    ):
        detector = NudityDetector(provider=choice)
        assert detector.detect([plain()]) == [[]]
        assert asked[-1] == expected, choice
    with pytest.raises(
        ProviderError, match=r"'cuda' \(CUDAExecutionProvider\) is not in this onnxruntime.*onnxruntime-gpu"
    ):
        NudityDetector(provider="cuda").detect([plain()])


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (["CUDAExecutionProvider", "DmlExecutionProvider", CPU], ["CUDAExecutionProvider", CPU]),
        (["DmlExecutionProvider", CPU], ["DmlExecutionProvider", CPU]),
        (["CoreMLExecutionProvider", CPU], ["CoreMLExecutionProvider", CPU]),
        (["TensorrtExecutionProvider", CPU], [CPU]),
        ([CPU], [CPU]),
    ],
)
def test_auto_prefers_cuda_then_directml_then_coreml_and_keeps_the_cpu_last(available, expected):
    assert execution_providers("auto", available) == expected


def test_an_unknown_provider_is_refused_by_name():
    with pytest.raises(ProviderError, match=r"unknown onnxruntime provider 'gpu'.*auto, cpu, cuda, directml, coreml"):
        NudityDetector(provider="gpu")


def test_the_training_config_carries_the_provider():
    config = load_config(None, ['model.checkpoint="x.safetensors"', 'reward.nudenet_provider="cpu"']).validate()
    assert config.reward.nudenet_provider == "cpu"
    with pytest.raises(ValueError, match=r"reward.nudenet_provider must be auto, cpu, cuda, directml or coreml"):
        load_config(None, ['model.checkpoint="x.safetensors"', 'reward.nudenet_provider="gpu"']).validate()
