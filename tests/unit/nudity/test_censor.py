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


BOX = Detection("FEMALE_BREAST_EXPOSED", 0.9, (20, 10, 40, 30))  # x 20..59, y 10..39


def test_ellipse_and_rounded_regions_cover_the_centre_but_not_the_corners():
    masks = {
        shape: censor_image(noisy(), [BOX], 0.9, CensorSettings(padding=0.0, shape=shape)).mask
        for shape in ("rectangle", "ellipse", "rounded")
    }
    for mask in masks.values():
        assert mask[25, 40] == 1.0 and mask[5, 10] == 0.0 and mask[:, 60:].sum() == 0
    assert masks["rectangle"][10, 20] == 1.0 and masks["ellipse"][10, 20] == 0.0 and masks["rounded"][10, 20] == 0.0
    assert masks["ellipse"].sum() < masks["rounded"].sum() < masks["rectangle"].sum() == 40 * 30


def test_feather_fades_outside_the_region_and_keeps_it_fully_covered():
    image = noisy()
    hard = censor_image(image, [BOX], 0.9, CensorSettings(padding=0.0, mode="fill"))
    soft = censor_image(image, [BOX], 0.9, CensorSettings(padding=0.0, mode="fill", feather=8))
    assert (soft.mask[hard.mask > 0] == 1.0).all()  # nothing inside shows through
    ring = soft.mask[42, 40], soft.mask[45, 40]  # 3 and 6 px below the box
    assert 1.0 > ring[0] > ring[1] > 0.0
    assert soft.mask[60, 40] == 0.0 and soft.mask[25, 75] == 0.0
    untouched = soft.mask == 0
    assert np.array_equal(soft.image[untouched], image[untouched])
    half = (soft.mask > 0.3) & (soft.mask < 0.7)
    assert half.any() and (soft.image[half] < image[half]).mean() > 0.6  # partly filled with black


def test_blur_radius_and_pixel_size_set_the_strength():
    image = noisy()
    weak, strong = (
        censor_image(image, [BOX], 0.9, CensorSettings(padding=0.0, blur_radius=r)).image[10:40, 20:60].astype(float)
        for r in (1, 12)
    )
    assert strong.std() < weak.std() < image[10:40, 20:60].std()
    blocks = censor_image(image, [BOX], 0.9, CensorSettings(padding=0.0, mode="pixelate", pixel_size=8)).image
    assert (blocks[16:24, 24:32] == blocks[16, 24]).all()  # one 8x8 block of the grid is one colour


def test_fill_colour_is_the_one_asked_for():
    from trainer.nudity.censor import parse_color

    assert parse_color("#ff8000") == parse_color("255,128,0") == (255, 128, 0) and parse_color("#fff") == (255,) * 3
    out = censor_image(noisy(), [BOX], 0.9, CensorSettings(padding=0.0, mode="fill", fill_color=(255, 128, 0))).image
    assert (out[10:40, 20:60] == (255, 128, 0)).all()
    with pytest.raises(ValueError, match=r"'orange'.*#RRGGBB"):
        parse_color("orange")


def test_per_class_padding_grows_only_that_class():
    face = Detection("BUTTOCKS_EXPOSED", 0.9, (0, 50, 10, 10))
    settings = CensorSettings(padding=0.0, class_padding={"BUTTOCKS_EXPOSED": 0.5})
    mask = censor_image(noisy(), [BOX, face], 0.9, settings).mask
    assert mask[9, 20] == 0.0  # the breast box is not grown
    assert mask[55, 14] == 1.0 and mask[45, 5] == 1.0 and mask[55, 15] == 0.0  # 5 px to the right and above


def test_sticker_covers_each_region_and_its_transparent_pixels_show_the_image():
    image = noisy()
    sticker = np.zeros((10, 10, 4), np.uint8)
    sticker[..., 1], sticker[:, :5, 3] = 255, 255  # green, the left half opaque
    out = censor_image(image, [BOX], 0.9, CensorSettings(padding=0.0, mode="sticker", sticker=sticker)).image
    assert (out[10:40, 20:38] == (0, 255, 0)).all()  # the opaque half, stretched over the box
    assert np.array_equal(out[10:40, 42:60], image[10:40, 42:60])  # the transparent half
    assert np.array_equal(out[:10], image[:10])
    with pytest.raises(ValueError, match="sticker input"):
        CensorSettings(mode="sticker")


def test_a_replacement_image_takes_the_whole_image_when_it_is_replaced():
    replacement = np.zeros((32, 32, 3), np.uint8)
    replacement[..., 2] = 200
    settings = CensorSettings(replace_threshold=0.6, replacement=replacement)
    whole = censor_image(noisy(), [BOX], nudity=0.8, settings=settings)
    assert whole.whole_image and whole.image.shape == (64, 80, 3) and (whole.image == (0, 0, 200)).all()
    below = censor_image(noisy(), [BOX], nudity=0.5, settings=settings)
    assert not below.whole_image and np.array_equal(below.image[:5], noisy()[:5])  # only the region, blurred


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"shape": "star"}, "shape 'star'"),
        ({"feather": -1}, "feather"),
        ({"blur_radius": 1000}, "blur radius"),
        ({"class_padding": {"FEET_EXPOSED": 3.0}}, "padding of FEET_EXPOSED"),
    ],
)
def test_bad_region_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        CensorSettings(**settings)
