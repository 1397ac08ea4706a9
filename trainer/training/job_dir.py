"""The job directory: the contract between a training process and whoever watches it.

Every name of a job folder is spelled here and nowhere else (a test keeps it so):

    config.toml         the resolved configuration
    status.json         state, pid and pid_started (the writer's process and its start time: together they
                        name one process, as a pid alone may be reused after a crash), epoch, total,
                        message, updated_at; see "States" below for who writes which state
    cancel-request      present while a cancel is asked for: the trainer stops at its next safe point
                        (the same points as SIGTERM), on every OS
    metrics.jsonl       one JSON line per epoch
    samples/            a few images per epoch, `epoch-NNNN-II.png` (epoch, then the image's index)
    checkpoints/        epoch-NNNNNN/ folders (lora.safetensors, optimizer.pt, trainer_state.pt), each
                        complete or absent (written aside in a `.incoming-*` folder, then renamed)
    log.txt             the trainer's log
    lora.safetensors    the trained LoRA (unless the configuration names another output path)
    trainer-output.txt  the trainer process's own stdout and stderr, when a job queue started it
    claim.lock          the lock file of the job's claim (which process owns a queued job)
    evaluation.json     an evaluation job's settings (a job that measures a LoRA instead of training one;
                        it has no config.toml): `python -m trainer eval --job-dir` runs it
    evaluation/         what it writes: base/ and lora/ (each a full evaluation), compare.json and
                        compare.md (before and after side by side), before_after.png
    export-epoch-N.safetensors  a checkpoint's LoRA while it is exported (then published and removed)
    prompts.txt         an evaluation job's typed prompts (when it has no prompt file of the user's)
Every file is written atomically (a temporary file in the same folder, then a rename).

States: a job queue writes "queued", "running" when it starts the trainer, and the job's end:
"done" once the LoRA is published (`lora_file` names it), "failed" or "cancelled". The trainer
writes "running" with its progress and its own outcome: "cancelled" when it stopped at a safe
point, and when its LoRA is written, "publishing" if the job is one that its owner publishes (the
queue wrote a `lora_name`: the LoRA is not in the LoRA folder yet) or "done" when it runs alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..evaluation.names import COMPARE_FILE, PAIR_GRID_FILE
from ..files import atomic_write_text, finite

__all__ = [
    "CANCEL_FILE",
    "CHECKPOINT_LORA",
    "CHECKPOINT_OPTIMIZER",
    "CHECKPOINT_STATE",
    "CLAIM_FILE",
    "COMPARE_FILE",
    "CONFIG_FILE",
    "EVALUATION_FILE",
    "LORA_FILE",
    "OUTPUT_FILE",
    "PAIR_GRID_FILE",
    "SAMPLE_NAME",
    "STATES",
    "STATUS_FILE",
    "JobDir",
    "own_start",
    "process_started",
    "sample_name",
    "status_file",
]

STATES = ("queued", "running", "publishing", "done", "failed", "cancelled")

CONFIG_FILE = "config.toml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
LORA_FILE = "lora.safetensors"
OUTPUT_FILE = "trainer-output.txt"
CANCEL_FILE = "cancel-request"
CLAIM_FILE = "claim.lock"
SAMPLES_DIR = "samples"
EVALUATION_FILE = "evaluation.json"
EVALUATION_DIR = "evaluation"
EXPORT_PREFIX = "export-epoch-"  # export-epoch-NNNNNN.safetensors: a checkpoint's LoRA on its way out
PROMPTS_FILE = "prompts.txt"  # an evaluation job's typed prompts
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "epoch-"  # checkpoints/epoch-NNNNNN/
CHECKPOINT_STAGING_PREFIX = ".incoming-"
CHECKPOINT_LORA = LORA_FILE
CHECKPOINT_OPTIMIZER = "optimizer.pt"
CHECKPOINT_STATE = "trainer_state.pt"
SAMPLE_NAME = re.compile(r"^epoch-(\d{4,})-(\d{2})\.png$")  # groups: the epoch, the image's index
SAMPLE_GLOB = "epoch-*.png"


def sample_name(epoch: int, index: int) -> str:
    """The file name of sample `index` of epoch `epoch` (matches SAMPLE_NAME)."""
    return f"epoch-{epoch:04d}-{index:02d}.png"


def status_file(job_path: str | Path) -> Path:
    """The status file of the job folder `job_path`, without creating anything (a folder is a job once
    this file exists)."""
    return Path(job_path) / STATUS_FILE


def process_started(pid: int | None) -> float | None:
    """The start time of process `pid` (seconds since the epoch, as psutil reads it), None if there is none."""
    if not pid:
        return None
    import psutil

    try:
        return psutil.Process(int(pid)).create_time()
    except (psutil.Error, ValueError, OverflowError):
        return None


class JobDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        for sub in (SAMPLES_DIR, CHECKPOINTS_DIR):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    # -- the folder's files -----------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def lora_path(self) -> Path:
        """Where the trainer writes the LoRA when the configuration names no other path."""
        return self.path / LORA_FILE

    @property
    def output_path(self) -> Path:
        return self.path / OUTPUT_FILE

    @property
    def evaluation_path(self) -> Path:
        """An evaluation job's settings; a job that has this file measures a LoRA instead of training one."""
        return self.path / EVALUATION_FILE

    @property
    def prompts_path(self) -> Path:
        return self.path / PROMPTS_FILE

    @property
    def evaluation_dir(self) -> Path:
        return self.path / EVALUATION_DIR

    @property
    def compare_path(self) -> Path:
        return self.evaluation_dir / COMPARE_FILE

    @property
    def pair_grid_path(self) -> Path:
        return self.evaluation_dir / PAIR_GRID_FILE

    @property
    def samples_dir(self) -> Path:
        return self.path / SAMPLES_DIR

    def sample_path(self, epoch: int, index: int) -> Path:
        return self.samples_dir / sample_name(epoch, index)

    def samples(self) -> list[dict]:
        """Every sample image: {"name", "epoch", "index"}, by epoch, then index."""
        found = []
        for path in self.samples_dir.glob(SAMPLE_GLOB):
            match = SAMPLE_NAME.match(path.name)
            if match:
                found.append({"name": path.name, "epoch": int(match.group(1)), "index": int(match.group(2))})
        return sorted(found, key=lambda s: (s["epoch"], s["index"]))

    def log_tail(self, lines: int) -> list[str]:
        """The last `lines` lines of the trainer's log (none when there is no log yet)."""
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    # -- status and metrics ---------------------------------------------------------
    def write_status(self, state: str, **fields: Any) -> dict:
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        if "pid" not in fields:
            fields = {"pid": os.getpid(), "pid_started": own_start(), **fields}
        elif "pid_started" not in fields:
            fields = {**fields, "pid_started": process_started(fields["pid"])}
        status = self.read_status() | fields | {"state": state, "updated_at": time.time()}
        atomic_write_text(self.status_path, json.dumps(finite(status), allow_nan=False, indent=1))
        return status

    def write_trained(self, **fields: Any) -> dict:
        """The trainer's outcome once its LoRA is written: "publishing" when the job's owner publishes it
        (a job queue wrote the `lora_name` it goes under), else "done" (a trainer run on its own)."""
        return self.write_status("publishing" if self.read_status().get("lora_name") else "done", **fields)

    def read_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def append_metrics(self, metrics: dict) -> None:
        line = json.dumps(finite(metrics), allow_nan=False) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        try:
            lines = self.metrics_path.read_text().splitlines()
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
        atomic_write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in kept))

    # -- cancel requests -----------------------------------------------------------
    def request_cancel(self) -> None:
        """Ask the trainer to stop at its next safe point (it keeps the last complete epoch)."""
        atomic_write_text(self.path / CANCEL_FILE, f"{time.time()}\n")

    def cancel_requested(self, since: float | None = None) -> bool:
        """Whether a cancel is asked for; with `since`, only a request made at or after that time counts
        (a trainer ignores one left from before it started)."""
        try:
            made = (self.path / CANCEL_FILE).stat().st_mtime
        except OSError:
            return False
        return since is None or made >= since

    def clear_cancel_request(self) -> None:
        (self.path / CANCEL_FILE).unlink(missing_ok=True)

    # -- checkpoints ----------------------------------------------------------------
    def export_path(self, epochs_done: int) -> Path:
        """Where the LoRA of a checkpoint is written before it is published (then removed)."""
        return self.path / f"{EXPORT_PREFIX}{epochs_done:06d}.safetensors"

    def checkpoint_dir(self, epochs_done: int) -> Path:
        return self.path / CHECKPOINTS_DIR / f"{CHECKPOINT_PREFIX}{epochs_done:06d}"

    def begin_checkpoint(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=CHECKPOINT_STAGING_PREFIX, dir=self.path / CHECKPOINTS_DIR))

    def commit_checkpoint(self, staging: Path, epochs_done: int, keep: int = 2) -> Path:
        final = self.checkpoint_dir(epochs_done)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in self.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def checkpoints(self) -> list[Path]:
        return sorted(p for p in (self.path / CHECKPOINTS_DIR).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir())

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None


_OWN_START: dict[int, float | None] = {}  # by pid: a forked child is another process


def own_start() -> float | None:
    """This process's start time (see `process_started`)."""
    pid = os.getpid()
    if pid not in _OWN_START:
        _OWN_START[pid] = process_started(pid)
    return _OWN_START[pid]
