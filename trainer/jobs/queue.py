"""The job queue: training jobs run one at a time, as child processes, in the order they came.

The queue holds no state of its own but the job directories under its root: the job list,
each job's state and its place in line are read from `status.json`, so they survive a page
reload and a restart of the host process. A worker thread starts the oldest queued job,
watches its files, reports changes through `on_event`, and, when the process ends, settles
the job: "done" (the LoRA is then copied into the LoRA folder under a name nothing else
holds), "cancelled" or "failed" with the trainer's last error lines.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_copy_new, atomic_write_text
from ..training.config import RLConfig, to_toml
from ..training.job_dir import JobDir
from .process import OUTPUT_NAME, TrainerProcess, kill_process, pid_alive, why_it_ended
from .summary import job_detail, job_summary

__all__ = ["JobError", "JobManager", "NoSuchJob"]

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
SAMPLE_NAME = re.compile(r"^epoch-\d{4,}-\d{2}\.png$")
UNFINISHED = ("queued", "running")


class JobError(ValueError):
    """The request does not fit the job's state (e.g. cancelling a finished job)."""


class NoSuchJob(JobError):  # noqa: N818 - reads as the condition it reports
    """The id names no job in the jobs folder."""


@dataclass
class _Running:
    job_id: str
    process: TrainerProcess | None  # None: adopted after a restart, watched by pid and start time
    pid: int
    started: float | None = None  # the trainer's start time: with the pid, it names one process
    cancel_at: float | None = None  # when the stop was asked for
    seen: tuple = ()


