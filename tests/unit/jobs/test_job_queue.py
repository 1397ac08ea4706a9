"""The job queue with real trainer processes on a tiny pipeline: order, publishing, cancel,
resume, a killed trainer, a restart of the host, and ids that reach nothing outside the jobs folder."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from support.job_requests import tiny_request
from trainer.diffusion.tiny import tiny_pipeline
from trainer.jobs.queue import JobError, JobManager, NoSuchJob
from trainer.lora.formats import read_lora


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))


request = tiny_request


class Recorder:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind, data):
        self.events.append((kind, data))

    def states(self, job_id):
        return [d["state"] for _, d in self.events if d["id"] == job_id]


@pytest.fixture
def queue(tmp_path):
    recorder = Recorder()
    frees = []
    manager = JobManager(
        tmp_path / "jobs",
        tmp_path / "loras",
        on_event=recorder,
        before_start=lambda: frees.append(time.time()),
        poll_seconds=0.1,
    )
    manager.recorder, manager.frees = recorder, frees
    yield manager.start()
    manager.stop()


def wait_for(manager, job_id, states, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = manager.summary(job_id)
        if summary["state"] in states:
            return summary
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {manager.summary(job_id)} after {timeout} s")


def submit(manager, req):
    return manager.submit(req.to_config(), req.lora_name)["id"]


def test_jobs_run_one_at_a_time_in_order_and_their_loras_land_under_free_names(queue, pipeline, tmp_path):
    first = submit(queue, request(pipeline, "first", epochs=2))
    second = submit(queue, request(pipeline, "second", epochs=1))
    with pytest.raises(JobError, match=r"'first' already exists .* or is the output of a queued"):
        submit(queue, request(pipeline, "first"))
    overlap = False
    while queue.summary(second)["state"] not in ("done", "failed"):
        states = {queue.summary(first)["state"], queue.summary(second)["state"]}
        overlap |= states == {"running"}
        if queue.summary(first)["state"] == "running" and not (tmp_path / "loras" / "second.safetensors").exists():
            (tmp_path / "loras").mkdir(exist_ok=True)
            (tmp_path / "loras" / "second.safetensors").write_bytes(b"the user's own file")
        time.sleep(0.1)
    assert not overlap
    a, b = wait_for(queue, first, ("done",)), wait_for(queue, second, ("done",))
    assert a["lora_file"] == "first.safetensors" and a["epoch"] == 2
    # a file that appeared under the second job's name meanwhile is kept; the job's LoRA gets the next free name
    assert (tmp_path / "loras" / "second.safetensors").read_bytes() == b"the user's own file"
    assert b["lora_file"] == "second-2.safetensors" and "not overwritten" in b["message"]
    lora = read_lora(tmp_path / "loras" / "first.safetensors")
    assert lora.metadata["shielddiff.method"] == "shielddiff-rl"
    assert len(queue.frees) == 2  # the host was asked to free its models before each job
    progress = {d["epoch"] for kind, d in queue.recorder.events if kind == "shielddiff.progress" and d["id"] == first}
    assert {1, 2} <= progress  # an event for every epoch
    detail = queue.detail(first)
    assert [m["epoch"] for m in detail["metrics"]] == [0, 1]
    assert detail["samples"] and all(s["epoch"] == 1 for s in detail["samples"])
    assert queue.sample_path(first, detail["samples"][0]["name"]).read_bytes()[:4] == b"\x89PNG"
    assert [j["id"] for j in queue.summaries()] == [second, first]  # newest first
    # what the page was told: "publishing" until the LoRA is in the LoRA folder, "done" only with it
    told = [d for _, d in queue.recorder.events if d["id"] == first]
    assert list(dict.fromkeys(d["state"] for d in told)) == ["queued", "running", "publishing", "done"]
    assert all(d["lora_file"] for d in told if d["state"] == "done")


def test_cancel_keeps_a_checkpoint_and_no_lora_then_resume_finishes(queue, pipeline, tmp_path):
    job_id = submit(queue, request(pipeline, "stopped", epochs=30, steps=6))
    deadline = time.monotonic() + 240
    while queue.summary(job_id)["epoch"] < 1:
        assert time.monotonic() < deadline, queue.summary(job_id)
        time.sleep(0.1)
    pid = queue._running.pid
    at_cancel = queue.summary(job_id)["epoch"]
    queue.cancel(job_id)
    stopped_at = time.monotonic()
    while os.path.exists(f"/proc/{pid}"):  # gone: exited and reaped
        assert time.monotonic() - stopped_at < 300, "the trainer was still running 300 s after cancel (hung)"
        time.sleep(0.1)
    summary = wait_for(queue, job_id, ("cancelled",), timeout=30)
    assert summary["epoch"] <= at_cancel + 1  # stopped at the next safe point, not after its 30 epochs
    assert summary["has_checkpoint"] and summary["resumable"]
    assert not (tmp_path / "loras" / "stopped.safetensors").exists()
    with pytest.raises(JobError, match="only a queued or running job can be cancelled"):
        queue.cancel(job_id)
    with pytest.raises(JobError, match=r"'stopped' already exists .* or is the output of a queued"):
        submit(queue, request(pipeline, "stopped"))  # a cancelled job keeps its name: it can resume
    done_before = summary["epoch"]
    # resume from the route's point of view: shorten the run so the test ends soon
    config = (queue.root / job_id / "config.toml").read_text().replace("epochs = 30", f"epochs = {done_before + 1}")
    (queue.root / job_id / "config.toml").write_text(config)
    queue.resume(job_id)
    summary = wait_for(queue, job_id, ("done", "failed"))
    assert summary["state"] == "done", summary
    assert summary["epoch"] == done_before + 1
    assert (tmp_path / "loras" / "stopped.safetensors").exists()
    log = (queue.root / job_id / "log.txt").read_text()
    assert f"resuming after epoch {done_before}" in log


def test_a_killed_trainer_fails_the_job_with_its_reason_and_the_queue_goes_on(queue, pipeline):
    doomed = submit(queue, request(pipeline, "doomed", epochs=30))
    after = submit(queue, request(pipeline, "after", epochs=1))
    wait_for(queue, doomed, ("running",))
    while queue._running is None or queue._running.job_id != doomed:
        time.sleep(0.05)
    os.kill(queue._running.pid, signal.SIGKILL)
    failed = wait_for(queue, doomed, ("failed",), timeout=20)
    assert "killed by SIGKILL" in failed["message"]
    assert wait_for(queue, after, ("done", "failed"))["state"] == "done"


def test_a_restarted_host_runs_what_was_queued_and_fails_what_died_with_it(pipeline, tmp_path):
    before = JobManager(tmp_path / "jobs", tmp_path / "loras")  # never started: as if the host stopped
    queued = before.submit(request(pipeline, "waiting", epochs=1).to_config(), "waiting")["id"]
    orphan = before.submit(request(pipeline, "orphan", epochs=1).to_config(), "orphan")["id"]
    gone = subprocess.Popen(["true"])
    gone.wait()
    from trainer.training.job_dir import JobDir

    JobDir(tmp_path / "jobs" / orphan).write_status("running", pid=gone.pid, message="epoch 1 of 1")
    after = JobManager(tmp_path / "jobs", tmp_path / "loras", poll_seconds=0.1).start()
    try:
        assert after.summary(orphan)["state"] == "failed"
        assert "stopped without finishing" in after.summary(orphan)["message"]
        assert wait_for(after, queued, ("done", "failed"))["state"] == "done"
    finally:
        after.stop()


@pytest.mark.parametrize(
    "job_id", ["../jobs", "..", "/etc/passwd", "20260101-000000-abcdef", "x" * 300, "20260101-000000-ABCDEF"]
)
def test_ids_that_name_no_job_are_refused(tmp_path, job_id):
    manager = JobManager(tmp_path / "jobs", tmp_path / "loras")
    with pytest.raises(NoSuchJob):
        manager.detail(job_id)
    with pytest.raises(NoSuchJob):
        manager.cancel(job_id)


@pytest.mark.parametrize("name", ["../config.toml", "../../status.json", "epoch-0000-00.png/..", "log.txt"])
def test_sample_names_reach_only_sample_images(pipeline, tmp_path, name):
    manager = JobManager(tmp_path / "jobs", tmp_path / "loras")
    job_id = manager.submit(request(pipeline, "s").to_config(), "s")["id"]
    (tmp_path / "jobs" / job_id / "log.txt").write_text("secret")
    with pytest.raises(NoSuchJob):
        manager.sample_path(job_id, name)


def test_the_same_request_again_is_the_job_it_made_not_a_second_one(pipeline, tmp_path):
    manager = JobManager(tmp_path / "jobs", tmp_path / "loras")  # not started: its jobs stay queued
    same = request(pipeline, "twice")
    first = manager.submit(same.to_config(), "twice", once=True)
    again = manager.submit(request(pipeline, "twice").to_config(), "twice", once=True)
    assert again["id"] == first["id"] and again["repeat"] and again["state"] == "queued"
    assert manager.job_ids() == [first["id"]]
    with pytest.raises(JobError, match="'twice' already exists"):  # other settings under the same name
        manager.submit(request(pipeline, "twice", seed=1).to_config(), "twice", once=True)
    with pytest.raises(JobError, match="'twice' already exists"):  # without once, as before
        manager.submit(same.to_config(), "twice")
    # once its LoRA is gone (the job finished, then the user deleted the file), the same request is a new job
    manager._job(first["id"]).write_status("done", lora_file="twice.safetensors")
    assert manager.submit(same.to_config(), "twice", once=True)["id"] != first["id"]
