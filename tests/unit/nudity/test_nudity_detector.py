"""Real NudeNet (the 320n detector inside the nudenet wheel) on images the tests draw."""

import math

import numpy as np
import pytest
import torch
from nudenet import NudeDetector
from PIL import Image

from trainer.nudity.detector import NudityDetector, NudityModelError, NudityRule, get_detector
from trainer.nudity.sample_images import figure, plain


@pytest.fixture(scope="module")
def detector():
    return NudityDetector()


def as_comfy_batch(*images: Image.Image) -> torch.Tensor:
    """ComfyUI's IMAGE type: float (B, H, W, C) in [0, 1]."""
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0) for im in images])


def test_flags_the_figure_and_not_a_plain_image(detector):
    nude, safe = detector([figure(), plain()])
    assert nude.is_nude and nude.nudity >= 0.6
    assert any(d.label == "FEMALE_BREAST_EXPOSED" for d in nude.detections)
    assert not safe.is_nude and safe.nudity == 0.0


def test_batch_equals_one_by_one_and_is_deterministic(detector):
    images = [figure(), plain(), figure(background=(30, 30, 30)), figure(size=384)]
    batch = detector.detect(images)
    singles = [detector.detect([im])[0] for im in images]
    assert batch == singles
    assert detector.detect(images) == batch


def test_reads_images_the_way_nudenet_reads_files(detector, tmp_path):
    path = tmp_path / "figure.png"
    figure().save(path)
    from_file = NudeDetector().detect(str(path))
    ours = detector.detect([figure()])[0]
    assert [(d.label, round(d.score, 5), d.box) for d in ours] == [
        (d["class"], round(d["score"], 5), tuple(d["box"])) for d in from_file
    ]


def test_tensor_numpy_and_pil_inputs_agree(detector):
    im = figure()
    uint8 = np.asarray(im)
    expected = detector.detect([im])
    assert detector.detect(as_comfy_batch(im)) == expected
    assert detector.detect(uint8[None]) == expected
    assert detector.detect([uint8.astype(np.float32) / 255.0]) == expected
    assert detector.detect(im) == expected


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1, 3), np.uint8),  # one pixel
        np.full((64, 48), 128, np.uint8),  # grayscale
        np.dstack([np.asarray(figure()), np.full((256, 256), 255, np.uint8)]),  # RGBA
        np.full((32, 32, 3), np.nan, np.float32),  # NaN pixels
        np.full((32, 32, 3), np.inf, np.float32),
    ],
    ids=["1px", "gray", "rgba", "nan", "inf"],
)
def test_odd_images_give_a_finite_verdict(detector, image):
    (result,) = detector([image])
    assert math.isfinite(result.nudity) and 0.0 <= result.nudity <= 1.0
    assert all(math.isfinite(d.score) for d in result.detections)


def test_alpha_channel_is_ignored(detector):
    rgb = np.asarray(figure())
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    assert detector.detect([rgba]) == detector.detect([rgb])


def test_empty_batch_is_an_empty_result(detector):
    assert detector(torch.zeros((0, 64, 64, 3))) == []
    assert detector([]) == []


def test_threshold_changes_the_verdict_not_the_score(detector):
    strict, lenient = (
        detector([figure()], NudityRule(threshold=0.99))[0],
        detector([figure()], NudityRule(threshold=0.1))[0],
    )
    assert strict.nudity == lenient.nudity
    assert not strict.is_nude and lenient.is_nude


@pytest.mark.parametrize(
    "content", [b"", b"not an onnx model at all", b"\x80\x04\x95pickle"], ids=["empty", "text", "pickle"]
)
def test_a_corrupt_model_file_is_named_in_the_error(tmp_path, content):
    bad = tmp_path / "640m.onnx"
    bad.write_bytes(content)
    with pytest.raises(NudityModelError, match=r"640m\.onnx"):
        NudityDetector(bad).detect([plain()])


def test_a_missing_model_file_is_named_in_the_error(tmp_path):
    with pytest.raises(NudityModelError, match=r"nowhere\.onnx"):
        NudityDetector(tmp_path / "nowhere.onnx").detect([plain()])


def test_bad_inputs_are_refused_with_the_value_named(detector):
    with pytest.raises(ValueError, match="resolution"):
        NudityDetector(resolution=0)
    with pytest.raises(ValueError, match="channels"):
        detector.detect([np.zeros((8, 8, 5), np.uint8)])
    with pytest.raises(ValueError, match="str"):
        detector.detect(["figure.png"])


def test_detector_cache_is_shared_and_bounded():
    first = get_detector(resolution=320)
    assert get_detector(resolution=320) is first
    get_detector(resolution=416)
    get_detector(resolution=512)
    assert get_detector(resolution=320) is not first  # evicted: at most two are kept


def test_uint8_tensors_are_read_as_0_to_255(detector):
    array = np.asarray(figure())
    assert detector.detect(torch.from_numpy(array)) == detector.detect([array])


def test_resolution_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        NudityDetector(resolution=333)
