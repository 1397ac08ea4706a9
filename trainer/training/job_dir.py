"""The job directory: the contract between a training process and whoever watches it.

    config.toml      the resolved configuration
    status.json      state (queued|running|done|failed|cancelled), pid, epoch, total, message, updated_at
    metrics.jsonl    one JSON line per epoch
    samples/         a few images per epoch
    checkpoints/     epoch-NNNNNN/ folders, each complete or absent (written aside, then renamed)
    log.txt          the trainer's log
Every file is written atomically (a temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..files import atomic_write_text, finite

__all__ = ["STATES", "JobDir"]

STATES = ("queued", "running", "done", "failed", "cancelled")


class JobDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        for sub in ("samples", "checkpoints"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    # -- status and metrics ---------------------------------------------------------
    def write_status(self, state: str, **fields: Any) -> dict:
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        status = self.read_status() | {"pid": os.getpid()} | fields | {"state": state, "updated_at": time.time()}
        atomic_write_text(self.path / "status.json", json.dumps(finite(status), allow_nan=False, indent=1))
        return status

    def read_status(self) -> dict:
        try:
            return json.loads((self.path / "status.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def append_metrics(self, metrics: dict) -> None:
        line = json.dumps(finite(metrics), allow_nan=False) + "\n"
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        try:
            lines = (self.path / "metrics.jsonl").read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash ends the readable part
        return out

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the lines of the first `epochs` epochs (after a resume from an earlier checkpoint)."""
        kept = [m for m in self.read_metrics() if m.get("epoch", 0) < epochs]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in kept))

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint_dir(self, epochs_done: int) -> Path:
        return self.path / "checkpoints" / f"epoch-{epochs_done:06d}"

    def begin_checkpoint(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.path / "checkpoints"))

    def commit_checkpoint(self, staging: Path, epochs_done: int, keep: int = 2) -> Path:
        final = self.checkpoint_dir(epochs_done)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in self.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def checkpoints(self) -> list[Path]:
        return sorted(p for p in (self.path / "checkpoints").glob("epoch-*") if p.is_dir())

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None
