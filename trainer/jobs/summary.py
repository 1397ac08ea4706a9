"""What a watcher sees of a job: its state, progress, ETA, metrics and samples, JSON-safe.

Everything here is read from the job directory, so a page that reloads, or a host that
restarts, rebuilds the same view. Values that are not finite numbers become null.
"""

from __future__ import annotations

import json
import time

from ..files import finite
from ..training.job_dir import JobDir

__all__ = ["eta_seconds", "job_detail", "job_summary"]

_FIELDS = (
    "epoch",
    "total",
    "message",
    "created_at",
    "updated_at",
    "lora_name",
    "lora_file",
    "method",
    "checkpoint",
    "kind",
    "evaluated_lora",
    "evaluation_job",
    "source_job",
)


def eta_seconds(metrics: list[dict], epoch: int, total: int) -> float | None:
    """Seconds left, from the mean of the last three epochs' durations; None before the first epoch."""
    times = [m["epoch_seconds"] for m in metrics[-3:] if isinstance(m.get("epoch_seconds"), (int, float))]
    if not times or total <= epoch:
        return None if not times else 0.0
    return sum(times) / len(times) * (total - epoch)


def job_summary(job_id: str, job: JobDir, metrics: list[dict] | None = None) -> dict:
    status = job.read_status()
    metrics = job.read_metrics() if metrics is None else metrics
    state = status.get("state", "failed")
    epoch, total = int(status.get("epoch") or 0), int(status.get("total") or 0)
    summary = {
        "id": job_id,
        **{k: status.get(k) for k in _FIELDS},
        "state": state,
        "message": status.get("message", ""),
    }
    summary |= {
        "epoch": epoch,
        "total": total,
        "eta_s": _eta(status, metrics, epoch, total) if state == "running" else None,
        "latest": metrics[-1] if metrics else None,
        "resumable": state in ("cancelled", "failed"),
        "publishable": state == "failed" and bool(status.get("publish_failed")),
        "has_checkpoint": job.latest_checkpoint() is not None,
        "checkpoint_epochs": [int(p.name.split("-")[-1]) for p in job.checkpoints()],  # the LoRAs one can export
    }
    return finite(summary)


def _eta(status: dict, metrics: list[dict], done: int, total: int) -> float | None:
    """Training: from the last epochs' durations. Evaluation (progress in images): from the time per image so far."""
    if status.get("kind") != "evaluate":
        return eta_seconds(metrics, done, total)
    started = status.get("progress_started_at")
    if not done or not isinstance(started, (int, float)) or total <= done:
        return None
    return (time.time() - started) / done * (total - done)


def _evaluation(job: JobDir) -> dict | None:
    """An evaluation job's before/after table (compare.json) once written, and whether its grid is there."""
    try:
        table = json.loads(job.compare_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {"table": table, "grid": job.pair_grid_path.is_file()}


def job_detail(job_id: str, job: JobDir, log_lines: int = 20) -> dict:
    """The summary plus every epoch's metrics, the latest epoch's samples, the log's tail and, for an
    evaluation job, its before/after table."""
    metrics = job.read_metrics()
    samples = job.samples()
    last = samples[-1]["epoch"] if samples else None
    log_tail = job.log_tail(log_lines)
    return finite(
        job_summary(job_id, job, metrics)
        | {"metrics": metrics, "samples": [s for s in samples if s["epoch"] == last], "log_tail": log_tail}
        | {"evaluation": _evaluation(job)}
    )
