"""Two ComfyUI instances on one install share one jobs folder (one instance per GPU): here, two real
OS processes, each running a JobManager on the same folder. A job is trained by exactly one of them
(one trainer, its metrics written once, its LoRA published once under its own name); the other lists
it, can stop it through its cancel request, and takes it over only once its owner has died."""

from __future__ import annotations

import os
import signal
import time

import pytest

from support.job_manager_process import start_manager_process
from support.job_requests import tiny_request
from trainer.diffusion.tiny import tiny_pipeline
from trainer.jobs.queue import JobError, JobManager


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))


def submit(manager, pipeline, name, epochs, steps=3):
    req = tiny_request(pipeline, name, epochs, steps)
    return manager.submit(req.to_config(), name)["id"]


@pytest.fixture
def instances(tmp_path):
    """Start instances on demand (`instances.start("a")`); all are stopped at the end."""

    class Instances(dict):
        def start(self, name):
            self[name] = start_manager_process(tmp_path / "jobs", tmp_path / "loras", tmp_path / f"{name}.log")
            return self[name]

        def log(self, name):
            return (tmp_path / f"{name}.log").read_text(errors="replace")

    found = Instances()
    yield found
    for proc in found.values():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except Exception:
                proc.kill()
                proc.wait()


def resumed(jobs, job_id) -> bool:
    """Resume the job; False while its owner still settles it (the trainer wrote "cancelled" first)."""
    try:
        jobs.resume(job_id)
    except JobError as exc:
        assert "still owned by another process" in str(exc), exc
        return False
    return True


def wait_until(check, what, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.mark.timeout(1800)
def test_two_instances_train_each_job_once_and_publish_it_once(instances, pipeline, tmp_path):
    jobs = JobManager(tmp_path / "jobs", tmp_path / "loras")  # what the user's page talks to: never started
    instances.start("a")
    instances.start("b")
    wait_until(lambda: all("job manager ready" in instances.log(n) for n in "ab"), "both instances ready", 120)
    first = submit(jobs, pipeline, "first", epochs=2)
    second = submit(jobs, pipeline, "second", epochs=2)
    for job_id in (first, second):
        wait_until(lambda j=job_id: jobs.summary(j)["state"] in ("done", "failed"), f"job {job_id} finished")
    time.sleep(1.0)  # a second trainer or publisher, if any, would have acted by now
    assert jobs.summary(first)["state"] == "done" and jobs.summary(second)["state"] == "done"
    assert sorted(p.name for p in (tmp_path / "loras").iterdir()) == ["first.safetensors", "second.safetensors"]
    for job_id in (first, second):
        metrics = [m["epoch"] for m in jobs.detail(job_id)["metrics"]]
        assert metrics == [0, 1], f"job {job_id} metrics written by more than one trainer: {metrics}"
    started = [line for n in "ab" for line in instances.log(n).splitlines() if "started trainer pid" in line]
    assert len(started) == 2 and {first, second} == {line.split(" for ")[1].split()[0] for line in started}
    assert jobs.job_ids() == [first, second]  # claim.lock and the .active index are no jobs


@pytest.mark.timeout(1800)
def test_a_job_of_another_live_instance_is_only_watched_stopped_by_request_and_taken_over_when_it_dies(
    instances, pipeline, tmp_path
):
    jobs = JobManager(tmp_path / "jobs", tmp_path / "loras")
    owner = instances.start("a")
    wait_until(lambda: "job manager ready" in instances.log("a"), "instance a ready", 120)
    long = submit(jobs, pipeline, "long", epochs=30, steps=6)
    wait_until(lambda: jobs.summary(long)["state"] == "running" and jobs.summary(long)["epoch"] >= 1, "epoch 1")
    pid = jobs._job(long).read_status()["pid"]

    instances.start("b")  # a second instance comes up while the first one trains
    wait_until(lambda: "job manager ready" in instances.log("b"), "instance b ready", 120)
    time.sleep(1.0)  # several polls of b's worker
    assert jobs.summary(long)["state"] == "running" and jobs._job(long).read_status()["pid"] == pid
    assert "started trainer" not in instances.log("b") and "watching trainer" not in instances.log("b")

    answer = jobs.cancel(long)  # from a third process's manager: the owner is asked, no 409
    assert answer["state"] == "running"
    cancelled = wait_until(lambda: (s := jobs.summary(long))["state"] in ("cancelled", "failed") and s, "cancel")
    assert cancelled["state"] == "cancelled" and cancelled["has_checkpoint"], cancelled
    assert not (tmp_path / "loras" / "long.safetensors").exists()

    wait_until(lambda: resumed(jobs, long), "resume accepted once the owner has let the cancelled job go")
    wait_until(lambda: jobs.summary(long)["state"] == "running", "resumed")
    resumed_by = wait_until(
        lambda: [n for n in "ab" if f"for {long} (resume)" in instances.log(n)], "the resumed job's owner"
    )
    owner_name = resumed_by[0]
    survivor = "b" if owner_name == "a" else "a"
    os.kill(instances[owner_name].pid, signal.SIGKILL)
    instances[owner_name].wait(timeout=30)
    settled = wait_until(lambda: (s := jobs.summary(long))["state"] in ("cancelled", "failed") and s, "take-over")
    assert settled["resumable"]  # the trainer died with its owner (SIGTERM on Linux): settled, not stuck
    assert f"job {long}: its owner is gone" in instances.log(survivor)
    assert instances[survivor].poll() is None and owner.pid
