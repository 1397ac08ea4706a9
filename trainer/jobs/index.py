"""What keeps the job list cheap at 10,000 jobs: the jobs folder's listing, an index of unfinished jobs
shared by every instance, and a per-process cache of status files.

- The list of jobs is the folder's own listing (one `scandir`, names checked against `JOB_ID`). A name
  is a job once its `status.json` exists; that is checked once per name and remembered, since a job's
  status file only goes away with the whole folder (deleted jobs are renamed away first).
- `.active/` holds an empty marker file per job that is not finished for the queue: queued, running
  or publishing (or "done" without a published LoRA, as an older version left a job to publish). It is written before a job is queued and removed, by the claim's
  holder, once the job is settled; so the worker of every instance looks at these few jobs, not at all
  of them, to find the next queued one or one whose owner died. A marker whose job is finished or gone
  is dropped when met; `rebuild()` (at start) adds one for any unfinished job without one.
- Status reads for whole-folder questions (which LoRA names are taken, which job a request made) go
  through a cache keyed by the status file's inode, mtime and size: a submit reads only what changed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from ..training.job_dir import status_file

__all__ = ["ACTIVE_DIR", "JOB_ID", "TRASH_PREFIX", "JobIndex"]

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
ACTIVE_DIR = ".active"
TRASH_PREFIX = ".trash-"


def read_status_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


class JobIndex:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.active = self.root / ACTIVE_DIR
        self._known: set[str] = set()  # names whose status.json was seen
        self._cache: dict[str, tuple[tuple, dict]] = {}  # id -> ((inode, mtime_ns, size), status)

    # -- the list -------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every folder named like a job, oldest first (ids begin with their creation time), unchecked:
        one listing and no stat, for the list's pages (which skip a folder that turns out not to be a job)."""
        try:
            with os.scandir(self.root) as entries:
                return sorted(e.name for e in entries if JOB_ID.match(e.name))
        except OSError:
            return []

    def ids(self) -> list[str]:
        """Every job id, oldest first."""
        names = self.names()
        found = []
        for name in names:
            if name in self._known or status_file(self.root / name).is_file():
                found.append(name)
        self._known = set(found)
        return found

    def exists(self, job_id: str) -> bool:
        return isinstance(job_id, str) and bool(JOB_ID.match(job_id)) and status_file(self.root / job_id).is_file()

    # -- statuses through the cache ---------------------------------------------------------
    def status(self, job_id: str) -> dict:
        path = status_file(self.root / job_id)
        try:
            st = path.stat()
        except OSError:
            self._cache.pop(job_id, None)
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)  # a status write is a rename: a new inode
        cached = self._cache.get(job_id)
        if cached and cached[0] == key:
            return cached[1]
        status = read_status_file(path)
        self._cache[job_id] = (key, status)
        return status

    def statuses(self) -> list[tuple[str, dict]]:
        ids = self.ids()
        for gone in set(self._cache) - set(ids):
            self._cache.pop(gone, None)
        return [(job_id, self.status(job_id)) for job_id in ids]

    # -- unfinished jobs ---------------------------------------------------------------------
    def mark(self, job_id: str) -> None:
        self.active.mkdir(parents=True, exist_ok=True)
        (self.active / job_id).touch()

    def unmark(self, job_id: str) -> None:
        (self.active / job_id).unlink(missing_ok=True)

    def is_marked(self, job_id: str) -> bool:
        return (self.active / job_id).exists()

    def marked(self) -> list[str]:
        try:
            return sorted(p.name for p in self.active.iterdir() if JOB_ID.match(p.name))
        except OSError:
            return []

    def rebuild(self) -> None:
        """Mark every unfinished job that has no marker (jobs queued by an older version, or a crash
        between a status write and its marker); reads every status once."""
        marked = set(self.marked())
        for job_id, status in self.statuses():
            unfinished = status.get("state") in ("queued", "running", "publishing") or (
                status.get("state") == "done" and not status.get("lora_file")
            )
            if unfinished and job_id not in marked:
                self.mark(job_id)

    def trash(self) -> list[Path]:
        """Folders of deleted jobs that a crash left half removed."""
        try:
            return [p for p in self.root.iterdir() if p.name.startswith(TRASH_PREFIX)]
        except OSError:
            return []
