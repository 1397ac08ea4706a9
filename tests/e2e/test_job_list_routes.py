"""The job list route in a real ComfyUI: pages newest first with a cursor, bad paging values refused
by name (400), and jobs deleted through the route (finished ones only, from ComfyUI's own origin),
their published LoRA kept."""

from __future__ import annotations

import pytest

from trainer.training.job_dir import JobDir


@pytest.fixture
def old_jobs(comfy):
    """Twelve finished jobs from 2020 (older than any job a test starts), removed afterwards."""
    root = comfy.base_dir / "user" / "shielddiff" / "jobs"
    ids = [f"20200101-0000{i:02d}-000abc" for i in range(12)]
    for i, job_id in enumerate(ids):
        JobDir(root / job_id).write_status("cancelled", pid=None, epoch=1, total=3, lora_name=f"old-{i}")
    yield ids
    for job_id in ids:
        if (root / job_id).exists():
            comfy.request("DELETE", f"/shielddiff/jobs/{job_id}")


def test_the_list_pages_newest_first_and_refuses_bad_paging_values(comfy, old_jobs):
    seen, cursor, total = [], None, None
    while True:
        answer = comfy.get("/shielddiff/jobs", params={"limit": 5, **({"before": cursor} if cursor else {})})
        assert answer.ok, answer.text
        page = answer.json()
        assert len(page["jobs"]) <= 5 and (total is None or page["total"] == total)
        total = page["total"]
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == total == len(set(seen)) and seen == sorted(seen, reverse=True)
    assert seen[-12:] == old_jobs[::-1]
    assert len(comfy.get("/shielddiff/jobs").json()["jobs"]) == min(total, 50)  # the default page
    for bad in ("0", "-3", "ten", "1001", "2.5"):
        answer = comfy.get("/shielddiff/jobs", params={"limit": bad})
        assert answer.status_code == 400 and repr(bad) in answer.json()["error"], (bad, answer.text)
    answer = comfy.get("/shielddiff/jobs", params={"before": "../etc"})
    assert answer.status_code == 400 and "'../etc'" in answer.json()["error"]


def test_a_finished_job_is_deleted_through_the_route_from_comfyuis_own_page_only(comfy, old_jobs):
    job_id = old_jobs[3]
    loras = comfy.base_dir / "models" / "loras"
    (loras / "old-3-published.safetensors").write_bytes(b"kept")
    JobDir(comfy.base_dir / "user" / "shielddiff" / "jobs" / job_id).write_status(
        "done", pid=None, lora_file="old-3-published.safetensors"
    )
    refused = comfy.request("DELETE", f"/shielddiff/jobs/{job_id}", headers={"Origin": "null"})
    assert refused.status_code == 403
    answer = comfy.request("DELETE", f"/shielddiff/jobs/{job_id}", headers={"Origin": comfy.url})
    assert answer.ok and answer.json() == {"id": job_id, "deleted": True}, answer.text
    assert comfy.get(f"/shielddiff/jobs/{job_id}").status_code == 404
    assert job_id not in [j["id"] for j in comfy.get("/shielddiff/jobs", params={"limit": 1000}).json()["jobs"]]
    assert (loras / "old-3-published.safetensors").read_bytes() == b"kept"
    assert comfy.request("DELETE", "/shielddiff/jobs/20200101-000000-fffabc").status_code == 404
