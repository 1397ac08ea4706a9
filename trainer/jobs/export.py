"""A job's LoRA at an earlier epoch: a checkpoint the trainer kept, written as a LoRA file like the final one.

Checkpoints hold the LoRA's weights as the trainer keeps them (peft's names); the export writes them
the way the trainer writes its final LoRA (kohya names, the `shielddiff.*` metadata with the training
history up to that epoch), then publishes the file into the LoRA folder as `<name>-epoch<N>` (or the
next free name), never replacing a file.
"""

from __future__ import annotations

from pathlib import Path

from ..training.job_dir import CHECKPOINT_LORA, JobDir
from .publish import publish_lora
from .store import JobError

__all__ = ["export_checkpoint"]


def export_checkpoint(job: JobDir, epoch: int, loras_dir: Path, stem: str) -> str:
    """Publish the LoRA of the checkpoint after `epoch` epochs; returns its file name in `loras_dir`."""
    from safetensors.torch import load_file

    from ..training.config import config_to_dict, load_config
    from ..training.session import write_trained_lora

    kept = [int(p.name.split("-")[-1]) for p in job.checkpoints()]
    if epoch not in kept:
        have = ", ".join(map(str, kept)) or "none"
        raise JobError(f"job {job.path.name} keeps no checkpoint after epoch {epoch}: it keeps epochs {have}")
    weights = job.checkpoint_dir(epoch) / CHECKPOINT_LORA
    try:
        state = load_file(str(weights))
    except (OSError, ValueError) as exc:  # rotated away meanwhile, or cut short
        raise JobError(f"the checkpoint of epoch {epoch} cannot be read: {exc}") from exc
    config = load_config(job.config_path)
    history = [m for m in job.read_metrics() if int(m.get("epoch", 0)) < epoch]
    summary = {"epochs": epoch, "final": history[-1] if history else {}, "first": history[0] if history else {}}
    staging = job.export_path(epoch)
    try:
        write_trained_lora(state, config, config.train.method, config_to_dict(config), summary, staging)
        return publish_lora(staging, loras_dir, f"{stem}-epoch{epoch}")
    except OSError as exc:
        raise JobError(f"the LoRA of epoch {epoch} could not be written into {loras_dir}: {exc}") from exc
    finally:
        staging.unlink(missing_ok=True)
