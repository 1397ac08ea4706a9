"""ShieldDiff CLIP Score: how well each image matches a text (open_clip cosine similarity)."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..trainer.rewards.clip import ClipSpec, get_clip_scorer
from . import model_folders
from .batch_progress import each_image


def clip_inputs() -> list:
    """The CLIP choice shared by the nodes that score alignment."""
    return [
        io.Combo.Input(
            "clip_weights",
            options=model_folders.clip_choices(),
            tooltip="open_clip weights in models/shielddiff_clip (.safetensors preferred).",
        ),
        io.Combo.Input(
            "clip_architecture",
            options=model_folders.CLIP_ARCHITECTURES,
            default="ViT-B-32",
            tooltip="The open_clip architecture of the weights; 'auto' reads a config .json beside the weights.",
        ),
    ]


def clip_scorer(clip_weights: str, clip_architecture: str):
    """The shared scorer for the chosen weights, or None when no weights were chosen."""
    import comfy.model_management as mm
    import torch

    path = model_folders.clip_path(clip_weights)
    if path is None:
        return None
    device = mm.get_torch_device()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return get_clip_scorer(ClipSpec(architecture=clip_architecture, weights=path), device, dtype, offload=True)


class ClipScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffClipScore",
            display_name="CLIP Score (ShieldDiff)",
            category="ShieldDiff/alignment",
            is_output_node=True,
            description="Cosine similarity of each image with the text, from open_clip embeddings (-1..1).",
            inputs=[io.Image.Input("images"), io.String.Input("text", multiline=True, default=""), *clip_inputs()],
            outputs=[
                io.Float.Output("score", display_name="score", tooltip="The mean over the batch."),
                io.String.Output("scores", display_name="scores", tooltip="JSON list, one score per image."),
            ],
        )

    @classmethod
    def execute(cls, images, text: str, clip_weights: str, clip_architecture: str) -> io.NodeOutput:
        scorer = clip_scorer(clip_weights, clip_architecture)
        if scorer is None:
            raise ValueError(
                "CLIP Score needs CLIP weights: put an open_clip weights file in ComfyUI/models/shielddiff_clip/ "
                "and choose it in clip_weights"
            )
        scores = [s for one in each_image(range(len(images)), lambda i: scorer(images[i : i + 1], text)) for s in one]
        mean = sum(scores) / len(scores) if scores else 0.0
        return io.NodeOutput(
            mean, json.dumps(scores, allow_nan=False), ui={"shielddiff_clip": [round(s, 4) for s in scores]}
        )
