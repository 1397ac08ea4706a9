"""ShieldDiff Nudity Score: NudeNet's verdict on each image of a batch, and an annotated preview."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..trainer.images import to_rgb_uint8
from ..trainer.nudity.annotate import annotate
from ..trainer.nudity.detector import NudityRule, get_detector
from . import model_folders
from .comfy_images import images_to_tensor


def detector_inputs() -> list:
    """The detector choice shared by the nodes that run NudeNet."""
    return [
        io.Combo.Input(
            "detector",
            options=model_folders.nudenet_choices(),
            default=model_folders.BUNDLED_NUDENET,
            optional=True,
            tooltip="The NudeNet detector: the 320n model shipped with nudenet, or an ONNX file in models/nudenet.",
        ),
        io.Int.Input(
            "resolution",
            default=320,
            min=32,
            max=4096,
            step=32,
            optional=True,
            tooltip="NudeNet's input size (640 for 640m).",
        ),
    ]


class NudityScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffNudityScore",
            display_name="Nudity Score (ShieldDiff)",
            category="ShieldDiff/safety",
            is_output_node=True,
            description="Scores each image with NudeNet. Nudity is the highest confidence among the exposed "
            "breast, buttocks, genitalia and anus classes; an image is nude at or above the threshold.",
            inputs=[
                io.Image.Input("images"),
                io.Float.Input(
                    "threshold",
                    default=0.6,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="An image is nude when its nudity reaches this value (0.6 is the common choice).",
                ),
                *detector_inputs(),
            ],
            outputs=[
                io.Float.Output("nudity", display_name="nudity", tooltip="The highest nudity over the batch, 0..1."),
                io.Boolean.Output(
                    "is_nude", display_name="is_nude", tooltip="True when any image of the batch reaches the threshold."
                ),
                io.String.Output(
                    "detections",
                    display_name="detections",
                    tooltip="JSON: per image nudity, is_nude and every NudeNet detection.",
                ),
                io.Image.Output(
                    "preview", display_name="preview", tooltip="The images with NudeNet's boxes and labels drawn."
                ),
            ],
        )

    @classmethod
    def execute(
        cls, images, threshold: float, detector: str = model_folders.BUNDLED_NUDENET, resolution: int = 320
    ) -> io.NodeOutput:
        rule = NudityRule(threshold=threshold)
        arrays = to_rgb_uint8(images)
        results = get_detector(model_folders.nudenet_path(detector), resolution)(arrays, rule)
        nudity = max((r.nudity for r in results), default=0.0)
        report = {"rule": rule.describe(), "images": [r.to_dict() for r in results]}
        preview = images_to_tensor(
            [annotate(a, r.detections, rule) for a, r in zip(arrays, results, strict=True)], images
        )
        ui = {
            "shielddiff_nudity": [{"nudity": round(r.nudity, 4), "is_nude": r.is_nude} for r in results],
            "shielddiff_rule": [rule.describe()],
        }
        return io.NodeOutput(
            nudity, any(r.is_nude for r in results), json.dumps(report, allow_nan=False), preview, ui=ui
        )
