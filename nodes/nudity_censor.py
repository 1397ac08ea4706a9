"""ShieldDiff Nudity Censor: blur, pixelate, fill or cover with a sticker what NudeNet finds, or replace the whole image."""

from __future__ import annotations

from comfy_api.latest import io

from ..trainer.images import to_rgb_uint8
from ..trainer.nudity.censor import (
    CENSOR_MODES,
    REGION_SHAPES,
    CensorSettings,
    censor_image,
    parse_class_thresholds,
    parse_class_values,
    parse_color,
)
from ..trainer.nudity.detector import NudityRule, get_detector
from . import model_folders
from .batch_progress import each_image, stop_if_nude, stop_on_nudity_input
from .comfy_images import images_to_tensor, keep_exact_pixels, masks_to_tensor
from .nudity_score import detector_inputs


def _look_inputs() -> list:
    """How the censored regions look (appended after the original inputs, so saved workflows keep their values)."""
    return [
        io.Combo.Input(
            "shape",
            options=list(REGION_SHAPES),
            default="rectangle",
            optional=True,
            tooltip="The shape drawn in each (grown) box.",
        ),
        io.Float.Input(
            "feather",
            default=0.0,
            min=0.0,
            max=512.0,
            step=1.0,
            optional=True,
            tooltip="Pixels over which the censor fades out beyond each region (inside stays covered).",
        ),
        io.Float.Input(
            "blur_radius",
            default=0.0,
            min=0.0,
            max=512.0,
            step=1.0,
            optional=True,
            tooltip="Gaussian blur radius in pixels (0: 8% of the image's shorter side).",
        ),
        io.Int.Input(
            "pixel_size",
            default=0,
            min=0,
            max=512,
            optional=True,
            tooltip="Block size of pixelate in pixels (0: 1/16 of the image's shorter side).",
        ),
        io.String.Input("fill_color", default="#000000", optional=True, tooltip="Colour of fill: #RRGGBB or R,G,B."),
        io.String.Input(
            "class_padding",
            default="",
            multiline=True,
            optional=True,
            tooltip="Per-class box growth over padding, e.g. 'BUTTOCKS_EXPOSED=0.3, ANUS_EXPOSED=0.5'.",
        ),
        stop_on_nudity_input(),
        io.Image.Input("sticker", optional=True, tooltip="mode 'sticker': the image stretched over each region."),
        io.Mask.Input(
            "sticker_mask",
            optional=True,
            tooltip="The sticker's transparency, as Load Image gives it (1 = transparent).",
        ),
        io.Image.Input(
            "replacement",
            optional=True,
            tooltip="Replaces the whole image (scaled to cover it) when whole-image replacement applies.",
        ),
    ]


def _first_rgba(image, mask) -> object:
    """The first image of a batch as RGB(A) uint8, its alpha from a ComfyUI mask (1 = transparent)."""
    if image is None:
        return None
    import numpy as np

    rgb = to_rgb_uint8(image[:1])[0]
    if mask is None:
        return rgb
    transparency = mask[:1].reshape(-1, *mask.shape[-2:])[0].float().clamp(0, 1).cpu().numpy()
    if transparency.shape != rgb.shape[:2]:
        if not transparency.any():  # Load Image's mask of an image without transparency: 64x64 zeros
            return rgb
        raise ValueError(
            f"sticker_mask is {transparency.shape[1]}x{transparency.shape[0]} but the sticker is "
            f"{rgb.shape[1]}x{rgb.shape[0]}: connect the mask that came with the sticker image"
        )
    alpha = (1.0 - transparency) * 255
    return np.dstack([rgb, alpha.round().astype(np.uint8)])


class NudityCensor(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffNudityCensor",
            display_name="Nudity Censor (ShieldDiff)",
            category="ShieldDiff/safety",
            description="Censors the exposed regions NudeNet finds (per-class thresholds), or the whole image "
            "when its nudity reaches the whole-image threshold. Pixels outside the mask are untouched.",
            inputs=[
                io.Image.Input("images"),
                io.Combo.Input("mode", options=list(CENSOR_MODES), default="blur"),
                io.Float.Input(
                    "threshold",
                    default=0.6,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Confidence from which a detected exposed region is censored.",
                ),
                io.Float.Input(
                    "padding", default=0.1, min=0.0, max=2.0, step=0.05, tooltip="Grow each box by this fraction."
                ),
                io.Boolean.Input(
                    "replace_whole_image",
                    default=False,
                    tooltip="Censor the whole image when its nudity reaches whole_image_threshold.",
                ),
                io.Float.Input("whole_image_threshold", default=0.6, min=0.0, max=1.0, step=0.01),
                io.String.Input(
                    "class_thresholds",
                    default="",
                    multiline=True,
                    tooltip="Per-class thresholds, e.g. 'FEMALE_BREAST_EXPOSED=0.5, FEET_EXPOSED=0.8' "
                    "(other NudeNet classes can be added this way).",
                ),
                *detector_inputs(),
                *_look_inputs(),
            ],
            outputs=[
                io.Image.Output("image", display_name="image"),
                io.Mask.Output("mask", display_name="mask", tooltip="How much each pixel was censored (0..1)."),
                io.Boolean.Output("censored", display_name="censored", tooltip="True when any image was censored."),
            ],
        )

    @classmethod
    def execute(
        cls,
        images,
        mode: str,
        threshold: float,
        padding: float,
        replace_whole_image: bool,
        whole_image_threshold: float,
        class_thresholds: str,
        detector: str = model_folders.BUNDLED_NUDENET,
        resolution: int = 320,
        provider: str = "auto",
        shape: str = "rectangle",
        feather: float = 0.0,
        blur_radius: float = 0.0,
        pixel_size: int = 0,
        fill_color: str = "#000000",
        class_padding: str = "",
        stop_on_nudity: bool = False,
        sticker=None,
        sticker_mask=None,
        replacement=None,
    ) -> io.NodeOutput:
        settings = CensorSettings(
            mode=mode,
            padding=padding,
            class_thresholds=parse_class_thresholds(class_thresholds, threshold),
            replace_threshold=whole_image_threshold if replace_whole_image else None,
            fill_color=parse_color(fill_color),
            blur_radius=blur_radius,
            pixel_size=pixel_size,
            shape=shape,
            feather=feather,
            class_padding=parse_class_values(class_padding, "class padding", (0.0, 2.0)),
            sticker=_first_rgba(sticker, sticker_mask),
            replacement=_first_rgba(replacement, None),
        )
        rule = NudityRule(threshold=whole_image_threshold)
        judge = get_detector(model_folders.nudenet_path(detector), resolution, provider)

        def one(array):
            (verdict,) = judge([array], rule)
            return verdict, censor_image(array, verdict.detections, verdict.nudity, settings)

        arrays = to_rgb_uint8(images)
        verdicts, done = zip(*each_image(arrays, one), strict=True) if arrays else ((), ())
        stop_if_nude(
            stop_on_nudity,
            [d.censored for d in done],
            [v.nudity for v in verdicts],
            "Nudity Censor",
            "a region reached its class threshold",
        )
        masks = masks_to_tensor([d.mask for d in done], images)
        out = keep_exact_pixels(images, images_to_tensor([d.image for d in done], images), masks)
        return io.NodeOutput(out, masks, any(d.censored for d in done))
