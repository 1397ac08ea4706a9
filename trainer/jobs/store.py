"""The read side of the jobs folder: which jobs there are, a page of the list, one job's summary and
detail, its sample images. It changes nothing (the queue does: `queue.py`), so a page, a route or a
second instance may read through it at any time. Ids are checked against the folder's own listing
and the id pattern: no id or sample name reaches a file outside the jobs folder.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from ..training.job_dir import SAMPLE_NAME, JobDir
from .index import JOB_ID, JobIndex
from .summary import job_detail, job_summary

__all__ = ["JOB_ID", "PAGE_SIZE", "JobError", "JobStore", "NoSuchJob", "job_of_request", "reserved_names"]

PAGE_SIZE = 50  # jobs per page of the list, newest first
HOLDS_ITS_NAME = ("queued", "running", "publishing", "cancelled", "failed")  # its LoRA name, until published


class JobError(ValueError):
    """The request does not fit the job's state (e.g. cancelling a finished job)."""


class NoSuchJob(JobError):  # noqa: N818 - reads as the condition it reports
    """The id names no job in the jobs folder."""


class JobStore:
    def __init__(self, root: str | Path, index: JobIndex | None = None):
        self.root = Path(root)
        self.index = index if index is not None else JobIndex(self.root)

    def job(self, job_id: str) -> JobDir:
        """The job's folder; the id must have the id pattern (no separators) and name a job."""
        if not self.index.exists(job_id):
            raise NoSuchJob(f"no job {job_id!r}")
        return JobDir(self.root / job_id)

    def job_ids(self) -> list[str]:
        """Every job id, oldest first."""
        return self.index.ids()

    def page(self, limit: int = PAGE_SIZE, before: str | None = None) -> dict:
        """Up to `limit` jobs, newest first, older than the job `before` (a cursor from an earlier page):
        {"jobs": [...], "total": every job, "next": the cursor for the next page, or None}."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        names = self.index.names()
        older = names[: bisect.bisect_left(names, before)] if before is not None else names
        jobs, i = [], len(older) - 1
        while i >= 0 and len(jobs) < limit:
            try:
                jobs.append(self.summary(older[i]))
            except NoSuchJob:
                pass  # not a job (a submit still writing it) or deleted meanwhile
            i -= 1
        return {"jobs": jobs, "total": len(names), "next": older[i + 1] if i >= 0 else None}

    def summaries(self) -> list[dict]:
        """Every job, newest first (the list route pages through `page` instead)."""
        return self.page(limit=max(1, len(self.index.ids())))["jobs"]

    def summary(self, job_id: str) -> dict:
        return job_summary(job_id, self.job(job_id))

    def detail(self, job_id: str) -> dict:
        """The job's detail; a training job evaluated after it finished also carries that evaluation's table."""
        detail = job_detail(job_id, self.job(job_id))
        linked = detail.get("evaluation_job")
        if linked and detail.get("evaluation") is None and self.index.exists(linked):
            detail["evaluation"] = job_detail(linked, self.job(linked))["evaluation"]
        return detail

    def sample_path(self, job_id: str, name: str) -> Path:
        """A sample image of the job; only names of the trainer's own pattern are served."""
        job = self.job(job_id)
        path = job.samples_dir / name
        if not SAMPLE_NAME.match(name) or not path.is_file():
            raise NoSuchJob(f"job {job_id} has no sample {name!r}")
        return path

    def pair_grid_path(self, job_id: str) -> Path:
        """An evaluation job's before/after grid (the one file of its results served as an image)."""
        path = self.job(job_id).pair_grid_path
        if not path.is_file():
            raise NoSuchJob(f"job {job_id} has no before/after grid (yet)")
        return path


def reserved_names(statuses: list[tuple[str, dict]]) -> set[str]:
    """The LoRA names that jobs not yet published hold (a cancelled or failed job may still resume)."""
    return {
        status.get("lora_name")
        for _, status in statuses
        if status.get("state") in HOLDS_ITS_NAME and not status.get("lora_file")
    }


def job_of_request(statuses: list[tuple[str, dict]], request: str, lora_name: str, loras_dir: Path) -> str | None:
    """The job that the same request made, while it still holds its name or its published LoRA is still
    in `loras_dir`; None otherwise."""
    for job_id, status in statuses:
        if status.get("request") != request or status.get("lora_name") != lora_name:
            continue
        lora_file = status.get("lora_file")
        if (lora_file and (loras_dir / lora_file).exists()) or (
            not lora_file and status.get("state") in HOLDS_ITS_NAME
        ):
            return job_id
    return None
