"""All-but-One in a real ComfyUI: Purify Image runs in a workflow (and at strength 0 gives exactly
ComfyUI's own VAE round trip), and an erasure job goes from the training node to "done" with a LoRA
that Load ShieldDiff LoRA applies in full."""

from __future__ import annotations

import numpy as np
from PIL import Image

from support.tiny_models import demo_lora
from support.training_jobs import start_job, train_workflow, wait_for
from trainer.lora.formats import write_lora


def purify_workflow(
    checkpoint: str,
    lora: str,
    strength: float,
    prefix: str,
    side: int = 64,
    guidance: float = 1.0,
    lora_strength: float = 1.0,
    **extra,
) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": side, "height": side, "batch_size": 1, "color": 0xC08040},
        },
        "3": {
            "class_type": "ShieldDiffPurifyImage",
            "inputs": {
                "image": ["2", 0],
                "model": ["1", 0],
                "clip": ["1", 1],
                "vae": ["1", 2],
                "lora_name": lora,
                "prompt": "a nude woman on a beach",
                "steps": 4,
                "strength": strength,
                "guidance": guidance,
                "lora_strength": lora_strength,
                **extra,
            },
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"{prefix}-purified"}},
        "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"{prefix}-vae"}},
    }


def saved(comfy, entry, node) -> np.ndarray:
    image = entry["outputs"][node]["images"][0]
    return np.asarray(Image.open(comfy.base_dir / "output" / image["subfolder"] / image["filename"]))


def test_purify_image_runs_and_strength_zero_is_the_vae_round_trip(comfy, demo_checkpoint):
    write_lora(demo_lora(seed=3), comfy.base_dir / "models" / "loras" / "purify-test.safetensors", "kohya")
    still = comfy.run(purify_workflow(demo_checkpoint.name, "purify-test.safetensors", 0.0, "s0"), timeout=300)
    assert np.array_equal(saved(comfy, still, "4"), saved(comfy, still, "7"))
    moved = comfy.run(purify_workflow(demo_checkpoint.name, "purify-test.safetensors", 0.75, "s75"), timeout=300)
    purified = saved(comfy, moved, "4")
    assert purified.shape == (64, 64, 3)
    assert not np.array_equal(purified, saved(comfy, moved, "7"))  # inverted and regenerated: it changed
    # the LoRA strength and the inversion guidance reach the regeneration: each changes the result
    for kwargs in ({"lora_strength": 0.0}, {"guidance": 3.0}):
        other = comfy.run(purify_workflow(demo_checkpoint.name, "purify-test.safetensors", 0.75, "o", **kwargs), 300)
        assert not np.array_equal(saved(comfy, other, "4"), purified), kwargs


def purify_error(comfy, workflow) -> str:
    entry = comfy.wait(comfy.queue(workflow), timeout=300)
    assert entry["status"]["status_str"] == "error"
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    return error["exception_message"]


def test_purify_refuses_images_too_small_for_the_vae_and_above_the_size_limit(comfy, demo_checkpoint):
    write_lora(demo_lora(seed=3), comfy.base_dir / "models" / "loras" / "purify-size.safetensors", "kohya")
    small = purify_error(comfy, purify_workflow(demo_checkpoint.name, "purify-size.safetensors", 0.5, "tiny", side=4))
    assert "the image is 4x4 px; this VAE and model need at least 64x64 px" in small
    limited = purify_workflow(demo_checkpoint.name, "purify-size.safetensors", 0.5, "big", max_megapixels=0.002)
    assert "above max_megapixels 0.002: raise max_megapixels" in purify_error(comfy, limited)
    raised = purify_workflow(demo_checkpoint.name, "purify-size.safetensors", 0.0, "raised", max_megapixels=0.01)
    assert saved(comfy, comfy.run(raised, timeout=300), "4").shape == (64, 64, 3)
    assert comfy.alive()


def test_an_erasure_job_from_the_training_node_finishes_and_its_lora_loads(comfy, demo_checkpoint):
    job_id = start_job(
        comfy,
        demo_checkpoint.name,
        "erased-nudity",
        method="All-but-One erasure",
        epochs=2,
        batches_per_epoch=2,
        train_batch_size=1,
        steps=2,
    )
    done = wait_for(comfy, job_id, ("done", "failed", "cancelled"), timeout=400)
    assert done["state"] == "done", done
    assert done["method"] == "All-but-One erasure"
    assert [m["epoch"] for m in done["metrics"]] == [0, 1]
    assert all(m["loss_erase"] >= 0 and m["loss_uncond"] >= 0 for m in done["metrics"])
    loaded = comfy.run(
        {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": demo_checkpoint.name}},
            "2": {
                "class_type": "ShieldDiffLoraLoader",
                "inputs": {
                    "model": ["1", 0],
                    "clip": ["1", 1],
                    "lora_name": "erased-nudity.safetensors",
                    "strength_model": 1.0,
                    "strength_clip": 1.0,
                },
            },
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
        },
        timeout=120,
    )
    info = loaded["outputs"]["3"]["text"][0]
    assert '"matched_modules": 32' in info and '"method": "all-but-one"' in info


def test_an_erasure_job_without_a_concept_is_refused(comfy, demo_checkpoint):
    workflow = train_workflow(demo_checkpoint.name, "never", method="All-but-One erasure", erase_concept="\n# none\n")
    response = comfy.post("/prompt", json={"prompt": workflow, "client_id": comfy.client_id})
    entry = comfy.wait(response.json()["prompt_id"], timeout=60)
    assert "erase_concept is empty" in str(entry["status"]["messages"])
    assert not (comfy.base_dir / "models" / "loras" / "never.safetensors").exists()
