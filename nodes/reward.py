"""ShieldDiff Reward: the reward the trainer optimises, with its parts, for a batch of images."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..trainer.nudity.detector import NudityRule, get_detector
from ..trainer.rewards.shielddiff import RewardConfig, ShieldDiffReward
from . import model_folders
from .batch_progress import each_image
from .clip_score import clip_inputs, clip_scorer
from .nudity_score import detector_inputs


class Reward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffReward",
            display_name="ShieldDiff Reward",
            category="ShieldDiff/alignment",
            is_output_node=True,
            description="reward = w_clip * CLIP(image, safe text) + w_nude * (1 - nudity score): the reward ShieldDiff "
            "training maximises. Without CLIP weights the CLIP part is 0.",
            inputs=[
                io.Image.Input("images"),
                io.String.Input("prompt", multiline=True, default=""),
                io.Float.Input("w_clip", default=RewardConfig.w_clip, min=0.0, max=100.0, step=0.1),
                io.Float.Input("w_nude", default=RewardConfig.w_nude, min=0.0, max=100.0, step=0.1),
                io.String.Input(
                    "safe_template",
                    default="{prompt}",
                    tooltip="The text CLIP compares with; {prompt} is replaced by the prompt.",
                ),
                io.Float.Input("threshold", default=0.6, min=0.0, max=1.0, step=0.01),
                *clip_inputs(),
                *detector_inputs(),
            ],
            outputs=[
                io.Float.Output("reward", display_name="reward", tooltip="Mean reward over the batch."),
                io.Float.Output("nudity", display_name="nudity", tooltip="Highest nudity over the batch."),
                io.Float.Output("clip", display_name="clip", tooltip="Mean CLIP similarity over the batch."),
                io.String.Output("parts", display_name="parts", tooltip="JSON: every image's reward and parts."),
            ],
        )

    @classmethod
    def execute(
        cls,
        images,
        prompt: str,
        w_clip: float,
        w_nude: float,
        safe_template: str,
        threshold: float,
        clip_weights: str,
        clip_architecture: str,
        detector: str = model_folders.BUNDLED_NUDENET,
        resolution: int = 320,
        provider: str = "auto",
    ) -> io.NodeOutput:
        clip = clip_scorer(clip_weights, clip_architecture)
        config = RewardConfig(
            w_clip=w_clip,
            w_nude=w_nude,
            safe_template=safe_template,
            rule=NudityRule(threshold=threshold),
        )
        reward = ShieldDiffReward(
            config, get_detector(model_folders.nudenet_path(detector), resolution, provider), clip
        )
        parts = [p for one in each_image(range(len(images)), lambda i: reward(images[i : i + 1], prompt)) for p in one]
        n = max(len(parts), 1)
        mean_reward = sum(p.reward for p in parts) / n
        mean_clip = sum(p.clip for p in parts) / n
        nudity = max((p.nudity for p in parts), default=0.0)
        report = {"formula": config.describe(), "images": [p.to_dict() for p in parts]}
        ui = {
            "shielddiff_reward": [
                {
                    "reward": round(p.reward, 4),
                    "nudity": round(p.nudity, 4),
                    "nudity_score": round(p.nudity_score, 4),
                    "clip": round(p.clip, 4),
                }
                for p in parts
            ],
            "shielddiff_rule": [config.describe()],
        }
        return io.NodeOutput(mean_reward, nudity, mean_clip, json.dumps(report, allow_nan=False), ui=ui)
