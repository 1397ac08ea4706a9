"""A trainer adopted after a restart (known by pid, start time and job folder) answers the same calls
as one the queue started: whether it ended, its exit code, terminate and kill; and a process that
only has its pid (reused after a crash) is neither watched nor signalled as the trainer."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from trainer.jobs.process import AdoptedTrainer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")


def sleeper(job_dir):
    """A process with the job folder on its command line, leading its own group, as a trainer does."""
    code = "import sys, time; time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(job_dir)], start_new_session=True)
    while str(job_dir) not in psutil.Process(proc.pid).cmdline():  # forked, not yet the new program
        time.sleep(0.01)
    return proc


def wait_ended(trainer, proc):
    while not trainer.ended():
        proc.poll()  # reap it: the test is its parent, as the host was before it went away
        time.sleep(0.05)


@pytest.mark.parametrize("stop", ["terminate", "kill"])
def test_an_adopted_trainer_is_watched_and_stopped_by_identity(tmp_path, stop):
    proc = sleeper(tmp_path / "20260101-000000-000abc")
    try:
        trainer = AdoptedTrainer(proc.pid, psutil.Process(proc.pid).create_time(), tmp_path / "20260101-000000-000abc")
        assert not trainer.ended() and trainer.exit_code() is None
        getattr(trainer, stop)()
        wait_ended(trainer, proc)
        assert proc.wait(timeout=30) == (-15 if stop == "terminate" else -9)
        assert trainer.exit_code() is None  # not ours to read
    finally:
        proc.kill()


def test_a_pid_with_another_start_time_is_not_the_trainer(tmp_path):
    proc = sleeper(tmp_path / "20260101-000000-000abc")
    try:
        earlier = psutil.Process(proc.pid).create_time() - 3600
        trainer = AdoptedTrainer(proc.pid, earlier, tmp_path / "20260101-000000-000abc")
        assert trainer.ended()
        trainer.terminate()
        trainer.kill()
        time.sleep(0.5)
        assert proc.poll() is None  # the stranger was not signalled
    finally:
        proc.kill()
