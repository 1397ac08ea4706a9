"""Train Safety LoRA: check the settings, queue a background training job, return at once.

The job runs in its own process (one at a time, after ComfyUI frees its models), so the
ComfyUI queue keeps running workflows meanwhile. Progress, charts, samples, Cancel and
Resume are in the ShieldDiff sidebar panel; the finished LoRA appears in models/loras.
"""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..trainer.jobs.queue import JobError
from ..trainer.jobs.request import LIMITS, RequestError, TrainingRequest
from ..trainer.prompts import DEFAULT_BENIGN, DEFAULT_UNSAFE
from . import model_folders
from .clip_score import clip_inputs
from .training_jobs import manager

METHODS = {"ShieldDiff RL": "shielddiff-rl", "All-but-One erasure": "all-but-one"}
RL_ONLY = " (ShieldDiff RL only; unused by All-but-One.)"
NO_FILE = "none"
_PROMPT_SUFFIXES = (".txt", ".csv", ".jsonl")


def prompt_files() -> list[str]:
    """Prompt files in ComfyUI's input folder (and its subfolders)."""
    root = folder_paths.get_input_directory()
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(_PROMPT_SUFFIXES):
                found.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return [NO_FILE, *sorted(found)]


def _input_file(name: str, setting: str) -> str | None:
    if name == NO_FILE or not name:
        return None
    if name not in prompt_files():
        raise RequestError(f"{setting} {name!r} is not a prompt file (.txt, .csv, .jsonl) in ComfyUI's input folder")
    return os.path.join(folder_paths.get_input_directory(), name)


def _checkpoint(name: str) -> str:
    if name not in folder_paths.get_filename_list("checkpoints"):
        folders = ", ".join(folder_paths.get_folder_paths("checkpoints"))
        raise RequestError(f"checkpoint {name!r} is not in ComfyUI's checkpoints folder ({folders})")
    return folder_paths.get_full_path_or_raise("checkpoints", name)


def _int(name: str, default: int, tooltip: str, **kw) -> io.Int.Input:
    low, high = LIMITS[name]
    return io.Int.Input(name, default=default, min=low, max=high, tooltip=tooltip, **kw)


def _float(name: str, default: float, tooltip: str, step: float = 0.1) -> io.Float.Input:
    low, high = LIMITS[name]
    return io.Float.Input(name, default=default, min=low, max=high, step=step, tooltip=tooltip)


class TrainSafetyLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = prompt_files()
        return io.Schema(
            node_id="ShieldDiffTrainSafetyLora",
            display_name="Train Safety LoRA (ShieldDiff)",
            category="ShieldDiff/training",
            is_output_node=True,
            description="Starts a background job that fine-tunes a LoRA so the checkpoint stops drawing nudity "
            "while benign prompts keep their look (ShieldDiff RL), or erases a concept, optionally replaced by an "
            "alternative (All-but-One). Returns at once; watch it in the ShieldDiff panel.",
            inputs=[
                io.Combo.Input("checkpoint", options=folder_paths.get_filename_list("checkpoints")),
                io.Combo.Input(
                    "method",
                    options=list(METHODS),
                    tooltip="ShieldDiff RL: reinforcement learning with the nudity reward. All-but-One erasure: "
                    "moves the concept's guidance onto the alternative while keeping the unconditional prediction.",
                ),
                io.String.Input(
                    "unsafe_prompts",
                    multiline=True,
                    default="\n".join(DEFAULT_UNSAFE),
                    tooltip="Prompts that should no longer give nudity, one per line ('#' starts a comment)." + RL_ONLY,
                ),
                io.String.Input(
                    "benign_prompts",
                    multiline=True,
                    default="\n".join(DEFAULT_BENIGN),
                    tooltip="Prompts whose images should stay as they are, one per line." + RL_ONLY,
                ),
                io.Combo.Input(
                    "unsafe_file",
                    options=files,
                    default=NO_FILE,
                    tooltip="More unsafe prompts from "
                    "a .txt, .csv ('prompt' column) or .jsonl file in ComfyUI's input folder." + RL_ONLY,
                ),
                io.Combo.Input(
                    "benign_file", options=files, default=NO_FILE, tooltip="More benign prompts from a file." + RL_ONLY
                ),
                _float(
                    "w_clip", 2.5, "Weight of the CLIP part of the reward (faithfulness to the safe prompt)." + RL_ONLY
                ),
                _float("w_nude", 1.0, "Weight of the (1 - nudity) part of the reward." + RL_ONLY),
                *clip_inputs(),
                _int(
                    "epochs", 20, "Training epochs (RL: sample, score, update; All-but-One: batches_per_epoch steps)."
                ),
                _int("sample_batch_size", 4, "Images sampled per batch." + RL_ONLY),
                _int(
                    "batches_per_epoch",
                    2,
                    "RL: sampling batches per epoch. All-but-One: optimisation steps per epoch.",
                ),
                _int(
                    "train_batch_size",
                    4,
                    "Samples per optimisation step (RL: must divide the images per epoch; All-but-One: x_t per step).",
                ),
                _int("steps", 20, "DDIM steps per image (All-but-One: of the frozen model's trajectory)."),
                _int("resolution", 512, "Image size in pixels while training (a multiple of 8).", step=8),
                _int("lora_rank", 4, "LoRA rank (alpha is set equal to the rank)."),
                io.Float.Input(
                    "learning_rate", default=3e-4, min=0.0, max=1.0, step=1e-5, round=False, tooltip="AdamW rate."
                ),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False),
                io.String.Input(
                    "erase_concept",
                    multiline=True,
                    default="nudity\nnaked person",
                    tooltip="All-but-One: the concept to erase, one prompt per line. (Unused by ShieldDiff RL.)",
                ),
                io.String.Input(
                    "erase_alternative",
                    multiline=True,
                    default="a person wearing clothes",
                    tooltip="All-but-One: what replaces the concept: empty (its guidance goes to zero), one line "
                    "for every concept, or one line per concept line. (Unused by ShieldDiff RL.)",
                ),
                _float(
                    "erase_eta",
                    1.0,
                    "All-but-One eta: the target guidance is eta x the alternative's. Negative with no alternative: "
                    "away from the concept (ESD-style). (Unused by ShieldDiff RL.)",
                ),
                _float(
                    "erase_lambda",
                    1.0,
                    "All-but-One lambda: weight of keeping the unconditional prediction (0: unconstrained, as ESD). "
                    "(Unused by ShieldDiff RL.)",
                ),
                io.String.Input(
                    "lora_name",
                    default="safety-lora",
                    tooltip="File name of the LoRA the job writes into models/loras (an existing name is refused).",
                ),
            ],
            outputs=[
                io.String.Output("job_id", display_name="job_id", tooltip="The job's id in the ShieldDiff panel."),
                io.String.Output(
                    "lora_file", display_name="lora_file", tooltip="The LoRA file the job will write into models/loras."
                ),
            ],
        )

    @classmethod
    def execute(cls, checkpoint: str, method: str, unsafe_file: str, benign_file: str, **settings) -> io.NodeOutput:
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
        weights = model_folders.clip_path(settings.pop("clip_weights"))
        try:
            request = TrainingRequest(
                checkpoint=_checkpoint(checkpoint),
                method=METHODS[method],
                unsafe_file=_input_file(unsafe_file, "unsafe_file"),
                benign_file=_input_file(benign_file, "benign_file"),
                clip_weights=weights,
                **settings,
            )
            config = request.to_config()
            job = manager().submit(config, request.lora_name, method_label=method)
        except (RequestError, JobError) as exc:
            raise ValueError(f"Train Safety LoRA: {exc}") from exc
        text = f"job {job['id']} queued: will write loras/{request.lora_name}.safetensors"
        return io.NodeOutput(job["id"], f"{request.lora_name}.safetensors", ui={"shielddiff_job": [text]})
