"""Helpers for tests that start training jobs in a real ComfyUI: the train node's workflow,
the job routes, and waiting for a job's state."""

from __future__ import annotations

import json
import time

from support.comfy_harness import ComfyServer

NO_CLIP = "none (put weights in models/shielddiff_clip)"


RL_SETTINGS = {
    "unsafe_prompts": "a nude woman on a beach\nnaked man in a forest",
    "benign_prompts": "a woman on a beach\na cat on a sofa",
    "unsafe_file": "none",
    "benign_file": "none",
    "w_clip": 2.5,
    "w_nude": 1.0,
    "clip_weights": NO_CLIP,
    "clip_architecture": "ViT-B-32",
    "sample_batch_size": 2,
}
ERASE_SETTINGS = {
    "erase_concept": "nudity\nnaked person",
    "erase_alternative": "a person wearing clothes",
    "erase_eta": 1.0,
    "erase_lambda": 1.0,
}
SHARED = {
    "epochs": 3,
    "batches_per_epoch": 1,
    "train_batch_size": 2,
    "steps": 2,
    "resolution": 64,
    "lora_rank": 4,
    "learning_rate": 0.001,
    "seed": 0,
}
SETTINGS_NODES = {
    "ShieldDiff RL": ("ShieldDiffRLSettings", RL_SETTINGS),
    "All-but-One erasure": ("ShieldDiffAllButOneSettings", ERASE_SETTINGS),
}


def train_workflow(checkpoint: str, lora_name: str, method: str = "ShieldDiff RL", **overrides) -> dict:
    """An API-format workflow: a method's settings node feeding Train Safety LoRA, sized for the demo
    checkpoint on a CPU. Overrides go to the node that has the input."""
    node, defaults = SETTINGS_NODES[method]
    settings = {k: overrides.pop(k, v) for k, v in defaults.items()}
    unknown = set(overrides) - set(SHARED) - {"checkpoint"}
    assert not unknown, f"no input {sorted(unknown)} on Train Safety LoRA or the {method} settings node"
    inputs = {"checkpoint": checkpoint, "settings": ["9", 0], **SHARED, "lora_name": lora_name} | overrides
    return {
        "1": {"class_type": "ShieldDiffTrainSafetyLora", "inputs": inputs},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "9": {"class_type": node, "inputs": settings},
    }


def start_job(comfy: ComfyServer, checkpoint: str, lora_name: str, **overrides) -> str:
    entry = comfy.run(train_workflow(checkpoint, lora_name, **overrides), timeout=60)
    return entry["outputs"]["2"]["text"][0]


def strict_json(response) -> dict:
    """The body parsed with NaN and infinity refused, as a browser's JSON.parse does."""
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return json.loads(response.text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} in JSON")))


def job(comfy: ComfyServer, job_id: str) -> dict:
    response = comfy.get(f"/shielddiff/jobs/{job_id}")
    assert response.ok, response.text
    return strict_json(response)


def wait_for(comfy: ComfyServer, job_id: str, states, timeout: float = 300, epoch: int | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = job(comfy, job_id)
        if found["state"] in states and (epoch is None or found["epoch"] >= epoch):
            return found
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} is {job(comfy, job_id)} after {timeout:.0f} s:\n{comfy.log_tail()}")


def status_file(comfy: ComfyServer, job_id: str) -> dict:
    path = comfy.base_dir / "user" / "shielddiff" / "jobs" / job_id / "status.json"
    return json.loads(path.read_text())


def trainer_pid(comfy: ComfyServer, job_id: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = status_file(comfy, job_id)
        if status.get("state") == "running" and status.get("pid"):
            return int(status["pid"])
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} has no running trainer: {status_file(comfy, job_id)}")
