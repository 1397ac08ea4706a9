"""What a finished job leads to: its evaluation, an earlier epoch's LoRA, more epochs (JobManager's part).

`JobManager` (queue.py) inherits these requests; they use its lock, claims, index and events:
- `submit_evaluation`: an evaluation job (the Evaluate LoRA node), measuring a LoRA before and after;
- `evaluate_trained`: that evaluation for a finished training job's LoRA, once (after_training.py);
- `export`: the LoRA of a kept checkpoint, published as `<name>-epoch<N>` (export.py);
- `extend`: a finished training job queued again to train more epochs from its last checkpoint.
"""

from __future__ import annotations

import logging
import time

from ..files import atomic_write_text
from ..training.config import to_toml
from ..training.job_dir import JobDir
from .export import export_checkpoint
from .store import JobError

__all__ = ["EVALUATE", "FinishedJobRequests"]

log = logging.getLogger(__name__)

EVALUATE = "evaluate"  # the `kind` of a job that measures a LoRA (it publishes nothing)


class FinishedJobRequests:
    def submit_evaluation(
        self, settings: dict, *, checkpoint: str, lora: str, prompts: list[str] | None = None, source: str | None = None
    ) -> dict:
        """Queue an evaluation job: `settings` (the fields of evaluation.run.EvalSettings but `out`) are run by
        `python -m trainer eval --job-dir` without and with the LoRA, on the same prompts and seeds.
        `prompts`: typed prompts, written into the job's folder as its prompt file."""
        import json

        with self._lock:
            job_id = self._new_id()
            job = JobDir(self.root / job_id)
            if prompts:
                atomic_write_text(job.prompts_path, "".join(p + "\n" for p in prompts))
                settings = settings | {"prompts": str(job.prompts_path)}
            atomic_write_text(job.evaluation_path, json.dumps(settings, indent=1, allow_nan=False))
            self._index.mark(job_id)
            job.write_status(
                "queued",
                pid=None,
                kind=EVALUATE,
                epoch=0,
                total=0,
                message="waiting for the GPU",
                created_at=time.time(),
                method="Evaluate LoRA",
                checkpoint=checkpoint,
                evaluated_lora=lora,
                source_job=source,  # the training job whose LoRA this measures (None: the Evaluate LoRA node)
                resume=False,
            )
        log.info("queued evaluation job %s of %s", job_id, lora)
        self._changed(job_id)
        self._wake.set()
        return self.summary(job_id)

    def export(self, job_id: str, epoch: int) -> dict:
        """Publish the LoRA of a checkpoint the job kept (after `epoch` epochs) as `<name>-epoch<N>`."""
        job = self._job(job_id)
        status = job.read_status()
        if status.get("kind") == EVALUATE:
            raise JobError(f"job {job_id} is an evaluation: it has no LoRA to export")
        name = export_checkpoint(job, epoch, self.loras_dir, status.get("lora_name") or job_id)
        log.info("job %s: exported the LoRA of epoch %d as %s", job_id, epoch, name)
        self._changed(job_id)
        return self.summary(job_id) | {"exported": name}

    def extend(self, job_id: str, epochs: int) -> dict:
        """Queue a finished training job to train `epochs` more from its last checkpoint; its LoRA stays, and the
        longer run publishes a new one under the next free name."""
        from ..training.config import load_config

        if not 1 <= epochs <= 10_000:
            raise JobError(f"epochs = {epochs} is out of range: extend by 1 to 10000 epochs")
        job = self._job(job_id)
        with self._lock, self._claim(job) as claim:
            if claim is None:
                raise JobError(f"job {job_id} is owned by another process: extend it once that one is done")
            status = job.read_status()
            if status.get("state") != "done" or status.get("kind") == EVALUATE:
                raise JobError(f"job {job_id} is {status.get('state')}: only a finished training job can be extended")
            latest = job.latest_checkpoint()
            if latest is None:
                raise JobError(f"job {job_id} kept no checkpoint to continue from")
            config = load_config(job.config_path)
            done = int(latest.name.split("-")[-1])
            config.train.epochs = done + epochs
            atomic_write_text(job.config_path, to_toml(config))
            self._index.mark(job_id)
            job.write_status(
                "queued",
                pid=None,
                resume=True,
                lora_file=None,
                extended_from=status.get("lora_file"),
                evaluation_job=None,  # the longer run gets its own
                total=config.train.epochs,
                queued_at=time.time(),
                message=f"queued to continue from epoch {done} to {config.train.epochs}",
            )
        log.info("job %s extended to %d epochs", job_id, config.train.epochs)
        self._changed(job_id)
        self._wake.set()
        return self.summary(job_id)

    def evaluate_trained(self, job_id: str) -> dict:
        """Queue the before/after evaluation of a finished training job's LoRA (after_training.py), once: asked
        again, it returns the summary of the evaluation job it made."""
        from ..training.config import load_config
        from .after_training import evaluation_settings

        job = self._job(job_id)
        with self._lock:
            status = job.read_status()
            linked = status.get("evaluation_job")
            if linked and (self.root / linked).is_dir():
                return self.summary(linked)
            if status.get("state") != "done" or status.get("kind") == EVALUATE or not status.get("lora_file"):
                raise JobError(f"job {job_id} is {status.get('state')}: only a finished training job can be evaluated")
            lora = self.loras_dir / status["lora_file"]
            if not lora.is_file():
                raise JobError(f"the LoRA of job {job_id} ({lora.name}) is no longer in {self.loras_dir}")
            settings, prompts = evaluation_settings(load_config(job.config_path), lora)
            if not prompts:
                raise JobError(f"job {job_id} has no prompts of its own to evaluate on: use the Evaluate LoRA node")
            evaluation = self.submit_evaluation(
                settings, checkpoint=status.get("checkpoint") or "", lora=lora.name, prompts=prompts, source=job_id
            )
            job.write_status("done", pid=None, evaluation_job=evaluation["id"])
        self._changed(job_id)
        return evaluation
