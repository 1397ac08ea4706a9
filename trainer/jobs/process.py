"""The trainer as a child process: start it, stop it, and say why it ended.

The child runs `python -m trainer train --config D/config.toml --job-dir D [--resume]` in its
own process group (so a cancel reaches everything it started) and, on Linux, receives SIGTERM
when its parent dies, so a crashed ComfyUI leaves a cancelled, resumable job and no orphan on
the GPU.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["PACK_ROOT", "TrainerProcess", "pid_alive", "why_it_ended"]

log = logging.getLogger(__name__)

PACK_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_NAME = "trainer-output.txt"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True  # (a process still exiting, or a zombie, counts: its files may still change)


class TrainerProcess:
    """One running trainer. `poll()` is None while it runs, then its exit code."""

    def __init__(self, job_dir: Path, resume: bool, python: str = sys.executable):
        job_dir = Path(job_dir)
        cmd = [python, "-m", "trainer", "train", "--config", str(job_dir / "config.toml"), "--job-dir", str(job_dir)]
        if resume:
            cmd.append("--resume")
        env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
        env["PYTHONPATH"] = os.pathsep.join([str(PACK_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.output = job_dir / OUTPUT_NAME
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
        log.info("started trainer pid %d for %s%s", self.pid, job_dir.name, " (resume)" if resume else "")

    def poll(self) -> int | None:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        try:
            if hasattr(os, "killpg"):
                os.killpg(self.pid, sig)
            elif sig == signal.SIGTERM:  # Windows: no process groups or SIGTERM handler; stop it outright
                self.popen.terminate()
            else:
                self.popen.kill()
        except ProcessLookupError:
            pass


_NOISE = re.compile(r"^\s*(\d+%\||epochs:)")


def why_it_ended(returncode: int | None, output: Path, lines: int = 6) -> str:
    """A one-paragraph reason for a failed run: the exit cause and the trainer's last error lines."""
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else -returncode
        cause = f"the trainer was killed by {name}"
        if returncode == -signal.SIGKILL:
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
