"""The same Train Safety LoRA graph queued twice: one job, and each run reports that job as it is
now, whatever ComfyUI's cache keeps (0.3.75 caches outputs; 0.30's cache follows RAM pressure)."""

from __future__ import annotations

from support.training_jobs import job, train_workflow, wait_for


def jobs_of(comfy, lora_name: str) -> list[str]:
    return [j["id"] for j in comfy.get("/shielddiff/jobs").json()["jobs"] if j["lora_name"] == lora_name]


def node_text(entry: dict) -> str:
    return entry["outputs"]["1"]["shielddiff_job"][0]


def test_the_same_graph_queued_twice_trains_once_and_reports_that_job_as_it_is(comfy, demo_checkpoint):
    graph = train_workflow(demo_checkpoint.name, "queued-twice", epochs=40)
    first = comfy.run(graph, timeout=60)
    job_id = first["outputs"]["2"]["text"][0]
    assert node_text(first).startswith(f"job {job_id} queued")

    again = comfy.run(graph, timeout=60)  # the user presses Queue again without changing anything
    assert again["outputs"]["2"]["text"][0] == job_id
    assert node_text(again) in [
        f"job {job_id} (the same request, already {state}): loras/queued-twice.safetensors"
        for state in ("queued", "running")
    ]
    assert jobs_of(comfy, "queued-twice") == [job_id]

    # Cancelled: queueing the same graph once more reports the cancelled job, and starts nothing
    # (Resume in the panel continues it).
    assert comfy.post(f"/shielddiff/jobs/{job_id}/cancel").ok
    wait_for(comfy, job_id, ("cancelled",), timeout=60)
    third = comfy.run(graph, timeout=60)
    assert node_text(third) == (f"job {job_id} (the same request, already cancelled): loras/queued-twice.safetensors")
    assert job(comfy, job_id)["state"] == "cancelled"
    assert jobs_of(comfy, "queued-twice") == [job_id]

    # Changed settings under the same name: refused, no second job.
    changed = comfy.wait(comfy.queue(train_workflow(demo_checkpoint.name, "queued-twice", epochs=40, seed=7)))
    assert changed["status"]["status_str"] == "error"
    assert "'queued-twice' already exists" in str(changed["status"]["messages"])
    assert jobs_of(comfy, "queued-twice") == [job_id]


def test_two_identical_train_nodes_in_one_graph_make_one_job(comfy, demo_checkpoint):
    single = train_workflow(demo_checkpoint.name, "one-of-two", epochs=40)
    graph = dict(single, **{"3": single["1"], "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}})
    entry = comfy.run(graph, timeout=60)
    ids = {entry["outputs"]["2"]["text"][0], entry["outputs"]["4"]["text"][0]}
    assert len(ids) == 1 and jobs_of(comfy, "one-of-two") == list(ids)
    assert comfy.post(f"/shielddiff/jobs/{ids.pop()}/cancel").ok  # leave the queue to the other tests
