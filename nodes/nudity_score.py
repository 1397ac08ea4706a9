"""ShieldDiff Nudity Score: NudeNet's verdict on each image of a batch, and an annotated preview."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..trainer.images import to_rgb_uint8
from ..trainer.nudity.annotate import annotate
from ..trainer.nudity.detector import NudityRule, get_detector
from ..trainer.nudity.providers import PROVIDERS
from . import model_folders
from .batch_progress import each_image, stop_if_nude, stop_on_nudity_input
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
        io.Combo.Input(
            "provider",
            options=list(PROVIDERS),
            default="auto",
            optional=True,
            tooltip="Where NudeNet runs: auto takes CUDA (onnxruntime-gpu), DirectML (onnxruntime-directml) or "
            "CoreML when installed, else the CPU.",
        ),
    ]


def threshold_input() -> io.Float.Input:
    """The nudity threshold of the nodes that give NudeNet's verdict."""
    return io.Float.Input(
        "threshold",
        default=0.6,
        min=0.0,
        max=1.0,
        step=0.01,
        tooltip="An image is nude when its nudity reaches this value (0.6 is the common choice).",
    )


def judge_each(images, threshold: float, detector: str, resolution: int, provider: str):
    """The rule and NudeNet's verdict on each image, one image at a time (progress bar, cancel between images)."""
    rule = NudityRule(threshold=threshold)
    judge = get_detector(model_folders.nudenet_path(detector), resolution, provider)
    arrays = to_rgb_uint8(images)
    return rule, arrays, each_image(arrays, lambda array: judge([array], rule)[0])


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
                threshold_input(),
                *detector_inputs(),
                stop_on_nudity_input(),
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
                io.Boolean.Output(
                    "nude_flags",
                    display_name="nude_flags",
                    is_output_list=True,
                    tooltip="One verdict per image, in batch order (a list: nodes after it run once per image).",
                ),
                io.Image.Output(
                    "images_out",
                    display_name="images",
                    tooltip="The input images, unchanged: route them through this node so that stop_on_nudity "
                    "runs before whatever saves them.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        images,
        threshold: float,
        detector: str = model_folders.BUNDLED_NUDENET,
        resolution: int = 320,
        provider: str = "auto",
        stop_on_nudity: bool = False,
    ) -> io.NodeOutput:
        rule, arrays, results = judge_each(images, threshold, detector, resolution, provider)
        flags = [r.is_nude for r in results]
        stop_if_nude(stop_on_nudity, flags, [r.nudity for r in results], "Nudity Score", rule.describe())
        nudity = max((r.nudity for r in results), default=0.0)
        report = {"rule": rule.describe(), "images": [r.to_dict() for r in results]}
        preview = images_to_tensor(
            [annotate(a, r.detections, rule) for a, r in zip(arrays, results, strict=True)], images
        )
        ui = {
            "shielddiff_nudity": [{"nudity": round(r.nudity, 4), "is_nude": r.is_nude} for r in results],
            "shielddiff_rule": [rule.describe()],
        }
        return io.NodeOutput(nudity, any(flags), json.dumps(report, allow_nan=False), preview, flags, images, ui=ui)
