"""Censoring: only the chosen regions change, by the chosen method; per-class thresholds hold."""

import numpy as np
import pytest

from trainer.nudity.annotate import annotate
from trainer.nudity.censor import CensorSettings, censor_image, parse_class_thresholds
from trainer.nudity.detector import Detection, get_detector
from trainer.nudity.sample_images import figure, plain

BREAST = Detection("FEMALE_BREAST_EXPOSED", 0.7, (10, 20, 30, 15))
FEET = Detection("FEET_EXPOSED", 0.9, (40, 40, 10, 10))


def noisy(h=64, w=80):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["blur", "pixelate", "fill"])
def test_only_pixels_inside_the_mask_change(mode):
    image = noisy()
    result = censor_image(image, [BREAST, FEET], nudity=0.7, settings=CensorSettings(mode=mode, padding=0.0))
    assert result.censored and not result.whole_image
    inside = result.mask > 0
    assert inside[20:35, 10:40].all() and inside.sum() == 30 * 15  # the breast box only; feet are not counted
    assert np.array_equal(result.image[~inside], image[~inside])
    assert (result.image[inside] != image[inside]).mean() > 0.5


def test_padding_grows_the_box_and_stays_inside_the_image():
    result = censor_image(noisy(), [Detection("ANUS_EXPOSED", 0.9, (0, 0, 20, 10))], 0.9, CensorSettings(padding=0.5))
    ys, xs = np.nonzero(result.mask)
    assert (ys.min(), xs.min(), ys.max(), xs.max()) == (0, 0, 14, 29)


def test_per_class_thresholds_decide_what_is_censored():
    thresholds = parse_class_thresholds("FEMALE_BREAST_EXPOSED=0.8, feet_exposed=0.5", default=0.6)
    assert thresholds["FEMALE_BREAST_EXPOSED"] == 0.8 and thresholds["FEET_EXPOSED"] == 0.5
    assert thresholds["BUTTOCKS_EXPOSED"] == 0.6
    result = censor_image(noisy(), [BREAST, FEET], 0.7, CensorSettings(padding=0.0, class_thresholds=thresholds))
    assert result.mask[45, 45] == 1.0 and result.mask[25, 20] == 0.0


def test_whole_image_replacement_above_the_threshold():
    settings = CensorSettings(mode="fill", replace_threshold=0.6)
    whole = censor_image(noisy(), [], nudity=0.65, settings=settings)
    assert whole.whole_image and whole.mask.all() and not whole.image.any()
    assert not censor_image(noisy(), [], nudity=0.5, settings=settings).censored


def test_nothing_found_means_an_unchanged_copy():
    image = noisy()
    result = censor_image(image, [], 0.0)
    assert not result.censored and np.array_equal(result.image, image) and not result.mask.any()


def test_real_nudenet_censor_covers_the_detection():
    image = np.asarray(figure())
    (verdict,) = get_detector()([image])
    result = censor_image(image, verdict.detections, verdict.nudity, CensorSettings(mode="fill"))
    assert result.censored
    again = get_detector()([result.image])[0]
    assert again.nudity < 0.6


@pytest.mark.parametrize(
    ("text", "message"),
    [("BREASTS=0.5", "BREASTS"), ("FEET_EXPOSED", "CLASS=VALUE"), ("FEET_EXPOSED=2", "in \\[0, 1\\]")],
)
def test_bad_class_thresholds_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_class_thresholds(text, 0.6)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="smudge"):
        CensorSettings(mode="smudge")
    with pytest.raises(ValueError, match="padding"):
        CensorSettings(padding=-1)


def test_annotation_draws_only_on_the_boxes_area():
    image = np.asarray(plain())
    drawn = annotate(image, [BREAST])
    changed = np.any(drawn != image, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.any() and ys.max() <= 20 + 15 and xs.max() <= 10 + 30 + 200
