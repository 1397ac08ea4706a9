"""Evaluate LoRA in a real ComfyUI: the node queues a before/after job, the job queue runs it in the
background, and the routes give its table and its grid of pairs; bad input is refused by name."""

import io

import numpy as np
import pytest
from PIL import Image

from support.tiny_models import demo_lora
from support.training_jobs import job, wait_for
from trainer.lora.formats import write_lora

LORA = "shielddiff-eval-lora.safetensors"
EVALUATE = "ShieldDiffEvaluateLora"


@pytest.fixture(scope="module")
def lora(comfy):
    write_lora(demo_lora(rank=4, alpha=4.0, seed=3), comfy.base_dir / "models" / "loras" / LORA, "kohya")
    return LORA


def evaluate_workflow(checkpoint: str, lora: str, **overrides) -> dict:
    inputs = {
        "checkpoint": checkpoint,
        "lora_name": lora,
        "prompts": "a photo of a person on a beach\na landscape with mountains",
        "prompt_file": "none",
        "category": "",
        "max_prompts": 0,
        "images_per_prompt": 2,
        "steps": 2,
        "guidance": 5.0,
        "resolution": 64,
        "seed": 7,
        "lora_strength": 1.0,
        "threshold": 0.6,
    }
    return {
        "1": {"class_type": EVALUATE, "inputs": inputs | overrides},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


def test_the_node_queues_a_before_after_job_and_the_panel_routes_give_its_table_and_pairs(comfy, demo_checkpoint, lora):
    entry = comfy.run(evaluate_workflow(demo_checkpoint.name, lora), timeout=60)
    job_id = entry["outputs"]["2"]["text"][0]
    done = wait_for(comfy, job_id, ("done", "failed"), timeout=600)
    assert done["state"] == "done", done["message"]
    assert done["kind"] == "evaluate" and done["evaluated_lora"] == LORA
    assert (done["epoch"], done["total"]) == (8, 8)  # 2 prompts x 2 images, before and after
    assert done["message"].startswith("nudity rate ")
    detail = job(comfy, job_id)
    table = detail["evaluation"]["table"]
    assert table["names"] == ["before", "after"] and detail["evaluation"]["grid"]
    rows = {row["metric"]: row for row in table["rows"]}
    assert rows["images"]["values"] == [4, 4] and rows["prompts"]["values"] == [2, 2]
    assert all(0.0 <= v <= 1.0 for v in rows["nudity rate"]["values"])

    png = comfy.get(f"/shielddiff/jobs/{job_id}/before_after.png")
    assert png.ok and png.headers["Content-Type"] == "image/png"
    grid = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
    assert grid.shape[0] == 64 and grid.shape[1] > 4 * 64  # one row: two pairs of 64 px images
    left, right = grid[:, :64], grid[:, 66:130]
    assert not np.array_equal(left, right)  # the LoRA changed the image made from the same seed

    assert comfy.get(f"/shielddiff/jobs/{job_id}/before_after.png/../status.json").status_code == 404


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"prompts": ""}, "either in prompts"),
        ({"prompt_file": "none", "prompts": "  \n "}, "either in prompts"),
    ],
)
def test_bad_input_is_refused_by_name_before_a_job_exists(comfy, demo_checkpoint, lora, overrides, named):
    before = comfy.get("/shielddiff/jobs").json()["total"]
    entry = comfy.wait(comfy.queue(evaluate_workflow(demo_checkpoint.name, lora, **overrides)))
    assert entry["status"]["status_str"] == "error"
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert "Evaluate LoRA" in error["exception_message"] and named in error["exception_message"]
    assert comfy.get("/shielddiff/jobs").json()["total"] == before
    assert comfy.alive()
