"""Train Safety LoRA: check the settings, queue a background training job, return at once.

The method and its own inputs come from a settings node ("ShieldDiff RL settings" or
"All-but-One settings") on the `settings` input; this node holds what every method uses. The job
runs in its own process (one at a time, after ComfyUI frees its models), so the ComfyUI queue keeps
running workflows meanwhile. Progress, charts, samples, Cancel and Resume are in the ShieldDiff
sidebar panel; the finished LoRA appears in models/loras. Graphs saved with the single node of
earlier versions still run (legacy_train_inputs.py).
"""

from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..trainer.diffusion.family import UnsupportedFamilyError, require_trainable
from ..trainer.jobs.queue import JobError
from ..trainer.jobs.request import RequestError, TrainingRequest
from .legacy_train_inputs import legacy_settings
from .method_settings import METHOD_SOCKET, MethodSettings
from .training_inputs import int_input
from .training_jobs import manager

NO_METHOD = (
    "Train Safety LoRA needs a method: connect a 'ShieldDiff RL settings' or 'All-but-One settings' node "
    "to its settings input"
)


def _checkpoint(name: str) -> str:
    if name not in folder_paths.get_filename_list("checkpoints"):
        folders = ", ".join(folder_paths.get_folder_paths("checkpoints"))
        raise RequestError(f"checkpoint {name!r} is not in ComfyUI's checkpoints folder ({folders})")
    path = folder_paths.get_full_path_or_raise("checkpoints", name)
    try:
        require_trainable(path)  # SD2, SD3, Flux... are refused here, before a job exists
    except (UnsupportedFamilyError, OSError, ValueError) as exc:
        raise RequestError(str(exc)) from exc
    return path


class TrainSafetyLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffTrainSafetyLora",
            display_name="Train Safety LoRA (ShieldDiff)",
            category="ShieldDiff/training",
            is_output_node=True,
            # Queueing a job is a side effect: never serve this node from ComfyUI's cache or merge
            # two such nodes of one graph (see fingerprint_inputs; the field exists in 0.3.75 and 0.30).
            not_idempotent=True,
            description="Starts a background job that fine-tunes a LoRA so the checkpoint stops drawing nudity "
            "while benign prompts keep their look (ShieldDiff RL), or erases a concept, optionally replaced by an "
            "alternative (All-but-One): the method comes from the settings node connected to settings. Returns at "
            "once; watch it in the ShieldDiff panel.",
            inputs=[
                io.Combo.Input("checkpoint", options=folder_paths.get_filename_list("checkpoints")),
                METHOD_SOCKET.Input(
                    "settings",
                    optional=True,
                    tooltip="The method and its own settings: connect a 'ShieldDiff RL settings' or "
                    "'All-but-One settings' node.",
                ),
                int_input(
                    "epochs", 20, "Training epochs (RL: sample, score, update; All-but-One: batches_per_epoch steps)."
                ),
                int_input(
                    "batches_per_epoch",
                    2,
                    "RL: sampling batches per epoch. All-but-One: optimisation steps per epoch.",
                ),
                int_input(
                    "train_batch_size",
                    4,
                    "Samples per optimisation step (RL: must divide the images per epoch; All-but-One: x_t per step).",
                ),
                int_input("steps", 20, "DDIM steps per image (All-but-One: of the frozen model's trajectory)."),
                int_input("resolution", 512, "Image size in pixels while training (a multiple of 8).", step=8),
                int_input("lora_rank", 4, "LoRA rank (alpha is set equal to the rank)."),
                io.Float.Input(
                    "learning_rate", default=3e-4, min=0.0, max=1.0, step=1e-5, round=False, tooltip="AdamW rate."
                ),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False),
                io.String.Input(
                    "lora_name",
                    default="safety-lora",
                    tooltip="File name of the LoRA the job writes into models/loras (an existing name is refused).",
                ),
            ],
            # Graphs saved before the settings nodes name the method's inputs on this node (see execute).
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
            outputs=[
                io.String.Output("job_id", display_name="job_id", tooltip="The job's id in the ShieldDiff panel."),
                io.String.Output(
                    "lora_file", display_name="lora_file", tooltip="The LoRA file the job will write into models/loras."
                ),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, **_inputs) -> float:
        # Run on every queue, whatever ComfyUI's cache keeps (NaN equals nothing): the job queue,
        # not the cache, decides whether the same request again is the job it already made.
        return float("nan")

    @classmethod
    def execute(
        cls, checkpoint: str, lora_name: str, settings: MethodSettings | None = None, **shared
    ) -> io.NodeOutput:
        try:
            if settings is None:  # a graph saved with the single node: its method inputs are in the prompt
                settings = legacy_settings(cls.hidden.prompt, cls.hidden.unique_id)
            if settings is None:
                raise RequestError(NO_METHOD)
            request = TrainingRequest(
                checkpoint=_checkpoint(checkpoint),
                lora_name=lora_name,
                method=settings.method,
                **settings.fields,
                **shared,
            )
            config = request.to_config()
            job = manager().submit(config, request.lora_name, method_label=settings.label, once=True)
        except (RequestError, JobError) as exc:
            raise ValueError(f"Train Safety LoRA: {exc}") from exc
        if job.get("repeat"):
            text = f"job {job['id']} (the same request, already {job['state']}): loras/{request.lora_name}.safetensors"
        else:
            text = f"job {job['id']} queued: will write loras/{request.lora_name}.safetensors"
        return io.NodeOutput(job["id"], f"{request.lora_name}.safetensors", ui={"shielddiff_job": [text]})
