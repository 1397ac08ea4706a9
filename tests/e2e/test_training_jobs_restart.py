"""A ComfyUI restart in the middle of a training job: the trainer stops with ComfyUI, leaving a
checkpoint; the restarted ComfyUI lists the job from its folder, and Resume finishes it."""

from __future__ import annotations

import os
import time

from support.comfy_harness import ComfyServer
from support.training_jobs import start_job, status_file, strict_json, trainer_pid, wait_for


def test_a_job_survives_a_comfyui_restart_and_resumes(comfyui_dir, demo_checkpoint, tmp_path):
    base = tmp_path / "base"
    first = ComfyServer(comfyui_dir, base)
    first.prepare(checkpoint=demo_checkpoint)
    first.start()
    try:
        job_id = start_job(first, demo_checkpoint.name, "restart-safety", epochs=30)
        pid = trainer_pid(first, job_id)
        wait_for(first, job_id, ("running",), epoch=1, timeout=120)
    finally:
        first.stop()
    stopped = time.monotonic()
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() - stopped < 300, "the trainer outlived ComfyUI by 300 s (hung)"
        time.sleep(0.2)
    assert status_file(first, job_id)["state"] == "cancelled"  # it checkpointed on its way out

    with ComfyServer(comfyui_dir, base) as second:
        listed = strict_json(second.get("/shielddiff/jobs"))["jobs"]
        assert [(j["id"], j["state"], j["has_checkpoint"]) for j in listed] == [(job_id, "cancelled", True)]
        config = base / "user" / "shielddiff" / "jobs" / job_id / "config.toml"
        done_before = listed[0]["epoch"]
        config.write_text(config.read_text().replace("epochs = 30", f"epochs = {done_before + 1}"))
        assert second.post(f"/shielddiff/jobs/{job_id}/resume").ok
        done = wait_for(second, job_id, ("done", "failed"), timeout=300)
        assert done["state"] == "done", done
        assert (base / "models" / "loras" / "restart-safety.safetensors").is_file()
