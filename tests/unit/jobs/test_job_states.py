"""A job's state as the list shows it is the one its writers wrote: the trainer hands a finished job
to "publishing", and only the queue makes it "done", once its LoRA is in the LoRA folder."""

from __future__ import annotations

import pytest

from trainer.jobs.queue import JobError, JobManager
from trainer.training.job_dir import JobDir

JOB = "20260101-000000-000abc"


def test_a_trainer_run_alone_is_done_and_a_queued_jobs_trainer_hands_it_to_publishing(tmp_path):
    alone = JobDir(tmp_path / "alone")
    alone.write_status("running", epoch=1, total=1)
    assert alone.write_trained(message="wrote lora.safetensors")["state"] == "done"
    queued = JobDir(tmp_path / "queued")
    queued.write_status("queued", pid=None, lora_name="mine")
    assert queued.write_trained(message="wrote lora.safetensors")["state"] == "publishing"


def test_a_job_whose_lora_is_not_published_shows_so_and_a_new_owner_publishes_it(tmp_path):
    job = JobDir(tmp_path / "jobs" / JOB)  # the trainer finished; its host died before publishing
    job.write_status("queued", pid=None, epoch=0, total=1, lora_name="orphan", created_at=0)
    job.lora_path.write_bytes(b"the trained LoRA")
    job.write_trained(epoch=1, total=1, message="wrote lora.safetensors")
    (tmp_path / "jobs" / ".active").mkdir()
    (tmp_path / "jobs" / ".active" / JOB).touch()

    idle = JobManager(tmp_path / "jobs", tmp_path / "loras")  # never started: a page's view of it
    summary = idle.summary(JOB)
    assert summary["state"] == "publishing" and not summary["lora_file"] and not summary["resumable"]
    with pytest.raises(JobError, match="publishing"):
        idle.cancel(JOB)
    with pytest.raises(JobError, match="publishing"):
        idle.delete(JOB)

    after = JobManager(tmp_path / "jobs", tmp_path / "loras", poll_seconds=0.1).start()
    try:
        done = after.summary(JOB)
        assert done["state"] == "done" and done["lora_file"] == "orphan.safetensors"
        assert (tmp_path / "loras" / "orphan.safetensors").read_bytes() == b"the trained LoRA"
    finally:
        after.stop()
