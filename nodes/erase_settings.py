"""All-but-One settings: the concept to erase and what replaces it, for Train Safety LoRA."""

from __future__ import annotations

from comfy_api.latest import io

from .method_settings import METHOD_SOCKET, MethodSettings
from .training_inputs import float_input

LABEL = "All-but-One erasure"


class AllButOneSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffAllButOneSettings",
            display_name="All-but-One settings (ShieldDiff)",
            category="ShieldDiff/training",
            description="The All-but-One erasure method for Train Safety LoRA: moves the concept's guidance onto "
            "the alternative (or to zero) while keeping the unconditional prediction. Connect its output to the "
            "train node's settings input.",
            inputs=[
                io.String.Input(
                    "erase_concept",
                    multiline=True,
                    default="nudity\nnaked person",
                    tooltip="The concept to erase, one prompt per line.",
                ),
                io.String.Input(
                    "erase_alternative",
                    multiline=True,
                    default="a person wearing clothes",
                    tooltip="What replaces the concept: empty (its guidance goes to zero), one line for every "
                    "concept, or one line per concept line.",
                ),
                float_input(
                    "erase_eta",
                    1.0,
                    "eta: the target guidance is eta x the alternative's. Negative with no alternative: away from "
                    "the concept (ESD-style).",
                ),
                float_input(
                    "erase_lambda",
                    1.0,
                    "lambda: weight of keeping the unconditional prediction (0: unconstrained, as ESD).",
                ),
            ],
            outputs=[
                METHOD_SOCKET.Output(
                    "settings", display_name="settings", tooltip="Connect to Train Safety LoRA's settings input."
                )
            ],
        )

    @classmethod
    def execute(cls, **values) -> io.NodeOutput:
        return io.NodeOutput(MethodSettings(LABEL, dict(values)))
