"""What every training method's run shares: the stop flag, seeds, the job's log file,
checkpoints, sample images and peak memory.

A run is cancelled by a cancel request in the job directory (every OS) or by SIGTERM (POSIX,
and `accelerate launch`, which forwards it): the method raises `TrainingCancelled` at its
next safe point, and the last complete epoch is kept as a checkpoint. Randomness comes from
`seed(...)` of (seed, epoch, batch, ...), so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write_bytes
from .job_dir import CHECKPOINT_LORA, CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE, JobDir, own_start

__all__ = [
    "StopFlag",
    "TrainingCancelled",
    "end_epoch",
    "job_log",
    "load_checkpoint",
    "mark_cancelled",
    "peak_memory_mb",
    "save_checkpoint",
    "save_samples",
    "seed",
]

log = logging.getLogger(__name__)


class TrainingCancelled(Exception):  # noqa: N818 - a signal, not an error
    """A stop was asked for; the last complete state was checkpointed and the job marked cancelled."""


def seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (seed, epoch, batch, process, purpose)."""
    value = 0x5EED
    for p in parts:
        value = (value * 1_000_003 + int(p)) % (2**63 - 1)
    return value


class StopFlag:
    """Within `with StopFlag(job) as stop:`, `stop.stop` turns true when SIGTERM arrives (instead of
    ending the process) or when the job directory holds a cancel request; the methods read it at
    their safe points."""

    def __init__(self, job: JobDir | None = None):
        self.signalled = False
        self.job = job
        self._since = own_start()  # a request left from before this process started does not count
        self._previous = None

    @property
    def stop(self) -> bool:
        if not self.signalled and self.job is not None and self.job.cancel_requested(self._since):
            log.warning("cancel requested: stopping at the next safe point")
            self.signalled = True
        return self.signalled

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handle(self, *_):
        log.warning("SIGTERM received: stopping at the next safe point")
        self.signalled = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@contextlib.contextmanager
def job_log(job: JobDir):
    """Copy every log record into the job's log.txt while the block runs."""
    handler = logging.FileHandler(job.log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def save_checkpoint(job: JobDir, snapshot: dict, epochs_done: int) -> Path:
    """`snapshot`: {"lora": tensors, "optimizer": state dict, "state": the method's own (tensors, numbers)}."""
    from safetensors.torch import save_file

    staging = job.begin_checkpoint()
    save_file(snapshot["lora"], str(staging / CHECKPOINT_LORA))
    torch.save(snapshot["optimizer"], staging / CHECKPOINT_OPTIMIZER)
    torch.save({**snapshot.get("state", {}), "epochs_done": epochs_done}, staging / CHECKPOINT_STATE)
    return job.commit_checkpoint(staging, epochs_done)


def end_epoch(job: JobDir, snapshot: dict, epoch: int, total: int, checkpoint_every: int) -> None:
    """After epoch `epoch` (counted from 0): a checkpoint when one is due (and after the last), then the status."""
    if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == total:
        save_checkpoint(job, snapshot, epoch + 1)
    job.write_status("running", epoch=epoch + 1, total=total, message=f"epoch {epoch + 1} of {total}")


def mark_cancelled(job: JobDir, snapshot: dict, epochs_done: int, total: int) -> None:
    """A stop request: keep the last complete epoch as a checkpoint and mark the job cancelled."""
    save_checkpoint(job, snapshot, epochs_done)
    job.write_status("cancelled", epoch=epochs_done, total=total, message=f"cancelled after epoch {epochs_done}")


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by `save_checkpoint`, read without unpickling code (weights_only)."""
    from safetensors.torch import load_file

    state = torch.load(path / CHECKPOINT_STATE, weights_only=True)
    epochs_done = int(state.pop("epochs_done"))
    return {
        "lora": load_file(str(path / CHECKPOINT_LORA)),
        "optimizer": torch.load(path / CHECKPOINT_OPTIMIZER, weights_only=True),
        "state": state,
        "epochs_done": epochs_done,
    }


def peak_memory_mb(device: torch.device) -> float:
    """The peak GPU memory on CUDA; otherwise this process's peak resident memory (POSIX: ru_maxrss;
    Windows: the peak working set), or its current resident memory where no peak is kept."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource  # POSIX only
    except ImportError:
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_samples(job: JobDir, epoch: int, images: list[np.ndarray], prompts: list[str], count: int) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    for i, (image, prompt) in enumerate(zip(images[:count], prompts, strict=False)):
        buf = io.BytesIO()
        info = PngInfo()
        info.add_text("prompt", prompt)
        Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
        atomic_write_bytes(job.sample_path(epoch, i), buf.getvalue())
