"""A job's claim: which process owns it, whatever number of ComfyUI instances share the jobs folder.

The claim is an OS file lock on `claim.lock` in the job's folder (`fcntl.flock` on POSIX, a locked
byte on Windows, through filelock). The process that starts a job holds it for the job's whole run,
until the job is settled and published; the OS releases it when that process dies, crash included,
so "the claim can be taken" means "no live process owns this job". Every change of a job's state
(start, settle, publish, cancel of a queued job, resume, delete) is made only while holding it; the
lock file is never removed while the job folder exists (a waiter must meet the same inode).
"""

from __future__ import annotations

import logging
from pathlib import Path

from filelock import FileLock, Timeout

from ..training.job_dir import CLAIM_FILE, status_file

__all__ = ["CLAIM_FILE", "Claim", "try_claim"]

log = logging.getLogger(__name__)


class Claim:
    """A held claim on one job; `release()` gives it back (idempotent)."""

    def __init__(self, lock: FileLock, job_path: Path):
        self._lock = lock
        self.job_path = job_path

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(job_path: str | Path) -> Claim | None:
    """The job's claim, taken now, or None when a live process (this one included) holds it, or when
    the job is gone (deleted meanwhile)."""
    job_path = Path(job_path)
    if not status_file(job_path).is_file():
        return None
    lock = FileLock(job_path / CLAIM_FILE, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    except OSError as exc:  # not writable, or gone
        log.debug("cannot claim job %s: %s", job_path.name, exc)
        return None
    if not status_file(job_path).is_file():  # deleted between the check and the lock, which made
        lock.release(force=True)  # the folder again (filelock creates missing parents): remove that
        (job_path / CLAIM_FILE).unlink(missing_ok=True)
        try:
            job_path.rmdir()
        except OSError:
            pass
        return None
    return Claim(lock, job_path)
