"""The job queue: training jobs run as child processes, one at a time per instance, in the order they came.

The queue holds no state of its own but the job directories under its root: the job list,
each job's state and its place in line are read from `status.json`, so they survive a page
reload and a restart of the host process. A worker thread starts the oldest queued job,
watches its files, reports changes through `on_event`, and, when the process ends, settles
the job: "done" once the LoRA is copied into the LoRA folder under a name nothing else holds,
"cancelled" or "failed" with the trainer's last error lines.

Who writes a job's state (all in its `status.json`, see `training/job_dir.py`):

    queued      the queue (submit, resume)
    running     the queue when it starts the trainer; then the trainer, with its progress
    publishing  the trainer, once its LoRA is written in the job folder (its outcome: the job
                names a `lora_name`, so it is not done until published); the queue again
                while it copies the LoRA
    done        the queue only, once the LoRA is in the LoRA folder (`lora_file` names it)
    cancelled   the trainer when it stops at a safe point; the queue when it settles a job
                whose cancel it accepted, or cancels a queued one
    failed      the queue only: the trainer died, or the LoRA could not be published
                (`publish_failed`: Publish again copies it)

So every state the list shows is the job's own: nothing is rewritten on the way to the page.

Several instances may share one jobs folder (one ComfyUI per GPU from one install): each job is
claimed by exactly one process (`claim.py`, an OS file lock that dies with its holder), which
starts, watches, settles and publishes it. The others list it and may ask it to stop (the cancel
request file, which the owner and its trainer read); they take it over only once its owner is
gone. What keeps this cheap at 10,000 jobs (the `.active/` index of unfinished jobs, paging by id,
a status cache) is described in `index.py`. Job ids begin with their creation time (to the
millisecond), so id order is creation order.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_text
from ..training.config import RLConfig, to_toml
from ..training.job_dir import JobDir, status_file
from .claim import Claim, try_claim
from .finished import EVALUATE, FinishedJobRequests
from .index import JOB_ID, TRASH_PREFIX, JobIndex, read_status_file
from .process import AdoptedTrainer, TrainerProcess, pid_alive, why_it_ended
from .publish import NoFreeName, lora_file_name, publish_lora
from .store import PAGE_SIZE, JobError, JobStore, NoSuchJob, job_of_request, reserved_names

__all__ = ["JOB_ID", "PAGE_SIZE", "JobError", "JobManager", "NoSuchJob"]

log = logging.getLogger(__name__)

CANCELLABLE = ("queued", "running")
ORPHAN_CHECK_TICKS = 20  # while busy, look for jobs whose owner died every this many polls


@dataclass
class _Running:
    job_id: str
    process: TrainerProcess | AdoptedTrainer  # started here, or adopted after a restart: the same calls
    claim: Claim  # held for the job's whole run, released once it is settled
    claimed_at: float = 0.0  # a cancel request at or after this time is for this run
    cancel_at: float | None = None  # when the stop was asked for
    seen: tuple = ()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def started(self) -> float | None:
        """The trainer's start time: with the pid, it names one process."""
        return self.process.started


def _settled(status: dict) -> bool:
    """Nothing is left for the queue to do (a "done" training job is settled once its LoRA is published)."""
    state = status.get("state")
    done = state == "done" and (bool(status.get("lora_file")) or status.get("kind") == EVALUATE)
    return state in ("failed", "cancelled") or done


def _to_publish(status: dict) -> bool:
    """The trainer wrote the LoRA and it waits to be published ("done" without a LoRA file is how an
    older version's trainer left such a job)."""
    state = status.get("state")
    return state == "publishing" or (state == "done" and not status.get("lora_file") and status.get("kind") != EVALUATE)


