"""ShieldDiff Nudity Filter: split a batch into its safe and its nude images by NudeNet's verdict."""

from __future__ import annotations

import json

from comfy_api.latest import io

from . import model_folders
from .nudity_score import detector_inputs, judge_each, threshold_input


def _subset(images, indices: list[int]):
    """The images at `indices` as one batch, or a blocker (the nodes fed by that output do not run) when none."""
    if not indices:
        from comfy_execution.graph_utils import ExecutionBlocker

        return ExecutionBlocker(None)
    return images[indices]


class NudityFilter(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffNudityFilter",
            display_name="Nudity Filter (ShieldDiff)",
            category="ShieldDiff/safety",
            description="Splits a batch by NudeNet's verdict: the safe images go one way, the nude ones another. "
            "When a side has no image, the nodes it feeds do not run (nothing is saved).",
            inputs=[
                io.Image.Input("images"),
                threshold_input(),
                *detector_inputs(),
            ],
            outputs=[
                io.Image.Output("safe_images", display_name="safe_images", tooltip="The images below the threshold."),
                io.Image.Output("nude_images", display_name="nude_images", tooltip="The images at or above it."),
                io.String.Output(
                    "nude_indices",
                    display_name="nude_indices",
                    tooltip="JSON list of the nude images' places in the batch, from 0 (e.g. [1, 3]).",
                ),
                io.Int.Output("safe_count", display_name="safe_count"),
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
    ) -> io.NodeOutput:
        _, _, results = judge_each(images, threshold, detector, resolution, provider)
        nude = [i for i, r in enumerate(results) if r.is_nude]
        safe = [i for i, r in enumerate(results) if not r.is_nude]
        ui = {"shielddiff_nudity": [{"nudity": round(r.nudity, 4), "is_nude": r.is_nude} for r in results]}
        return io.NodeOutput(_subset(images, safe), _subset(images, nude), json.dumps(nude), len(safe), ui=ui)
