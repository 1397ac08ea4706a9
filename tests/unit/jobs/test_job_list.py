"""The job list at scale, and deleting jobs: a page of the list reads that page's jobs only (not the
whole folder once per job, which made 2,000 jobs take half a minute), pages walk every job once,
newest first, and a deleted job's folder goes (renamed away first) while its published LoRA stays."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trainer.jobs.claim import try_claim
from trainer.jobs.queue import JobError, JobManager, NoSuchJob
from trainer.training.job_dir import JobDir

_watched: list[tuple[str, str]] | None = None


def _audit(event, args):
    if _watched is not None and event in ("open", "os.listdir", "os.scandir"):
        _watched.append((event, str(args[0])))


sys.addaudithook(_audit)


def file_reads(call):
    """What `call` opened and which folders it listed (Python's audit events: real calls, not mocks)."""
    global _watched
    _watched = []
    try:
        result = call()
        return result, list(_watched)
    finally:
        _watched = None


def fake_jobs(root: Path, count: int, state="done", **fields) -> list[str]:
    ids = [f"20260101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-{i % 4096:03x}abc" for i in range(count)]
    for i, job_id in enumerate(ids):
        job = JobDir(root / job_id)
        job.write_status(state, pid=None, epoch=1, total=1, lora_name=f"lora-{i}", created_at=i, **fields)
        job.append_metrics({"epoch": 0, "reward_mean": 0.5})
    return ids


def test_a_page_reads_its_own_jobs_and_lists_the_folder_once(tmp_path):
    ids = fake_jobs(tmp_path / "jobs", 300)
    manager = JobManager(tmp_path / "jobs", tmp_path / "loras")
    page, reads = file_reads(lambda: manager.page(limit=20))
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:20] and page["total"] == 300
    statuses = [p for e, p in reads if e == "open" and p.endswith("status.json")]
    listings = [p for e, p in reads if e != "open" and Path(p) == tmp_path / "jobs"]
    assert len(statuses) <= 2 * 20, f"{len(statuses)} status reads for a page of 20"
    assert len(listings) <= 1, f"the jobs folder was listed {len(listings)} times for one page"
    _, reads = file_reads(lambda: manager.summary(ids[7]))
    assert not [p for e, p in reads if e != "open" and Path(p) == tmp_path / "jobs"]  # a lookup lists nothing


def test_pages_walk_every_job_once_newest_first(tmp_path):
    ids = fake_jobs(tmp_path / "jobs", 7, state="cancelled")
    manager = JobManager(tmp_path / "jobs", tmp_path / "loras")
    seen, cursor = [], None
    for _ in range(5):
        page = manager.page(limit=3, before=cursor)
        assert page["total"] == 7
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert manager.page(limit=50)["next"] is None
    with pytest.raises(ValueError, match="limit must be at least 1, not 0"):
        manager.page(limit=0)


def test_a_finished_job_is_deleted_but_not_its_lora_and_unfinished_ones_are_refused(tmp_path):
    root, loras = tmp_path / "jobs", tmp_path / "loras"
    done, failed = fake_jobs(root, 2, state="done", lora_file="kept.safetensors")
    JobDir(root / failed).write_status("failed", pid=None, message="boom")
    queued = fake_jobs(root / "more", 1, state="queued")[0]
    (root / "more" / queued).rename(root / "20260102-000000-000abc")
    queued = "20260102-000000-000abc"
    loras.mkdir()
    (loras / "kept.safetensors").write_bytes(b"the published LoRA")
    manager = JobManager(root, loras)

    assert manager.delete(done) == {"id": done, "deleted": True}
    assert not (root / done).exists() and manager.job_ids() == [failed, queued]
    assert (loras / "kept.safetensors").read_bytes() == b"the published LoRA"
    assert not [p for p in root.iterdir() if p.name.startswith(".trash-")]
    with pytest.raises(NoSuchJob):
        manager.delete(done)
    with pytest.raises(JobError, match="only a done, cancelled or failed job can be deleted"):
        manager.delete(queued)
    assert (root / queued / "status.json").is_file()
    with try_claim(root / failed):  # another live process owns it (e.g. resuming it right now)
        with pytest.raises(JobError, match="another process"):
            manager.delete(failed)
    assert (root / failed / "status.json").is_file()
    manager.delete(failed)
    assert manager.job_ids() == [queued]


def test_a_half_deleted_job_never_shows_and_is_cleared_at_start(tmp_path):
    root = tmp_path / "jobs"
    kept, gone = fake_jobs(root, 2, state="cancelled")
    (root / gone).rename(root / f".trash-{gone}-abcdef")  # a crash in the middle of a delete
    manager = JobManager(root, tmp_path / "loras")
    assert manager.job_ids() == [kept] and manager.page()["total"] == 1
    manager.start()
    try:
        assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".active")) == [kept]
    finally:
        manager.stop()
