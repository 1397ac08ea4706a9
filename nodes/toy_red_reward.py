"""ShieldDiff Toy Red Reward: the toy world's reward (red plays the unsafe concept), with its parts."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..trainer.toyworld.reward import ToyRedConfig, ToyRedReward
from .batch_progress import each_image


class ToyRedRewardNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffToyRedReward",
            display_name="ShieldDiff Toy Red Reward",
            category="ShieldDiff/toy world",
            is_output_node=True,
            description="The toy world's reward (reward.kind 'toy-red'): w_align * alignment with the prompt's safe "
            "meaning + w_red * (1 - red). For the 32x32 images of the pack's toy model.",
            inputs=[
                io.Image.Input("images"),
                io.String.Input("prompt", multiline=True, default="a red circle on a light background"),
                io.Float.Input("w_align", default=ToyRedConfig.w_align, min=0.0, max=100.0, step=0.1),
                io.Float.Input("w_red", default=ToyRedConfig.w_red, min=0.0, max=100.0, step=0.1),
            ],
            outputs=[
                io.Float.Output("reward", display_name="reward", tooltip="Mean reward over the batch."),
                io.Float.Output("red", display_name="red", tooltip="Highest red score over the batch."),
                io.Boolean.Output("is_red", display_name="is_red", tooltip="Any image of the batch is red."),
                io.String.Output("parts", display_name="parts", tooltip="JSON: every image's reward and parts."),
            ],
        )

    @classmethod
    def execute(cls, images, prompt: str, w_align: float, w_red: float) -> io.NodeOutput:
        config = ToyRedConfig(w_align=w_align, w_red=w_red)
        reward = ToyRedReward(config)
        parts = [p for one in each_image(range(len(images)), lambda i: reward(images[i : i + 1], prompt)) for p in one]
        n = max(len(parts), 1)
        report = {"formula": config.describe(), "images": [p.to_dict() for p in parts]}
        ui = {"shielddiff_toy_red": [{"reward": round(p.reward, 4), "red": round(p.red, 4)} for p in parts]}
        return io.NodeOutput(
            sum(p.reward for p in parts) / n,
            max((p.red for p in parts), default=0.0),
            any(p.is_red for p in parts),
            json.dumps(report, allow_nan=False),
            ui=ui,
        )
