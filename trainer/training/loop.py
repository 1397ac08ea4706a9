"""The epoch loop every training method runs: start or resume, one step per epoch, its metrics,
samples and checkpoints, early stopping, a stop request at a safe point, and the final LoRA.

A method supplies its models (`setup`) and, once the models are loaded and a resumed run's LoRA
and optimizer are back, its `Epochs`: what one epoch does, its own state for a checkpoint, and the
sample images of an epoch. The loop keeps the LoRA and optimizer state itself.

Per epoch, on every process: the method's step; then on the main process the metrics row, the
sample images, a checkpoint when one is due and the status; then all processes meet. A step may end
the run early, keeping its epoch (`EpochReport.stop`) or undoing it (`EpochReport.undo`: the LoRA
goes back to the last kept epoch). A stop request (StopFlag: a cancel request or SIGTERM) raises
`TrainingCancelled` at the method's next safe point: the last complete epoch is kept as a checkpoint,
the job is marked cancelled and no LoRA is written.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .job_dir import JobDir
from .run import StopFlag, TrainingCancelled, end_epoch, job_log, mark_cancelled, save_samples
from .session import TrainingModels, begin_run, finish_training, lora_state, set_lora_state

__all__ = ["EpochReport", "Epochs", "Samples", "run_epochs", "train_job"]

log = logging.getLogger(__name__)


@dataclass
class EpochReport:
    """What one epoch did. `metrics`: its metrics.jsonl row after "epoch" (the same on every process;
    the main process writes it). `stop`: why the run ends after this epoch, keeping it. `undo`: why
    this epoch is not kept: its row is written, the LoRA goes back to the last kept epoch and the run
    ends there."""

    metrics: dict[str, Any]
    stop: str | None = None
    undo: str | None = None


@dataclass
class Samples:
    """An epoch's sample images (uint8 HxWx3) and the prompt of each, saved into the job's samples."""

    images: list[np.ndarray] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)


class Epochs(Protocol):
    """A training method as the loop runs it."""

    def epoch(self, epoch: int, stop: StopFlag) -> EpochReport:
        """Train epoch `epoch` (counted from 0); raise TrainingCancelled at a safe point when `stop.stop`."""

    def snapshot(self) -> dict:
        """The method's own state after the last epoch (tensors, numbers, lists), saved with a checkpoint."""

    def restore(self, state: dict) -> None:
        """Take back the state `snapshot` returned, from a resumed run's checkpoint."""

    def samples(self, epoch: int) -> Samples:
        """The sample images of epoch `epoch`, just trained (called on the main process only)."""


def train_job(
    config,
    job_dir: str | Path,
    resume: bool,
    cache_dir: str | Path | None,
    *,
    method: str,
    setup: Callable[[Any, Path], TrainingModels],
    start: Callable[[TrainingModels], Epochs],
) -> Path:
    """Run (or resume) the job in `job_dir` with its log file; returns the path of the final LoRA."""
    job = JobDir(job_dir)
    with job_log(job):
        models = setup(config, Path(cache_dir or job.path / ".configs"))
        return run_epochs(config, job, resume, models, method=method, start=start)


def run_epochs(
    config, job: JobDir, resume: bool, models: TrainingModels, *, method: str, start: Callable[[TrainingModels], Epochs]
) -> Path:
    """The loop over `config.train.epochs` with `models` loaded; `method` names the LoRA's method in its
    metadata ("shielddiff-rl", "all-but-one"); `start(models)` builds the method's Epochs."""
    from tqdm.auto import tqdm

    total = config.train.epochs
    acc = models.accelerator
    main = acc.is_main_process
    first, saved = begin_run(models, config, job, resume)
    epochs = start(models)
    if saved:
        epochs.restore(saved)
    with StopFlag(job) as stop:
        kept, done = _snapshot(models, epochs), first
        try:
            for epoch in tqdm(range(first, total), initial=first, total=total, disable=not main, desc="epochs"):
                report = epochs.epoch(epoch, stop)
                if report.undo is not None:
                    log.info("early stop: %s", report.undo)
                    if main:
                        job.append_metrics({"epoch": epoch, **report.metrics})
                    set_lora_state(models, kept["lora"])
                    config.train.epochs = done
                    break
                kept, done = _snapshot(models, epochs), epoch + 1
                if main:
                    job.append_metrics({"epoch": epoch, **report.metrics})
                    shown = epochs.samples(epoch)
                    save_samples(job, epoch, shown.images, shown.prompts, config.train.samples_to_save)
                    end_epoch(job, kept, epoch, total, config.train.checkpoint_every)
                acc.wait_for_everyone()
                if report.stop is not None:
                    log.info("early stop: %s", report.stop)
                    config.train.epochs = done
                    break
            return finish_training(models, config, job, method, stop)
        except TrainingCancelled:
            if main:
                mark_cancelled(job, kept, done, total)
            raise


def _snapshot(models: TrainingModels, epochs: Epochs) -> dict:
    """What a checkpoint holds (run.save_checkpoint): the LoRA, the optimizer and the method's own state."""
    return {
        "lora": lora_state(models),
        "optimizer": copy.deepcopy(models.optimizer.state_dict()),
        "state": epochs.snapshot(),
    }
