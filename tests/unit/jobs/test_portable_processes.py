"""Training jobs the way they run on Windows (ComfyUI portable): the pack's code cannot import a
POSIX-only module (an import hook refuses it, in the host and in the trainer), the host has no
process groups (os.killpg is removed), and no signal reaches the trainer: a cancel is the request
file in the job directory. Also: a pid reused by another process after a crash is never taken
for the trainer."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support.job_requests import tiny_request
from trainer.diffusion.tiny import tiny_pipeline
from trainer.jobs.process import TrainerProcess
from trainer.jobs.queue import JobError, JobManager
from trainer.training.job_dir import JobDir

REPO = Path(__file__).resolve().parents[3]
HOOK = REPO / "tests" / "support" / "windows_like"
POSIX_ONLY = {"resource", "fcntl", "termios", "pwd", "grp", "posix"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))


request = tiny_request


@pytest.fixture
def windows_like(monkeypatch):
    """The host without process groups, every os.kill by the pack recorded; trainers started with the hook."""
    calls = []
    real_kill = os.kill

    def recording_kill(pid, sig):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.split(".")[0] in ("trainer", "nodes"):
            calls.append((caller, pid, sig))
        return real_kill(pid, sig)

    monkeypatch.delattr(os, "killpg")
    monkeypatch.setattr(os, "kill", recording_kill)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HOOK), os.environ.get("PYTHONPATH", "")]))
    return calls


def wait_for(manager, job_id, states, timeout=1200, epoch=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = manager.summary(job_id)
        if summary["state"] in states and summary["epoch"] >= epoch:
            return summary
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {manager.summary(job_id)} after {timeout} s")


def lora(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_the_pack_imports_with_posix_only_modules_refused():
    """Every trainer module imports in a process where the pack's POSIX-only imports fail (as on Windows)."""
    code = (
        "import importlib, pkgutil, trainer\n"
        "for m in pkgutil.walk_packages(trainer.__path__, 'trainer.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "import trainer.training.run as t, torch\n"
        "print(t.peak_memory_mb(torch.device('cpu')) > 0)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HOOK), str(REPO)]))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "True"
    probe = "exec('import resource', {'__name__': 'trainer.probe'})"  # the hook is in place: the pack's import fails
    refused = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "POSIX-only" in refused.stderr


def _module_level_imports(tree: ast.Module):
    """Imports that run when the module is imported (not inside a function, nor guarded by try)."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.If):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    yield from (a.name for a in sub.names)


def test_no_posix_only_import_or_call_anywhere_in_the_pack():
    files = [
        REPO / "__init__.py",
        REPO / "install.py",
        *[p for d in ("trainer", "nodes", "scripts") for p in (REPO / d).rglob("*.py")],
    ]
    found = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        found += [
            f"{path.relative_to(REPO)}: import {m}"
            for m in _module_level_imports(tree)
            if m.split(".")[0] in POSIX_ONLY
        ]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in {("signal", "SIGKILL"), ("os", "kill"), ("os", "getpgid")}:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, found


@pytest.mark.timeout(2400)  # four to five tiny epochs in three trainer processes
def test_a_cancel_file_stops_the_job_at_a_safe_point_and_resume_equals_the_uninterrupted_run(
    windows_like, pipeline, tmp_path
):
    queue = JobManager(tmp_path / "jobs", tmp_path / "loras", poll_seconds=0.1, cancel_grace_seconds=600).start()
    try:
        job_id = queue.submit(request(pipeline, "stopped", epochs=30).to_config(), "stopped")["id"]
        wait_for(queue, job_id, ("running",), epoch=1)
        queue.cancel(job_id)
        assert (queue.root / job_id / "cancel-request").exists()
        summary = wait_for(queue, job_id, ("cancelled", "failed"), timeout=1200)
        assert summary["state"] == "cancelled", summary
        assert summary["has_checkpoint"] and summary["resumable"]
        assert not (tmp_path / "loras" / "stopped.safetensors").exists()
        log = (queue.root / job_id / "log.txt").read_text()
        assert "cancel requested: stopping at the next safe point" in log and "SIGTERM" not in log
        done_before = summary["epoch"]
        assert done_before >= 1
        config = (queue.root / job_id / "config.toml").read_text()
        (queue.root / job_id / "config.toml").write_text(config.replace("epochs = 30", f"epochs = {done_before + 1}"))
        while queue._running is not None:  # the trainer has marked the job; wait until its process has ended
            time.sleep(0.1)
        queue.resume(job_id)
        assert wait_for(queue, job_id, ("done", "failed"))["state"] == "done"
        straight = queue.submit(request(pipeline, "straight", epochs=done_before + 1).to_config(), "straight")["id"]
        assert wait_for(queue, straight, ("done", "failed"))["state"] == "done"
    finally:
        queue.stop()
    a, b = lora(tmp_path / "loras" / "straight.safetensors"), lora(tmp_path / "loras" / "stopped.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(float(v.abs().sum()) > 0 for k, v in a.items() if "lora_up" in k)  # the LoRA moved
    assert f"resuming after epoch {done_before}" in (queue.root / job_id / "log.txt").read_text()
    assert windows_like == []  # no signal was sent by the pack


@pytest.mark.timeout(2400)  # four to five tiny epochs in three trainer processes
def test_a_trainer_alive_after_a_restart_is_adopted_without_signals_and_cancelled_by_file(
    windows_like, pipeline, tmp_path
):
    before = JobManager(tmp_path / "jobs", tmp_path / "loras")  # never started: the host that went away
    job_id = before.submit(request(pipeline, "adopted", epochs=30).to_config(), "adopted")["id"]
    job = JobDir(tmp_path / "jobs" / job_id)
    trainer = TrainerProcess(job.path, resume=False)  # as the host started it, before it went away
    job.write_status("running", pid=trainer.pid, pid_started=trainer.started, message="starting the trainer")
    try:
        deadline = time.monotonic() + 1200
        while int(job.read_status().get("epoch") or 0) < 1:
            assert time.monotonic() < deadline and trainer.poll() is None, job.read_status()
            time.sleep(0.1)
        after = JobManager(tmp_path / "jobs", tmp_path / "loras", poll_seconds=0.1, cancel_grace_seconds=600).start()
        try:
            assert after._running is not None and after._running.pid == trainer.pid  # adopted: watched by identity
            assert after.summary(job_id)["state"] == "running"
            after.cancel(job_id)
            summary = wait_for(after, job_id, ("cancelled", "failed"), timeout=1200)
        finally:
            after.stop()
        assert summary["state"] == "cancelled" and summary["has_checkpoint"], summary
        assert trainer.popen.wait(timeout=30) == 143  # it stopped by itself, at a safe point
    finally:
        if trainer.poll() is None:
            trainer.popen.kill()
    assert windows_like == []


@pytest.mark.parametrize("recorded", ["an earlier start time", "no start time (an older status)"])
def test_a_pid_reused_by_another_process_is_not_adopted(tmp_path, pipeline, recorded):
    """After a crash, the dead trainer's pid now belongs to an unrelated process: the job must not show
    "running" forever, block the queue, or have its Cancel reach that process."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        before = JobManager(tmp_path / "jobs", tmp_path / "loras")
        job_id = before.submit(request(pipeline, "crashed", epochs=1).to_config(), "crashed")["id"]
        job = JobDir(tmp_path / "jobs" / job_id)
        import psutil

        fields = {"pid": stranger.pid, "pid_started": None}
        if recorded == "an earlier start time":
            fields["pid_started"] = psutil.Process(stranger.pid).create_time() - 3600
        job.write_status("running", message="epoch 1 of 1", **fields)
        after = JobManager(tmp_path / "jobs", tmp_path / "loras")
        after._recover()  # what start() does first
        assert after._running is None  # the queue is free
        summary = after.summary(job_id)
        assert summary["state"] == "failed" and "stopped without finishing" in summary["message"]
        with pytest.raises(JobError, match="only a queued or running job can be cancelled"):
            after.cancel(job_id)
        time.sleep(0.2)
        assert stranger.poll() is None  # untouched
    finally:
        stranger.kill()
        stranger.wait()
