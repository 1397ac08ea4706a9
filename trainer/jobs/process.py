"""The trainer as a child process: start it, stop it, tell whether it still runs, and say why it ended.

The child runs `python -m trainer train --config D/config.toml --job-dir D [--resume]`, or for an
evaluation job (D/evaluation.json) `python -m trainer eval --job-dir D`. A stop
is asked for the same way on every OS, by a cancel request in the job directory that the trainer
reads at its safe points; on POSIX it also gets SIGTERM, sent to its own process group (so the
request reaches everything it started, e.g. under `accelerate launch`), and on Linux it receives
SIGTERM when its parent dies, so a crashed ComfyUI leaves a cancelled, resumable job and no orphan
on the GPU. Liveness is read through psutil, never by signalling: a trainer is the process of the
pid *and* start time its status names (and, where readable, its command line names the job), so
a pid reused by another process after a crash is never taken for the trainer.

A trainer this process started (`TrainerProcess`) and one it adopted after a restart of the host
(`AdoptedTrainer`, known by pid and start time only) answer the same calls: `ended()`,
`exit_code()`, `terminate()`, `kill()`, so the queue never asks which of the two it watches.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from ..training.job_dir import CONFIG_FILE, EVALUATION_FILE, OUTPUT_FILE, process_started

__all__ = ["PACK_ROOT", "AdoptedTrainer", "TrainerProcess", "kill_process", "pid_alive", "why_it_ended"]

log = logging.getLogger(__name__)

PACK_ROOT = Path(__file__).resolve().parents[2]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _process(pid: int | None, started: float | None, job_dir: Path | None):
    """The psutil process that is this trainer, or None (gone, or the pid now names another process)."""
    import psutil

    if not pid:
        return None
    try:
        proc = psutil.Process(int(pid))
        if started is not None and abs(proc.create_time() - float(started)) > 0.01:
            return None  # the pid was reused by a process started later
        if job_dir is not None:
            try:
                if not any(Path(job_dir).name in arg for arg in proc.cmdline()):
                    return None  # not a trainer of this job
            except (psutil.AccessDenied, psutil.ZombieProcess):
                if started is None:
                    return None  # nothing left to identify it by
    except (psutil.NoSuchProcess, ValueError, OverflowError):
        return None
    except psutil.AccessDenied:
        return None if started is None else proc
    return proc


def pid_alive(pid: int | None, started: float | None = None, job_dir: Path | None = None) -> bool:
    """Whether the trainer with this pid (and start time, and job folder on its command line, when
    given) still runs. A process still exiting, or a zombie, counts: its files may still change."""
    return _process(pid, started, job_dir) is not None


def kill_process(pid: int | None, started: float | None = None, job_dir: Path | None = None) -> None:
    """Stop the identified trainer and its children outright (no checkpoint): the last resort."""
    import psutil

    proc = _process(pid, started, job_dir)
    if proc is None:
        return
    try:
        family = [*proc.children(recursive=True), proc]
    except psutil.Error:
        family = [proc]
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass


def _terminate_group(pid: int) -> None:
    """SIGTERM to the process group that `pid` leads, where there are POSIX signals (the cancel request in
    the job directory is what every OS relies on; on Windows a "terminate" would be a hard kill)."""
    if hasattr(os, "killpg"):
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


class TrainerProcess:
    """One trainer this process started. `poll()` is None while it runs, then its exit code."""

    def __init__(self, job_dir: Path, resume: bool, python: str = sys.executable):
        job_dir = Path(job_dir)
        if (job_dir / EVALUATION_FILE).is_file():  # an evaluation job: resuming it reuses the images made
            cmd = [python, "-m", "trainer", "eval", "--job-dir", str(job_dir)]
        else:
            cmd = [python, "-m", "trainer", "train", "--config", str(job_dir / CONFIG_FILE), "--job-dir", str(job_dir)]
            if resume:
                cmd.append("--resume")
        env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
        env["PYTHONPATH"] = os.pathsep.join([str(PACK_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.output = job_dir / OUTPUT_FILE
        with open(self.output, "ab") as out:
            self.popen = subprocess.Popen(
                cmd,
                cwd=PACK_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        self.pid = self.popen.pid
        self.started = process_started(self.pid)
        log.info("started trainer pid %d for %s%s", self.pid, job_dir.name, " (resume)" if resume else "")

    def poll(self) -> int | None:
        return self.popen.poll()

    def ended(self) -> bool:
        return self.popen.poll() is not None

    def exit_code(self) -> int | None:
        """The exit code once it has ended (None before)."""
        return self.popen.poll()

    def terminate(self) -> None:
        """SIGTERM to the trainer's process group (see `_terminate_group`)."""
        if self.popen.poll() is None:
            _terminate_group(self.pid)

    def kill(self) -> None:
        """Stop the trainer and everything it started outright (no checkpoint)."""
        if self.popen.poll() is not None:
            return
        kill_process(self.pid, self.started)


class AdoptedTrainer:
    """A trainer that another process started (this host before a restart, or an instance that died),
    watched by its pid, start time and job folder: the same calls as `TrainerProcess`. Its exit code
    is not ours to read: `exit_code()` is None."""

    def __init__(self, pid: int, started: float | None, job_dir: Path):
        self.pid, self.started, self.job_dir = int(pid), started, Path(job_dir)
        self.output = self.job_dir / OUTPUT_FILE

    def ended(self) -> bool:
        return not pid_alive(self.pid, self.started, self.job_dir)

    def exit_code(self) -> int | None:
        return None

    def terminate(self) -> None:
        """SIGTERM to the group it leads (`TrainerProcess` starts each trainer in a new session), where
        there are POSIX signals, while it is still the identified trainer. A pid that leads no group (a
        process under `accelerate launch`) names none: the cancel request file stops it."""
        if _process(self.pid, self.started, self.job_dir) is not None:
            _terminate_group(self.pid)

    def kill(self) -> None:
        kill_process(self.pid, self.started, self.job_dir)


_NOISE = re.compile(r"^\s*(\d+%\||epochs:)")


def why_it_ended(returncode: int | None, output: Path, lines: int = 6) -> str:
    """A one-paragraph reason for a failed run: the exit cause and the trainer's last error lines."""
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else -returncode
        cause = f"the trainer was killed by {name}"
        if returncode == -getattr(signal, "SIGKILL", 9):
            cause += " (out of memory, or stopped from outside)"
    elif returncode is None:
        cause = "the trainer stopped without finishing (ComfyUI was restarted while it ran)"
    else:
        cause = f"the trainer exited with code {returncode}"
    try:
        text = output.read_text(errors="replace")
    except OSError:
        text = ""
    rows = [r.strip() for r in re.split(r"[\r\n]+", text) if r.strip() and not _NOISE.match(r)]
    start = max((i for i, r in enumerate(rows) if r.startswith(("Traceback", "ERROR"))), default=len(rows) - lines)
    tail = rows[max(0, start) :][-lines:]
    return cause + (": " + " | ".join(tail) if tail else "")
