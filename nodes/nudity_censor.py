"""ShieldDiff Nudity Censor: blur, pixelate or fill what NudeNet finds, or replace the whole image."""

from __future__ import annotations

from comfy_api.latest import io

from ..trainer.images import to_rgb_uint8
from ..trainer.nudity.censor import CENSOR_MODES, CensorSettings, censor_image, parse_class_thresholds
from ..trainer.nudity.detector import NudityRule, get_detector
from . import model_folders
from .comfy_images import images_to_tensor, keep_exact_pixels, masks_to_tensor
from .nudity_score import detector_inputs


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
            ],
            outputs=[
                io.Image.Output("image", display_name="image"),
                io.Mask.Output("mask", display_name="mask", tooltip="1 where the image was censored."),
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
    ) -> io.NodeOutput:
        thresholds = parse_class_thresholds(class_thresholds, threshold)
        settings = CensorSettings(
            mode=mode,
            padding=padding,
            class_thresholds=thresholds,
            replace_threshold=whole_image_threshold if replace_whole_image else None,
        )
        rule = NudityRule(threshold=whole_image_threshold)
        arrays = to_rgb_uint8(images)
        results = get_detector(model_folders.nudenet_path(detector), resolution)(arrays, rule)
        done = [censor_image(a, r.detections, r.nudity, settings) for a, r in zip(arrays, results, strict=True)]
        masks = masks_to_tensor([d.mask for d in done], images)
        out = keep_exact_pixels(images, images_to_tensor([d.image for d in done], images), masks)
        return io.NodeOutput(out, masks, any(d.censored for d in done))
