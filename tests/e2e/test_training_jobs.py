"""Train Safety LoRA in a real ComfyUI: the node returns at once, ComfyUI keeps working, events
arrive for every epoch, the LoRA lands in models/loras and loads; cancel, resume, a killed
trainer; routes that never serve a file outside the jobs folder; bad input refused up front."""

from __future__ import annotations

import os
import signal
import time

import pytest

from support.training_jobs import job, start_job, status_file, strict_json, train_workflow, trainer_pid, wait_for


def txt2img(checkpoint: str, seed: int = 0) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat on a sofa", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": seed,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def jobs_dirs(comfy) -> set[str]:
    root = comfy.base_dir / "user" / "shielddiff" / "jobs"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_training_runs_in_the_background_and_its_lora_loads_in_a_following_workflow(comfy, demo_checkpoint):
    with comfy.events() as events:
        entry = comfy.run(train_workflow(demo_checkpoint.name, "bg-safety", epochs=4), timeout=60)
        job_id = entry["outputs"]["2"]["text"][0]
        returned = len(events.messages)  # the node's output is in: nothing after this was waited for
        assert job(comfy, job_id)["state"] in ("queued", "starting", "running")
        wait_for(comfy, job_id, ("running",), timeout=60)
        comfy.run(txt2img(demo_checkpoint.name), timeout=120)
        assert job(comfy, job_id)["state"] == "running"  # the txt2img ran while the job trained
        done = wait_for(comfy, job_id, ("done", "failed", "cancelled"), timeout=300)
        assert done["state"] == "done", done
        time.sleep(1)  # the last events are on their way
    ours = [m["data"] for m in events.messages if m["type"].startswith("shielddiff.") and m["data"]["id"] == job_id]
    before = [m["data"] for m in events.messages[:returned] if m["type"].startswith("shielddiff.")]
    assert not any(d.get("id") == job_id and d.get("epoch", 0) >= 1 for d in before)  # returned before epoch 1
    assert {d["epoch"] for d in ours if d["state"] == "running"} >= {1, 2, 3}
    assert ours[-1]["state"] == "done" and ours[-1]["total"] == 4
    assert all(d["eta_s"] is None or d["eta_s"] >= 0 for d in ours)
    assert any(m["type"] == "shielddiff.progress" and m["data"]["latest"] for m in events.messages)

    assert done["lora_file"] == "bg-safety.safetensors"
    assert (comfy.base_dir / "models" / "loras" / "bg-safety.safetensors").is_file()
    assert [m["epoch"] for m in done["metrics"]] == [0, 1, 2, 3]
    assert all(0 <= m["nudity_rate"] <= 1 for m in done["metrics"])
    listed = comfy.get("/object_info/ShieldDiffLoraLoader").json()["ShieldDiffLoraLoader"]["input"]["required"]
    assert "bg-safety.safetensors" in str(listed["lora_name"])  # no restart needed
    loaded = comfy.run(
        {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": demo_checkpoint.name}},
            "2": {
                "class_type": "ShieldDiffLoraLoader",
                "inputs": {
                    "model": ["1", 0],
                    "clip": ["1", 1],
                    "lora_name": "bg-safety.safetensors",
                    "strength_model": 1.0,
                    "strength_clip": 1.0,
                },
            },
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
        },
        timeout=120,
    )
    assert '"matched_modules": 32' in loaded["outputs"]["3"]["text"][0]
    sample = done["samples"][0]["name"]
    image = comfy.get(f"/shielddiff/jobs/{job_id}/samples/{sample}")
    assert image.ok and image.content[:4] == b"\x89PNG"


