"""`python -m trainer eval --job-dir D`: an evaluation job of the job queue (the Evaluate LoRA node).

D/evaluation.json holds the evaluation's settings (the fields of EvalSettings but `out`); the run
measures the model without and with the LoRA on the same prompts and seeds (evaluation/before_after.py)
into D/evaluation/, writing its progress (images made of all) into D/status.json after every batch.
A cancel request or SIGTERM stops it after the current batch; every image made is kept, so a resume
of the job (the same command) makes only the missing ones. The process writes its own outcome:
"done" with the headline figures, "cancelled", or "failed" (exit code 1) with the reason.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..evaluation.before_after import before_after
from ..evaluation.errors import EvalError
from ..evaluation.run import EvalSettings
from ..training.job_dir import JobDir
from ..training.run import StopFlag, job_log

log = logging.getLogger(__name__)


class EvaluationCancelled(Exception):  # noqa: N818 - a signal, not an error
    """A stop was asked for; what was made is kept for a resume."""


def _headline(table: dict) -> str:
    """'nudity rate 50.0% -> 12.5%' from the comparison's first rate row."""
    for row in table.get("rows", []):
        if row.get("kind") == "rate" and row.get("metric", "").endswith(" rate"):
            before, after = row["values"][0], row["values"][1]
            if before is not None and after is not None:
                return f"{row['metric']} {100 * before:.1f}% -> {100 * after:.1f}%"
    return "evaluated"


def run_job(job_dir: str | Path) -> int:
    job = JobDir(job_dir)
    try:
        values = json.loads(job.evaluation_path.read_text())
        settings = EvalSettings(**values | {"out": str(job.evaluation_dir)})
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        job.write_status("failed", message=f"the evaluation settings in {job.evaluation_path} cannot be read: {exc}")
        return 1
    started = time.time()
    with job_log(job), StopFlag(job) as stop:
        job.write_status("running", epoch=0, message="loading the model", progress_started_at=started)

        def progress(done: int, total: int) -> None:
            job.write_status("running", epoch=done, total=total, message=f"{done} of {total} images")
            if stop.stop:
                raise EvaluationCancelled

        try:
            table = before_after(settings, progress=progress)
        except EvaluationCancelled:
            job.write_status("cancelled", message="cancelled; resume reuses the images already made")
            log.info("evaluation cancelled")
            return 0
        except (EvalError, OSError, ValueError) as exc:
            job.write_status("failed", message=str(exc))
            log.error("%s", exc)
            return 1
    status = job.read_status()
    job.write_status("done", epoch=status.get("total", 0), message=_headline(table), finished_at=time.time())
    log.info("evaluation done: %s", _headline(table))
    return 0
