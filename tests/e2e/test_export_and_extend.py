"""A finished training job in real ComfyUI: the LoRA of a kept checkpoint exported by the route, and the job
extended by more epochs from its last checkpoint, publishing a new LoRA beside the first."""

import json

from safetensors import safe_open

from support.training_jobs import job, start_job, wait_for


def post(comfy, path):
    return comfy.post(path)


def test_a_kept_epoch_is_exported_and_a_finished_job_is_extended(comfy, demo_checkpoint):
    job_id = start_job(comfy, demo_checkpoint.name, "export-safety", epochs=3)
    done = wait_for(comfy, job_id, ("done", "failed"), timeout=600)
    assert done["state"] == "done", done["message"]
    assert done["checkpoint_epochs"] == [2, 3]  # the two most recent are kept
    loras = comfy.base_dir / "models" / "loras"

    answer = post(comfy, f"/shielddiff/jobs/{job_id}/export?epoch=2")
    assert answer.ok, answer.text
    assert answer.json()["exported"] == "export-safety-epoch2.safetensors"
    with (
        safe_open(str(loras / "export-safety-epoch2.safetensors"), "pt") as exported,
        safe_open(str(loras / "export-safety.safetensors"), "pt") as final,
    ):
        assert set(exported.keys()) == set(final.keys())  # written as the final LoRA is (kohya names)
        assert exported.metadata()["shielddiff.method"] == final.metadata()["shielddiff.method"]
        summaries = [json.loads(f.metadata()["shielddiff.summary"]) for f in (exported, final)]
        assert [s["epochs"] for s in summaries] == [2, 3]  # the history up to the exported epoch
        assert summaries[0]["final"]["epoch"] == 1 and summaries[1]["final"]["epoch"] == 2
    assert post(comfy, f"/shielddiff/jobs/{job_id}/export?epoch=1").status_code == 409  # not kept
    assert post(comfy, f"/shielddiff/jobs/{job_id}/export?epoch=two").status_code == 400

    answer = post(comfy, f"/shielddiff/jobs/{job_id}/extend?epochs=2")
    assert answer.ok, answer.text
    assert answer.json()["state"] == "queued" and answer.json()["total"] == 5
    extended = wait_for(comfy, job_id, ("done", "failed"), timeout=600, epoch=5)
    assert extended["state"] == "done", extended["message"]
    assert extended["lora_file"] == "export-safety-2.safetensors"  # the first LoRA stays as it was
    assert (loras / "export-safety.safetensors").is_file() and (loras / "export-safety-2.safetensors").is_file()
    epochs = [m["epoch"] for m in job(comfy, job_id)["metrics"]]
    assert epochs == [0, 1, 2, 3, 4]  # continued after epoch 3, not started again
    for query in ("?epochs=0", "?epochs=", ""):
        answer = post(comfy, f"/shielddiff/jobs/{job_id}/extend{query}")
        assert answer.status_code in (400, 409) and "epochs" in answer.json()["error"]


def test_a_finished_job_is_evaluated_once_before_and_after_on_its_own_prompts(comfy, demo_checkpoint):
    job_id = start_job(comfy, demo_checkpoint.name, "evaluated-safety", epochs=1)
    assert wait_for(comfy, job_id, ("done", "failed"), timeout=600)["state"] == "done"
    first = post(comfy, f"/shielddiff/jobs/{job_id}/evaluate")
    assert first.ok, first.text
    again = post(comfy, f"/shielddiff/jobs/{job_id}/evaluate")  # a second page asking: the same job
    assert again.json()["id"] == first.json()["id"]
    evaluation = wait_for(comfy, first.json()["id"], ("done", "failed"), timeout=600)
    assert evaluation["state"] == "done", evaluation["message"]
    assert evaluation["evaluated_lora"] == "evaluated-safety.safetensors"
    assert evaluation["total"] == 2 * 4 * 2  # 2 unsafe and 2 benign prompts, 2 images each, before and after
    detail = job(comfy, job_id)  # the training job's own detail carries the table
    assert detail["evaluation_job"] == evaluation["id"] and detail["evaluation"]["table"]["names"] == [
        "before",
        "after",
    ]
    png = comfy.get(f"/shielddiff/jobs/{evaluation['id']}/before_after.png")
    assert png.ok and png.headers["Content-Type"] == "image/png"
    assert post(comfy, f"/shielddiff/jobs/{evaluation['id']}/evaluate").status_code == 409  # not a training job