def test_cancel_stops_the_trainer_keeps_a_checkpoint_and_resume_finishes(comfy, demo_checkpoint):
    job_id = start_job(comfy, demo_checkpoint.name, "cancel-then-resume", epochs=30)
    pid = trainer_pid(comfy, job_id)
    at_cancel = wait_for(comfy, job_id, ("running",), epoch=1, timeout=120)["epoch"]
    answer = comfy.post(f"/shielddiff/jobs/{job_id}/cancel")
    assert answer.ok, answer.text
    sent = time.monotonic()
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() - sent < 300, "the trainer still runs 300 s after cancel (hung)"
        time.sleep(0.1)
    cancelled = wait_for(comfy, job_id, ("cancelled",), timeout=30)
    assert cancelled["epoch"] <= at_cancel + 1  # it stopped at the next safe point, not after the 30 epochs
    assert cancelled["has_checkpoint"] and cancelled["resumable"]
    assert not (comfy.base_dir / "models" / "loras" / "cancel-then-resume.safetensors").exists()
    assert comfy.post(f"/shielddiff/jobs/{job_id}/cancel").status_code == 409
    config = comfy.base_dir / "user" / "shielddiff" / "jobs" / job_id / "config.toml"
    config.write_text(config.read_text().replace("epochs = 30", f"epochs = {cancelled['epoch'] + 1}"))  # finish soon
    answer = comfy.post(f"/shielddiff/jobs/{job_id}/resume")
    assert answer.ok and strict_json(answer)["state"] == "queued", answer.text
    done = wait_for(comfy, job_id, ("done", "failed"), timeout=300)
    assert done["state"] == "done", done
    assert (comfy.base_dir / "models" / "loras" / "cancel-then-resume.safetensors").is_file()
    assert any(f"resuming after epoch {cancelled['epoch']}" in line for line in done["log_tail"])


def test_a_trainer_killed_with_sigkill_fails_the_job_and_comfyui_answers(comfy, demo_checkpoint):
    job_id = start_job(comfy, demo_checkpoint.name, "killed", epochs=50)
    pid = trainer_pid(comfy, job_id)
    os.kill(pid, signal.SIGKILL)
    failed = wait_for(comfy, job_id, ("failed",), timeout=30)
    assert "killed by SIGKILL" in failed["message"]
    assert comfy.alive()
    listed = strict_json(comfy.get("/shielddiff/jobs"))["jobs"]
    assert any(j["id"] == job_id and j["state"] == "failed" for j in listed)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/shielddiff/jobs/..%2F..%2Fcomfy.settings.json", "get"),
        ("/shielddiff/jobs/20260101-000000-abcdef", "get"),
        ("/shielddiff/jobs/20260101-000000-abcdef/cancel", "post"),
        ("/shielddiff/jobs/..%2Fjobs/resume", "post"),
    ],
)
def test_routes_refuse_ids_that_name_no_job(comfy, path, method):
    answer = getattr(comfy, method)(path)
    assert answer.status_code == 404, answer.text
    assert "no job" in strict_json(answer)["error"]


def test_sample_route_serves_only_sample_images(comfy, demo_checkpoint):
    jobs = strict_json(comfy.get("/shielddiff/jobs"))["jobs"]
    job_id = jobs[0]["id"] if jobs else start_job(comfy, demo_checkpoint.name, "for-samples", epochs=1)
    for name in ("..%2Fstatus.json", "..%2F..%2F..%2Fcomfy.settings.json", "log.txt", "epoch-0000-00.png%2F.."):
        answer = comfy.get(f"/shielddiff/jobs/{job_id}/samples/{name}")
        assert answer.status_code == 404, (name, answer.status_code)


BAD = [
    ({"unsafe_prompts": "  \n# only a comment\n"}, "unsafe prompts are empty"),
    ({"benign_prompts": ""}, "benign prompts are empty"),
    ({"checkpoint": "no-such-model.safetensors"}, "no-such-model.safetensors"),
    ({"lora_name": "../escape"}, "without folders or path separators"),
    ({"lora_name": "sub/dir"}, "without folders or path separators"),
    ({"lora_name": "nul"}, "reserved on Windows"),
    ({"lora_name": "COM1.safetensors"}, "reserved on Windows"),
    ({"lora_name": "lpt9.backup"}, "reserved on Windows"),
    ({"epochs": 0}, "epochs"),
    ({"sample_batch_size": 100000}, "sample_batch_size"),
    ({"train_batch_size": 3}, "train_batch_size"),
]