class JobManager(FinishedJobRequests):
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
        self._index = JobIndex(self.root)
        self.store = JobStore(self.root, self._index)  # the read side: list, pages, summaries, samples
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._running: _Running | None = None
        self._thread: threading.Thread | None = None
        self._last_id = ""

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
            statuses = self._index.statuses()
            if once and (same := job_of_request(statuses, request, lora_name, self.loras_dir)) is not None:
                return dict(self.summary(same), repeat=True)
            taken = reserved_names(statuses)
            if (self.loras_dir / lora_file_name(lora_name)).exists() or lora_name in taken:
                raise JobError(
                    f"a LoRA named {lora_name!r} already exists in {self.loras_dir} or is the output of a queued, "
                    "running, cancelled or failed job (which can still resume): choose another output name"
                )
            job_id = self._new_id()
            job = JobDir(self.root / job_id)
            config.output.lora_path = str(job.lora_path)
            atomic_write_text(job.config_path, to_toml(config))
            self._index.mark(job_id)  # before the state: a queued job always has its marker
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

    def _new_id(self) -> str:
        """`YYYYMMDD-HHMMSS-` and six hex digits: the millisecond, then three random ones; later than
        every id this manager made before, so that id order is creation order."""
        while True:
            now = time.time()
            job_id = time.strftime("%Y%m%d-%H%M%S-", time.localtime(now)) + f"{int(now % 1 * 1000):03x}"
            job_id += secrets.token_hex(2)[:3]
            if job_id > self._last_id and not (self.root / job_id).exists():
                self._last_id = job_id
                return job_id
            time.sleep(0.001)

    def cancel(self, job_id: str) -> dict:
        """Stop a queued or running job. A job that another live process owns (another ComfyUI on the
        same jobs folder) is asked to stop through its cancel request file, which its owner and its
        trainer read; the answer is then its summary as it stands."""
        job = self._job(job_id)
        with self._lock:
            if self._running is not None:
                self._watch()  # settle a trainer that has just exited, so its state is final
            running = self._running
            if running is not None and running.job_id == job_id:
                if (state := job.read_status().get("state")) != "running":
                    raise JobError(f"job {job_id} is {state}: only a queued or running job can be cancelled")
                self._stop_running(running, job)
            else:
                with self._claim(job) as claim:
                    state = job.read_status().get("state")
                    if state not in CANCELLABLE:
                        raise JobError(f"job {job_id} is {state}: only a queued or running job can be cancelled")
                    if claim is None:  # another live process owns it
                        job.request_cancel()
                        log.info("job %s belongs to another process: asked it to stop", job_id)
                    elif state == "queued":
                        job.write_status("cancelled", pid=None, message="cancelled before it started")
                        self._index.unmark(job_id)
                    else:  # "running", but its owner is gone: the worker settles it
                        job.request_cancel()
        self._changed(job_id)
        self._wake.set()
        return self.summary(job_id)

    def _stop_running(self, running: _Running, job: JobDir) -> None:
        """Ask this manager's own trainer to stop (once): the request file, and SIGTERM where there is one."""
        if running.cancel_at is not None:
            return
        running.cancel_at = time.monotonic()
        job.request_cancel()  # every OS: the trainer reads it at its safe points
        running.process.terminate()  # POSIX: SIGTERM too (reaches `accelerate launch`)
        job.write_status(
            "running", pid=running.pid, pid_started=running.started, message="cancelling: saving a checkpoint"
        )

    def resume(self, job_id: str) -> dict:
        job = self._job(job_id)
        with self._lock:
            if self._running is not None:
                self._watch()
            if self._running is not None and self._running.job_id == job_id:
                raise JobError(f"job {job_id} is still stopping: resume it once it is cancelled")
            with self._claim(job) as claim:
                if claim is None:
                    raise JobError(f"job {job_id} is still owned by another process: resume it once it is cancelled")
                status = job.read_status()
                if status.get("state") not in ("cancelled", "failed"):
                    raise JobError(f"job {job_id} is {status.get('state')}: only a cancelled or failed job can resume")
                done = int(status.get("epoch") or 0) if job.latest_checkpoint() else 0
                self._index.mark(job_id)
                job.write_status(
                    "queued",
                    pid=None,
                    resume=True,
                    queued_at=time.time(),
                    message=f"queued to resume after epoch {done}",
                )
        self._changed(job_id)
        self._wake.set()
        return self.summary(job_id)

    def delete(self, job_id: str) -> dict:
        """Remove a finished job's folder (never a LoRA it published). The folder is first renamed to a
        hidden name, so a half-removed job never shows in the list; a queued or running job is refused."""
        job = self._job(job_id)
        with self._lock:
            if self._running is not None and self._running.job_id == job_id:
                raise JobError(f"job {job_id} is running: cancel it first")
            with self._claim(job) as claim:
                if claim is None:
                    raise JobError(f"job {job_id} is running in another process: cancel it first")
                status = job.read_status()
                if not _settled(status):
                    raise JobError(
                        f"job {job_id} is {status.get('state')}: only a done, cancelled or failed job can be "
                        "deleted (cancel it first)"
                    )
            # moved once the claim is let go: its lock file is open inside the folder while held, and
            # Windows cannot rename a folder that holds an open file
            trash = self.root / f"{TRASH_PREFIX}{job_id}-{secrets.token_hex(3)}"
            try:
                os.replace(job.path, trash)
            except OSError as exc:
                raise JobError(f"job {job_id} could not be deleted: {exc.strerror or exc}") from exc
            self._index.unmark(job_id)
        shutil.rmtree(trash, ignore_errors=True)
        log.info("deleted job %s", job_id)
        try:
            self.on_event("shielddiff.deleted", {"id": job_id})
        except Exception:
            log.exception("job event for %s could not be sent", job_id)
        return {"id": job_id, "deleted": True}

    # -- reading (the job store) -----------------------------------------------------------
    def job_ids(self) -> list[str]:
        """Every job id, oldest first."""
        return self.store.job_ids()

    def page(self, limit: int = PAGE_SIZE, before: str | None = None) -> dict:
        """A page of the list, newest first (see `JobStore.page`)."""
        return self.store.page(limit, before)

    def summaries(self) -> list[dict]:
        """Every job, newest first (the list route pages through `page` instead)."""
        return self.store.summaries()

    def summary(self, job_id: str) -> dict:
        return self.store.summary(job_id)

    def detail(self, job_id: str) -> dict:
        return self.store.detail(job_id)

    def sample_path(self, job_id: str, name: str) -> Path:
        return self.store.sample_path(job_id, name)

    def _job(self, job_id: str) -> JobDir:
        return self.store.job(job_id)

    def _claim(self, job: JobDir):
        """The job's claim for the length of a `with` block, or None (held by a live process)."""
        claim = try_claim(job.path)
        return claim if claim is not None else _NoClaim()

    # -- the worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        ticks = 0
        while not self._stopping.is_set():
            try:
                with self._lock:
                    if self._running is None:
                        self._start_next()
                    else:
                        self._watch()
                        ticks += 1
                        if ticks % ORPHAN_CHECK_TICKS == 0:
                            self._take_over_orphans()  # settle jobs of a dead owner even while busy
            except Exception:  # the worker must outlive any one job's trouble
                log.exception("job queue: unexpected error")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _unfinished(self) -> list[tuple[str, dict]]:
        """The jobs of the `.active/` index with their status; markers of jobs gone are dropped."""
        found = []
        for job_id in self._index.marked():
            if self._running is not None and self._running.job_id == job_id:
                continue
            path = self.root / job_id
            if not path.is_dir():
                self._index.unmark(job_id)
                continue
            status = read_status_file(status_file(path))
            if status:  # none yet: a submit is writing it
                found.append((job_id, status))
        return found

    def _start_next(self) -> None:
        """Take over jobs whose owner died, then start the oldest queued job nobody has claimed."""
        self._take_over_orphans()
        if self._running is not None:
            return
        queued = sorted(
            (status.get("queued_at") or status.get("created_at") or 0, job_id)
            for job_id, status in self._unfinished()
            if status.get("state") == "queued"
        )
        for _, job_id in queued:
            claim = try_claim(self.root / job_id)
            if claim is None:
                continue  # another instance is starting it
            job = JobDir(self.root / job_id)
            if job.read_status().get("state") != "queued":  # started, cancelled or deleted meanwhile
                if _settled(job.read_status()):
                    self._index.unmark(job_id)
                claim.release()
                continue
            self._start(job_id, job, claim)
            return

    def _start(self, job_id: str, job: JobDir, claim: Claim) -> None:
        claimed_at = time.time()
        resume = bool(job.read_status().get("resume"))
        try:
            self.before_start()
        except Exception:
            log.exception("could not ask the host to free its models before job %s", job_id)
        if job.cancel_requested() and not job.cancel_requested(since=claimed_at):
            job.clear_cancel_request()  # one left from an earlier run of this job must not stop this one
        try:
            process = TrainerProcess(job.path, resume=resume)
        except OSError as exc:
            job.write_status("failed", pid=None, message=f"the trainer could not start: {exc}")
            self._index.unmark(job_id)
            claim.release()
            self._changed(job_id)
            return
        except BaseException:
            claim.release()
            raise
        job.write_status(
            "running",
            pid=process.pid,
            pid_started=process.started,
            message="starting the trainer",
            started_at=time.time(),
        )
        self._running = _Running(job_id, process, claim, claimed_at=claimed_at)
        self._changed(job_id)

    def _watch(self) -> None:
        running = self._running
        job = JobDir(self.root / running.job_id)
        if not running.process.ended():
            if running.cancel_at is None and job.cancel_requested(since=running.claimed_at):
                log.info("job %s: a cancel was asked for from another process", running.job_id)
                self._stop_running(running, job)  # the same stop, grace and kill as our own cancel
            elif running.cancel_at is not None and time.monotonic() - running.cancel_at > self.cancel_grace:
                log.warning(
                    "job %s did not stop within %.0f s of the cancel request: killing it",
                    running.job_id,
                    self.cancel_grace,
                )
                running.process.kill()
            seen = (job.read_status().get("epoch"), job.read_status().get("message"), len(job.read_metrics()))
            if seen != running.seen:
                running.seen = seen
                self._changed(running.job_id, kind="progress")
            return
        self._running = None
        self._settle_and_release(
            running.job_id, job, running.process.exit_code(), running.claim, cancelled=running.cancel_at is not None
        )

    def _settle_and_release(
        self, job_id: str, job: JobDir, code: int | None, claim: Claim, *, cancelled: bool = False
    ) -> None:
        """Settle a job whose trainer has ended (`code`: its exit code, None when unknown), then let its
        claim go. `cancelled`: this manager accepted a cancel of it."""
        try:
            self._settle(job_id, job, code, cancelled)
            if _settled(job.read_status()):
                self._index.unmark(job_id)
        finally:
            claim.release()
        self._changed(job_id)

    def _settle(self, job_id: str, job: JobDir, code: int | None, cancelled: bool) -> None:
        job.clear_cancel_request()
        status = job.read_status()
        state = status.get("state")
        if not cancelled and _to_publish(status) and code in (0, None):
            self._publish(job_id, job)
        elif cancelled or state == "cancelled":  # an accepted cancel publishes nothing
            epochs = int(status.get("epoch") or 0) if job.latest_checkpoint() else 0
            if status.get("kind") == EVALUATE:
                message = "cancelled; resume reuses the images already made"
            elif epochs:
                message = f"cancelled; resume continues after epoch {epochs}"
            else:
                message = "cancelled before epoch 1"
            job.write_status("cancelled", pid=None, message=message)
        else:
            reason = why_it_ended(code, job.output_path)
            job.write_status("failed", pid=None, message=reason)
            log.error("job %s failed: %s", job_id, reason)

    def _publish(self, job_id: str, job: JobDir) -> None:
        """Copy the finished LoRA into the LoRA folder under its name, or the next free `name-N`. When the
        folder cannot take it (read-only, full), the job fails with the cause and keeps its LoRA for `publish`."""
        status = job.write_status("publishing", pid=None, message="copying the LoRA into the loras folder")
        self._changed(job_id)
        source = job.lora_path
        stem = status.get("lora_name") or job_id
        try:
            name = publish_lora(source, self.loras_dir, stem)
        except NoFreeName as exc:
            job.write_status("failed", pid=None, message=str(exc))
            return
        except OSError as exc:
            message = (
                f"the LoRA could not be copied into {self.loras_dir}: {exc.strerror or exc}. It is kept in the job "
                f"folder ({source}); make room or make the folder writable, then Publish again."
            )
            job.write_status("failed", pid=None, message=message, publish_failed=True)
            log.error("job %s: %s", job_id, message)
            return
        first = lora_file_name(stem)
        note = "" if name == first else f" ({first} appeared meanwhile; not overwritten)"
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
        with self._lock, self._claim(job) as claim:
            if claim is None:
                raise JobError(f"job {job_id} is owned by another process: publish it once that one is done")
            status = job.read_status()
            if not (status.get("state") == "failed" and status.get("publish_failed")):
                raise JobError(
                    f"job {job_id} is {status.get('state')}: only a job whose LoRA could not be copied into the "
                    "loras folder can be published again"
                )
            if not job.lora_path.is_file():
                raise JobError(f"job {job_id} has no LoRA in its folder any more: resume it to write it again")
            self._publish(job_id, job)
        self._changed(job_id)
        return self.summary(job_id)

    def _recover(self) -> None:
        """At start: clear what a crash left half deleted, index the unfinished jobs of an older version
        (once), then take over the jobs whose owner is gone (see `_take_over_orphans`)."""
        for trash in self._index.trash():
            shutil.rmtree(trash, ignore_errors=True)
        if not self._index.active.is_dir():
            self._index.rebuild()
        self._take_over_orphans()

    def _take_over_orphans(self) -> None:
        """Jobs marked running, or done but not published, whose claim can be taken (no live process owns
        them): adopt a trainer still alive (when this manager is free), publish a finished LoRA, settle the
        rest. A job another live process owns is left to it."""
        for job_id, status in self._unfinished():
            if status.get("state") == "queued":
                continue
            job_path = self.root / job_id
            claim = try_claim(job_path)
            if claim is None:
                continue  # its owner lives
            if not self._index.is_marked(job_id):  # its owner settled it and let go meanwhile
                claim.release()
                continue
            job = JobDir(job_path)
            status = job.read_status()  # again: it may have changed before the claim was ours
            state, pid, started = status.get("state"), status.get("pid"), status.get("pid_started")
            if state == "running" and pid_alive(pid, started, job.path):  # the same process, not its pid reused
                if self._running is None:
                    trainer = AdoptedTrainer(int(pid), started, job.path)
                    self._running = _Running(job_id, trainer, claim, claimed_at=time.time())
                    log.info("job %s: its owner is gone; watching trainer pid %s, still running", job_id, pid)
                else:
                    claim.release()  # busy: an idle instance (or this one, later) adopts it
                continue
            log.info("job %s: its owner is gone; settling it (%s)", job_id, state)
            if state == "running":
                self._settle_and_release(job_id, job, None, claim)
            elif _to_publish(status):
                self._publish(job_id, job)
                self._index.unmark(job_id)
                claim.release()
                self._changed(job_id)
            else:
                if _settled(status):
                    self._index.unmark(job_id)
                claim.release()

    def _changed(self, job_id: str, kind: str = "state") -> None:
        try:
            self.on_event(f"shielddiff.{kind}", self.summary(job_id))
        except Exception:
            log.exception("job event for %s could not be sent", job_id)


class _NoClaim:
    """What `JobManager._claim` gives when a live process holds the claim: `with` binds None."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        pass