class JobManager:
    def __init__(
        self,
        jobs_root: str | Path,
        loras_dir: str | Path,
        *,
        on_event: Callable[[str, dict], None] | None = None,
        before_start: Callable[[], None] | None = None,
        poll_seconds: float = 0.5,
        cancel_grace_seconds: float = 8.0,
    ):
        self.root = Path(jobs_root)
        self.loras_dir = Path(loras_dir)
        self.on_event = on_event or (lambda kind, data: None)
        self.before_start = before_start or (lambda: None)
        self.poll_seconds = poll_seconds
        self.cancel_grace = cancel_grace_seconds
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._running: _Running | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> JobManager:
        """Recover what a previous run left (see `_recover`), then start the worker thread."""
        with self._lock:
            if self._thread is None:
                self.root.mkdir(parents=True, exist_ok=True)
                self._recover()
                self._thread = threading.Thread(target=self._work, name="shielddiff-jobs", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker thread (a running trainer is cancelled, so it checkpoints)."""
        running = self._running
        if running is not None:
            try:
                self.cancel(running.job_id)
            except JobError:
                pass  # it has just finished
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cancel_grace + 10)

    # -- requests -------------------------------------------------------------------------
    def submit(
        self, config: RLConfig, lora_name: str, *, method_label: str = "ShieldDiff RL", once: bool = False
    ) -> dict:
        """Queue a job that will write `<lora_name>.safetensors` into the LoRA folder; returns its summary.

        once: the same request again (same settings, method and LoRA name) returns the job it made
        (its current summary, with "repeat": True) while that job still owns the name or its LoRA,
        instead of a second job or an error: a workflow queued twice trains once.
        """
        request = hashlib.sha256(f"{to_toml(config)}\n{method_label}\n{lora_name}".encode()).hexdigest()[:16]
        with self._lock:
            if once and (same := self._job_of_request(request, lora_name)) is not None:
                return dict(self.summary(same), repeat=True)
            taken = self._reserved_names()
            if (self.loras_dir / f"{lora_name}.safetensors").exists() or lora_name in taken:
                raise JobError(
                    f"a LoRA named {lora_name!r} already exists in {self.loras_dir} or is the output of a queued, "
                    "running, cancelled or failed job (which can still resume): choose another output name"
                )
            job_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
            job = JobDir(self.root / job_id)
            config.output.lora_path = str(job.path / "lora.safetensors")
            atomic_write_text(job.path / "config.toml", to_toml(config))
            job.write_status(
                "queued",
                pid=None,
                epoch=0,
                total=config.train.epochs,
                message="waiting for the GPU",
                created_at=time.time(),
                lora_name=lora_name,
                method=method_label,
                checkpoint=Path(config.model.checkpoint).name,
                resume=False,
                request=request,
            )
        log.info("queued job %s -> %s.safetensors", job_id, lora_name)
        self._changed(job_id)
        self._wake.set()
        return self.summary(job_id)

    def cancel(self, job_id: str) -> dict:
        job = self._job(job_id)
        with self._lock:
            if self._running is not None:
                self._watch()  # settle a trainer that has just exited, so its state is final
            state = job.read_status().get("state")
            running = self._running
            if running is not None and running.job_id == job_id and state == "running":
                if running.cancel_at is None:
                    running.cancel_at = time.monotonic()
                    job.request_cancel()  # every OS: the trainer reads it at its safe points
                    if running.process is not None:
                        running.process.terminate()  # POSIX: SIGTERM too (reaches `accelerate launch`)
                    job.write_status(
                        "running",
                        pid=running.pid,
                        pid_started=running.started,
                        message="cancelling: saving a checkpoint",
                    )
            elif state == "queued":
                job.write_status("cancelled", pid=None, message="cancelled before it started")
            else:
                raise JobError(f"job {job_id} is {state}: only a queued or running job can be cancelled")
        self._changed(job_id)
        self._wake.set()
        return self.summary(job_id)

    def resume(self, job_id: str) -> dict:
        job = self._job(job_id)
        with self._lock:
            if self._running is not None:
                self._watch()
            status = job.read_status()
            if self._running is not None and self._running.job_id == job_id:
                raise JobError(f"job {job_id} is still stopping: resume it once it is cancelled")
            if status.get("state") not in ("cancelled", "failed"):
                raise JobError(f"job {job_id} is {status.get('state')}: only a cancelled or failed job can resume")
            done = int(status.get("epoch") or 0) if job.latest_checkpoint() else 0
            job.write_status(
                "queued", pid=None, resume=True, queued_at=time.time(), message=f"queued to resume after epoch {done}"
            )
        self._changed(job_id)
        self._wake.set()
        return self.summary(job_id)

    # -- reading ----------------------------------------------------------------------------
    def job_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        ids = [p.name for p in self.root.iterdir() if JOB_ID.match(p.name) and (p / "status.json").is_file()]
        return sorted(ids)

    def summaries(self) -> list[dict]:
        found = [self.summary(i) for i in self.job_ids()]
        return sorted(found, key=lambda j: (j.get("created_at") or 0, j["id"]), reverse=True)  # newest first

    def summary(self, job_id: str) -> dict:
        return job_summary(job_id, self._job(job_id))

    def detail(self, job_id: str) -> dict:
        return job_detail(job_id, self._job(job_id))

    def sample_path(self, job_id: str, name: str) -> Path:
        """A sample image of the job; only names of the trainer's own pattern are served."""
        job = self._job(job_id)
        path = job.path / "samples" / name
        if not SAMPLE_NAME.match(name) or not path.is_file():
            raise NoSuchJob(f"job {job_id} has no sample {name!r}")
        return path

    def _job(self, job_id: str) -> JobDir:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id) or job_id not in self.job_ids():
            raise NoSuchJob(f"no job {job_id!r}")
        return JobDir(self.root / job_id)

    def _reserved_names(self) -> set[str]:
        names = set()
        for job_id in self.job_ids():
            status = JobDir(self.root / job_id).read_status()
            if status.get("state") in (*UNFINISHED, "cancelled", "failed") and not status.get("lora_file"):
                names.add(status.get("lora_name"))
        return names

    def _job_of_request(self, request: str, lora_name: str) -> str | None:
        for job_id in self.job_ids():
            status = JobDir(self.root / job_id).read_status()
            if status.get("request") != request or status.get("lora_name") != lora_name:
                continue
            lora_file = status.get("lora_file")
            if (lora_file and (self.loras_dir / lora_file).exists()) or (
                not lora_file and status.get("state") in (*UNFINISHED, "cancelled", "failed")
            ):
                return job_id
        return None

    # -- the worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._lock:
                    if self._running is None:
                        self._start_next()
                    else:
                        self._watch()
            except Exception:  # the worker must outlive any one job's trouble
                log.exception("job queue: unexpected error")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _start_next(self) -> None:
        queued = []
        for job_id in self.job_ids():
            status = JobDir(self.root / job_id).read_status()
            if status.get("state") == "queued":
                queued.append((status.get("queued_at") or status.get("created_at") or 0, job_id))
        if not queued:
            return
        _, job_id = min(queued)
        job = JobDir(self.root / job_id)
        resume = bool(job.read_status().get("resume"))
        try:
            self.before_start()
        except Exception:
            log.exception("could not ask the host to free its models before job %s", job_id)
        job.clear_cancel_request()  # one left from an earlier run of this job must not stop this one
        try:
            process = TrainerProcess(job.path, resume=resume)
        except OSError as exc:
            job.write_status("failed", pid=None, message=f"the trainer could not start: {exc}")
            self._changed(job_id)
            return
        job.write_status(
            "running",
            pid=process.pid,
            pid_started=process.started,
            message="starting the trainer",
            started_at=time.time(),
        )
        self._running = _Running(job_id, process, process.pid, process.started)
        self._changed(job_id)

    def _watch(self) -> None:
        running = self._running
        job = JobDir(self.root / running.job_id)
        code = running.process.poll() if running.process else None
        exited = code is not None if running.process else not pid_alive(running.pid, running.started, job.path)
        if not exited:
            if running.cancel_at is not None and time.monotonic() - running.cancel_at > self.cancel_grace:
                log.warning(
                    "job %s did not stop within %.0f s of the cancel request: killing it",
                    running.job_id,
                    self.cancel_grace,
                )
                self._kill(running, job)
            seen = (job.read_status().get("epoch"), job.read_status().get("message"), len(job.read_metrics()))
            if seen != running.seen:
                running.seen = seen
                self._changed(running.job_id, kind="progress")
            return
        self._running = None
        self._settle(running, job, code)

    def _settle(self, running: _Running, job: JobDir, code: int | None) -> None:
        job.clear_cancel_request()
        status = job.read_status()
        state = status.get("state")
        if running.cancel_at is None and state == "done" and code in (0, None):
            self._publish(running.job_id, job)
        elif running.cancel_at is not None or state == "cancelled":  # an accepted cancel publishes nothing
            epochs = int(status.get("epoch") or 0) if job.latest_checkpoint() else 0
            job.write_status(
                "cancelled",
                pid=None,
                message=f"cancelled; resume continues after epoch {epochs}" if epochs else "cancelled before epoch 1",
            )
        else:
            reason = why_it_ended(code, job.path / OUTPUT_NAME)
            job.write_status("failed", pid=None, message=reason)
            log.error("job %s failed: %s", running.job_id, reason)
        self._changed(running.job_id)

    def _publish(self, job_id: str, job: JobDir) -> None:
        """Copy the finished LoRA into the LoRA folder under its name, or the next free `name-N`. When the
        folder cannot take it (read-only, full), the job fails with the cause and keeps its LoRA for `publish`."""
        status = job.read_status()
        source = job.path / "lora.safetensors"
        stem = status.get("lora_name") or job_id
        try:
            self.loras_dir.mkdir(parents=True, exist_ok=True)
            for n in range(1, 1000):
                name = f"{stem}.safetensors" if n == 1 else f"{stem}-{n}.safetensors"
                try:
                    atomic_copy_new(source, self.loras_dir / name)
                    break
                except FileExistsError:
                    continue
            else:
                job.write_status("failed", pid=None, message=f"no free name for {stem} in {self.loras_dir}")
                return
        except OSError as exc:
            message = (
                f"the LoRA could not be copied into {self.loras_dir}: {exc.strerror or exc}. It is kept in the job "
                f"folder ({source}); make room or make the folder writable, then Publish again."
            )
            job.write_status("failed", pid=None, message=message, publish_failed=True)
            log.error("job %s: %s", job_id, message)
            return
        note = "" if n == 1 else f" ({stem}.safetensors appeared meanwhile; not overwritten)"
        job.write_status(
            "done",
            pid=None,
            lora_file=name,
            publish_failed=False,
            message=f"saved loras/{name}{note}",
            finished_at=time.time(),
        )
        log.info("job %s done: %s", job_id, self.loras_dir / name)

    def publish(self, job_id: str) -> dict:
        """Copy a finished job's LoRA into the LoRA folder again, after that copy failed."""
        job = self._job(job_id)
        with self._lock:
            status = job.read_status()
            if not (status.get("state") == "failed" and status.get("publish_failed")):
                raise JobError(
                    f"job {job_id} is {status.get('state')}: only a job whose LoRA could not be copied into the "
                    "loras folder can be published again"
                )
            if not (job.path / "lora.safetensors").is_file():
                raise JobError(f"job {job_id} has no LoRA in its folder any more: resume it to write it again")
            self._publish(job_id, job)
        self._changed(job_id)
        return self.summary(job_id)

    def _recover(self) -> None:
        """After a restart: adopt a trainer still alive, settle jobs whose trainer is gone."""
        for job_id in self.job_ids():
            job = JobDir(self.root / job_id)
            status = job.read_status()
            if (
                status.get("state") == "done"
                and not status.get("lora_file")
                and (job.path / "lora.safetensors").exists()
            ):
                self._publish(job_id, job)
            elif status.get("state") == "running":
                pid, started = status.get("pid"), status.get("pid_started")
                if self._running is None and pid_alive(pid, started, job.path):  # the same process, not its pid reused
                    self._running = _Running(job_id, None, int(pid), started)
                    log.info("job %s: watching trainer pid %s, still running from before", job_id, status["pid"])
                else:
                    self._settle(_Running(job_id, None, 0), job, None)

    @staticmethod
    def _kill(running: _Running, job: JobDir) -> None:
        if running.process is not None:
            running.process.kill()
        else:
            kill_process(running.pid, running.started, job.path)

    def _changed(self, job_id: str, kind: str = "state") -> None:
        try:
            self.on_event(f"shielddiff.{kind}", self.summary(job_id))
        except Exception:
            log.exception("job event for %s could not be sent", job_id)