@pytest.mark.parametrize(("overrides", "named"), BAD, ids=[b[1].split()[0] for b in BAD])
def test_bad_input_is_refused_before_any_job_starts(comfy, demo_checkpoint, overrides, named):
    before = jobs_dirs(comfy)
    overrides = dict(overrides)
    checkpoint, name = overrides.pop("checkpoint", demo_checkpoint.name), overrides.pop("lora_name", "never-written")
    workflow = train_workflow(checkpoint, name, **overrides)
    response = comfy.post("/prompt", json={"prompt": workflow, "client_id": comfy.client_id})
    if response.ok:  # accepted by /prompt: the node itself must refuse
        entry = comfy.wait(response.json()["prompt_id"], timeout=60)
        assert entry["status"]["status_str"] == "error"
        message = str(entry["status"]["messages"])
    else:
        message = response.text
    assert named in message, message
    assert jobs_dirs(comfy) == before
    assert comfy.alive()


def test_an_existing_lora_name_is_refused(comfy, demo_checkpoint):
    (comfy.base_dir / "models" / "loras" / "taken.safetensors").write_bytes(b"the user's LoRA")
    before = jobs_dirs(comfy)
    response = comfy.post(
        "/prompt", json={"prompt": train_workflow(demo_checkpoint.name, "taken"), "client_id": comfy.client_id}
    )
    entry = comfy.wait(response.json()["prompt_id"], timeout=60)
    assert "'taken' already exists" in str(entry["status"]["messages"])
    assert jobs_dirs(comfy) == before
    assert (comfy.base_dir / "models" / "loras" / "taken.safetensors").read_bytes() == b"the user's LoRA"


def test_a_cancel_accepted_at_the_end_of_the_last_epoch_publishes_no_lora(comfy, demo_checkpoint):
    """The trainer is frozen (SIGSTOP) right after its last epoch's status, the cancel is accepted,
    then the trainer goes on: the job ends cancelled, resumable, and models/loras holds no LoRA."""
    for attempt in range(3):
        name = f"late-cancel-{attempt}"
        job_id = start_job(comfy, demo_checkpoint.name, name, epochs=1)
        pid = trainer_pid(comfy, job_id)
        while (status := status_file(comfy, job_id)).get("state") == "running" and status.get("epoch") != 1:
            time.sleep(0.005)
        if status.get("state") != "running":
            continue  # the trainer finished between two looks: try again
        os.killpg(pid, signal.SIGSTOP)
        try:
            answer = comfy.post(f"/shielddiff/jobs/{job_id}/cancel")
        finally:
            os.killpg(pid, signal.SIGCONT)
        assert answer.ok, answer.text
        ended = wait_for(comfy, job_id, ("done", "failed", "cancelled"), timeout=300)
        assert ended["state"] == "cancelled", ended
        assert ended["resumable"]
        assert not (comfy.base_dir / "models" / "loras" / f"{name}.safetensors").exists()
        return
    raise AssertionError("three trainers finished before their last epoch's status could be seen")


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1"])
def test_routes_that_change_jobs_refuse_other_origins(comfy, demo_checkpoint, origin):
    """A sandboxed page or file (Origin: null), or a page on another port of this host, which ComfyUI's
    own check lets through, cannot change a job through the user's browser."""
    job_id = start_job(comfy, demo_checkpoint.name, f"origin-{len(origin)}", epochs=200)
    try:
        for action in ("cancel", "resume", "publish"):
            answer = comfy.post(f"/shielddiff/jobs/{job_id}/{action}", headers={"Origin": origin})
            assert answer.status_code == 403, (action, answer.status_code, answer.text)
            assert f"comes from origin {origin!r}" in strict_json(answer)["error"]
        assert job(comfy, job_id)["state"] in ("queued", "running")
    finally:
        own = comfy.post(f"/shielddiff/jobs/{job_id}/cancel", headers={"Origin": comfy.url})  # the panel's request
    assert own.ok, own.text
    assert wait_for(comfy, job_id, ("cancelled",), timeout=120)["state"] == "cancelled"
