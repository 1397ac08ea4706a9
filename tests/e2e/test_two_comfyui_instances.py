"""Two real ComfyUI servers on one base directory (one instance per GPU from one install): a job
queued in either is trained once (one LoRA under its own name, every epoch's metrics once), both list
it, and either can cancel it, whichever of them runs it."""

from __future__ import annotations

import pytest

from support.comfy_harness import ComfyServer
from support.training_jobs import job, start_job, wait_for


@pytest.fixture(scope="module")
def two_servers(comfyui_dir, demo_checkpoint, tmp_path_factory):
    base = tmp_path_factory.mktemp("shared-base")
    first = ComfyServer(comfyui_dir, base)
    first.prepare(checkpoint=demo_checkpoint)
    second = ComfyServer(comfyui_dir, base, name="comfyui-second")
    with first, second:
        yield first, second


@pytest.mark.timeout(1800)
def test_a_job_queued_in_one_of_two_instances_is_trained_once_and_both_can_cancel(two_servers, demo_checkpoint):
    first, second = two_servers
    job_id = start_job(second, demo_checkpoint.name, "shared-safety", epochs=3)
    for server in (first, second):  # both instances list it (the first one's worker may be the one running it)
        assert job_id in [j["id"] for j in server.get("/shielddiff/jobs").json()["jobs"]]
    done = wait_for(first, job_id, ("done", "failed", "cancelled"), timeout=900)
    assert done["state"] == "done", done
    assert [m["epoch"] for m in done["metrics"]] == [0, 1, 2]  # one trainer wrote them
    loras = sorted(p.name for p in (first.base_dir / "models" / "loras").iterdir())
    assert loras == ["shared-safety.safetensors"]  # published once, under its own name
    assert job(second, job_id)["state"] == "done"

    long = start_job(first, demo_checkpoint.name, "shared-long", epochs=60)
    wait_for(second, long, ("running",), timeout=300, epoch=1)
    answers = [s.post(f"/shielddiff/jobs/{long}/cancel", headers={"Origin": s.url}) for s in (first, second)]
    assert all(a.ok for a in answers), [a.text for a in answers]  # the owner stops it; the other asks it to
    cancelled = wait_for(first, long, ("cancelled", "failed", "done"), timeout=600)
    assert cancelled["state"] == "cancelled" and cancelled["resumable"], cancelled
    assert not (first.base_dir / "models" / "loras" / "shared-long.safetensors").exists()
