"""One JobManager in its own OS process, as a second ComfyUI on the same install would run it:

    python tests/support/job_manager_process.py JOBS_ROOT LORAS_DIR

It logs to stderr and runs until SIGTERM (then stops its queue as ComfyUI's exit would) or SIGKILL.
`start_manager_process` starts one with the repository on its path."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start_manager_process(jobs_root: Path, loras_dir: Path, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(jobs_root), str(loras_dir)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def main(jobs_root: str, loras_dir: str) -> None:
    from trainer.jobs.queue import JobManager

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s pid {os.getpid()} %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    manager = JobManager(jobs_root, loras_dir, poll_seconds=0.1, cancel_grace_seconds=120).start()
    logging.getLogger(__name__).info("job manager ready on %s", jobs_root)
    while not stop.wait(0.5):
        pass
    manager.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
