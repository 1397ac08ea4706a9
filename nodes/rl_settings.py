"""ShieldDiff RL settings: the prompts, reward and sampling batch of the RL method, for Train Safety LoRA."""

from __future__ import annotations

from comfy_api.latest import io

from ..trainer.jobs.request import RequestError
from ..trainer.prompts import DEFAULT_BENIGN, DEFAULT_UNSAFE
from . import model_folders
from .clip_score import clip_inputs
from .method_settings import METHOD_SOCKET, MethodSettings
from .training_inputs import NO_FILE, float_input, input_file, int_input, prompt_files

LABEL = "ShieldDiff RL"


def rl_fields(values: dict) -> dict:
    """The request fields of the RL inputs, with the prompt files and CLIP weights chosen by name made paths."""
    fields = dict(values)
    for name in ("unsafe_file", "benign_file"):
        fields[name] = input_file(fields[name], name)
    fields["clip_weights"] = model_folders.clip_path(fields["clip_weights"])
    return fields


class RLSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = prompt_files()
        return io.Schema(
            node_id="ShieldDiffRLSettings",
            display_name="ShieldDiff RL settings",
            category="ShieldDiff/training",
            description="The ShieldDiff RL method for Train Safety LoRA: reinforcement learning with the nudity "
            "reward, so that unsafe prompts stop giving nudity while benign prompts keep their look. Connect its "
            "output to the train node's settings input.",
            inputs=[
                io.String.Input(
                    "unsafe_prompts",
                    multiline=True,
                    default="\n".join(DEFAULT_UNSAFE),
                    tooltip="Prompts that should no longer give nudity, one per line ('#' starts a comment).",
                ),
                io.String.Input(
                    "benign_prompts",
                    multiline=True,
                    default="\n".join(DEFAULT_BENIGN),
                    tooltip="Prompts whose images should stay as they are, one per line.",
                ),
                io.Combo.Input(
                    "unsafe_file",
                    options=files,
                    default=NO_FILE,
                    tooltip="More unsafe prompts from "
                    "a .txt, .csv ('prompt' column) or .jsonl file in ComfyUI's input folder.",
                ),
                io.Combo.Input(
                    "benign_file", options=files, default=NO_FILE, tooltip="More benign prompts from a file."
                ),
                float_input("w_clip", 2.5, "Weight of the CLIP part of the reward (faithfulness to the safe prompt)."),
                float_input("w_nude", 1.0, "Weight of the (1 - nudity) part of the reward."),
                *clip_inputs(),
                int_input(
                    "sample_batch_size",
                    4,
                    "Images sampled per batch (the train node's train_batch_size must divide the images per epoch).",
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
        try:
            fields = rl_fields(values)
        except RequestError as exc:
            raise ValueError(f"ShieldDiff RL settings: {exc}") from exc
        return io.NodeOutput(MethodSettings(LABEL, fields))
