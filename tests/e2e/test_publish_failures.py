"""A LoRA folder that cannot take the finished LoRA (read-only, or full) in a real ComfyUI: the job
fails with the cause on the panel, keeps its LoRA, and Publish again copies it once the folder can.

As root (CI), the loras folder is covered by a read-only or a 16 KiB tmpfs; as another user, the
read-only case makes the folder read-only with chmod (a full disk needs root to mount a tiny one)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

from support.prerequisites import require
from support.training_jobs import start_job, strict_json, wait_for


@contextlib.contextmanager
def tmpfs(folder, options: str):
    require(os.geteuid() == 0 and shutil.which("mount"), "covering the loras folder with a tiny filesystem needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "shielddiff-test", str(folder)], text=True, capture_output=True
    )
    require(mounted.returncode == 0, f"this machine does not let root mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextlib.contextmanager
def unwritable(folder, kind: str):
    if kind == "full":
        with tmpfs(folder, "size=16k"):
            yield "No space left on device"
    elif os.geteuid() == 0:
        with tmpfs(folder, "ro,size=16k"):
            yield "Read-only file system"
    else:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield "Permission denied"
        finally:
            folder.chmod(mode)


@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_a_lora_folder_that_cannot_take_the_lora_fails_the_job_and_publish_retries(comfy, demo_checkpoint, kind):
    loras = comfy.base_dir / "models" / "loras"
    name = f"unpublished-{kind}"
    with unwritable(loras, kind) as cause:
        job_id = start_job(comfy, demo_checkpoint.name, name, epochs=1)
        failed = wait_for(comfy, job_id, ("done", "failed", "cancelled"), timeout=300)
        assert failed["state"] == "failed", failed
        assert cause in failed["message"] and "kept in the job folder" in failed["message"], failed["message"]
        assert failed["publishable"] and failed["resumable"]
        assert (comfy.base_dir / "user" / "shielddiff" / "jobs" / job_id / "lora.safetensors").is_file()
        refused = comfy.post(f"/shielddiff/jobs/{job_id}/publish")  # the folder still cannot take it
        assert refused.ok and strict_json(refused)["state"] == "failed"
    answer = comfy.post(f"/shielddiff/jobs/{job_id}/publish")
    assert answer.ok, answer.text
    done = strict_json(answer)
    assert done["state"] == "done" and done["lora_file"] == f"{name}.safetensors" and not done["publishable"]
    assert (loras / f"{name}.safetensors").is_file()
    assert comfy.post(f"/shielddiff/jobs/{job_id}/publish").status_code == 409  # published once
