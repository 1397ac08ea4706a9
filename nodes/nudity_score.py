"""ShieldDiff Nudity Score: NudeNet's verdict on each image of a batch."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..trainer.nudity import NudityRule, get_detector


class NudityScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffNudityScore",
            display_name="Nudity Score (ShieldDiff)",
            category="ShieldDiff/safety",
            is_output_node=True,
            description="Scores each image with NudeNet (the detector shipped in the nudenet package). "
            "Nudity is the highest confidence among the exposed breast, buttocks, genitalia and anus classes.",
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
            ],
        )

    @classmethod
    def execute(cls, images, threshold: float) -> io.NodeOutput:
        rule = NudityRule(threshold=threshold)
        results = get_detector()(images, rule)
        per_image = [r.to_dict() for r in results]
        nudity = max((r.nudity for r in results), default=0.0)
        is_nude = any(r.is_nude for r in results)
        ui = {
            "shielddiff_nudity": [{"nudity": round(r.nudity, 4), "is_nude": r.is_nude} for r in results],
            "shielddiff_rule": [rule.describe()],
        }
        return io.NodeOutput(nudity, is_nude, json.dumps({"rule": rule.describe(), "images": per_image}), ui=ui)
