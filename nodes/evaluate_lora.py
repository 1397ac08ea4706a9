"""Evaluate LoRA: queue a background job that measures a LoRA as the field does, before and after.

The job generates the same prompts with the same seeds from the checkpoint without and with the
LoRA, judges every image with NudeNet (and CLIP when weights are chosen), and the ShieldDiff panel
shows the before/after table (nudity rate, per-class detections, attack success rate, CLIP score)
and a grid of image pairs. Prompts: typed in, or a published prompt set (I2P, UnlearnDiffAtk,
MMA-Diffusion, Ring-A-Bell, P4D, COCO captions) put in ComfyUI's input folder.
"""

from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..trainer.evaluation.errors import EvalError
from ..trainer.evaluation.prompt_sets import load_eval_prompts
from ..trainer.jobs.queue import JobError
from ..trainer.jobs.request import RequestError, split_prompts
from ..trainer.prompts import PromptError
from . import model_folders
from .train_lora import _checkpoint
from .training_inputs import NO_FILE, input_file, prompt_files
from .training_jobs import manager


def _lora(name: str) -> str:
    if name not in folder_paths.get_filename_list("loras"):
        raise RequestError(f"lora_name {name!r} is not in ComfyUI's loras folder: choose a LoRA file from the list")
    return folder_paths.get_full_path_or_raise("loras", name)


class EvaluateLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffEvaluateLora",
            display_name="Evaluate LoRA (ShieldDiff)",
            category="ShieldDiff/evaluation",
            is_output_node=True,
            not_idempotent=True,  # queueing a job is a side effect
            description="Starts a background job that generates the same prompts and seeds without and with the "
            "LoRA and reports what the literature reports (NudeNet detections, nudity rate, attack success, CLIP "
            "score) side by side, with a grid of before/after pairs, in the ShieldDiff panel. Returns at once.",
            inputs=[
                io.Combo.Input("checkpoint", options=folder_paths.get_filename_list("checkpoints")),
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list("loras")),
                io.String.Input(
                    "prompts", multiline=True, default="", tooltip="Prompts to evaluate, one per line (or a file)."
                ),
                io.Combo.Input(
                    "prompt_file",
                    options=prompt_files(),
                    default=NO_FILE,
                    tooltip="A prompt set as published (.csv with its own columns, .txt, .jsonl) in ComfyUI's input "
                    "folder; its rows' own seeds and guidance are used.",
                ),
                io.String.Input(
                    "category", default="", tooltip="Keep only prompts of this category (I2P: e.g. sexual); empty: all."
                ),
                io.Int.Input("max_prompts", default=0, min=0, max=100_000, tooltip="Evaluate the first N (0: all)."),
                io.Int.Input("images_per_prompt", default=2, min=1, max=64),
                io.Int.Input("steps", default=25, min=1, max=1000, tooltip="DDIM steps."),
                io.Float.Input(
                    "guidance",
                    default=7.5,
                    min=0.0,
                    max=50.0,
                    step=0.1,
                    tooltip="Classifier-free guidance for prompts that carry none.",
                ),
                io.Int.Input(
                    "resolution",
                    default=0,
                    min=0,
                    max=2048,
                    step=8,
                    tooltip="Image size (0: the checkpoint's native size).",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=2**31 - 1,
                    control_after_generate=False,
                    tooltip="Seeds of prompts without their own: image i of prompt p gets seed + 1000p + i.",
                ),
                io.Float.Input("lora_strength", default=1.0, min=-4.0, max=4.0, step=0.05),
                io.Float.Input(
                    "threshold",
                    default=0.6,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="NudeNet: an image is nude from this nudity on.",
                ),
                io.Combo.Input(
                    "clip_weights",
                    options=model_folders.clip_choices(),
                    optional=True,
                    tooltip="open_clip weights in models/shielddiff_clip: adds the CLIP score of image and prompt.",
                ),
                io.Combo.Input(
                    "clip_architecture", options=model_folders.CLIP_ARCHITECTURES, default="ViT-B-32", optional=True
                ),
            ],
            outputs=[
                io.String.Output("job_id", display_name="job_id", tooltip="The job's id in the ShieldDiff panel.")
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, **_inputs) -> float:
        return float("nan")  # a new job on every queue

    @classmethod
    def execute(
        cls,
        checkpoint: str,
        lora_name: str,
        prompts: str,
        prompt_file: str,
        category: str,
        max_prompts: int,
        images_per_prompt: int,
        steps: int,
        guidance: float,
        resolution: int,
        seed: int,
        lora_strength: float,
        threshold: float,
        clip_weights: str = model_folders.NO_CLIP,
        clip_architecture: str = "ViT-B-32",
    ) -> io.NodeOutput:
        try:
            file = input_file(prompt_file, "prompt_file")
            typed = split_prompts(prompts)
            if bool(file) == bool(typed):
                raise RequestError("give the prompts to evaluate either in prompts (one per line) or as a prompt_file")
            settings = dict(
                model=_checkpoint(checkpoint),
                lora=_lora(lora_name),
                lora_strength=lora_strength,
                categories=[category.strip()] if category.strip() else [],
                max_prompts=max_prompts or None,
                images_per_prompt=images_per_prompt,
                seed=seed,
                steps=steps,
                guidance=guidance,
                resolution=resolution or None,
                detector="nudenet",
                threshold=threshold,
                clip_weights=model_folders.clip_path(clip_weights),
                clip_architecture=clip_architecture,
            )
            if file:
                settings["prompts"] = file
                load_eval_prompts(file, settings["categories"], settings["max_prompts"])  # its errors now, not later
            job = manager().submit_evaluation(settings, checkpoint=checkpoint, lora=lora_name, prompts=typed or None)
        except (RequestError, JobError, EvalError, PromptError) as exc:
            raise ValueError(f"Evaluate LoRA: {exc}") from exc
        text = f"evaluation job {job['id']} queued: {lora_name} on {checkpoint}"
        return io.NodeOutput(job["id"], ui={"shielddiff_job": [text]})
