"""The pack inside a real ComfyUI server: loading, the Nudity Score node, the demo checkpoint."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from support.comfy_images import upload
from trainer.nudity.sample_images import figure

NUDITY = "ShieldDiffNudityScore"


def score_workflow(image_node: dict) -> dict:
    """image -> Nudity Score -> PreviewImage, with the score outputs shown by PreviewAny."""
    return {
        "1": image_node,
        "2": {"class_type": NUDITY, "inputs": {"images": ["1", 0], "threshold": 0.6}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }


def test_comfyui_lists_the_pack_nodes_and_serves_its_frontend(comfy):
    info = comfy.get("/object_info").json()
    ours = {k: v for k, v in info.items() if k.startswith("ShieldDiff")}
    assert set(ours) == {
        "ShieldDiffNudityScore",
        "ShieldDiffNudityCensor",
        "ShieldDiffNudityFilter",
        "ShieldDiffClipScore",
        "ShieldDiffReward",
        "ShieldDiffToyRedReward",
        "ShieldDiffLoraLoader",
        "ShieldDiffTrainSafetyLora",
        "ShieldDiffRLSettings",
        "ShieldDiffAllButOneSettings",
        "ShieldDiffPurifyImage",
        "ShieldDiffEvaluateLora",
    }
    assert all(node["category"].startswith("ShieldDiff/") for node in ours.values())
    assert ours[NUDITY]["output_name"] == ["nudity", "is_nude", "detections", "preview", "nude_flags", "images"]
    assert ours[NUDITY]["output"] == ["FLOAT", "BOOLEAN", "STRING", "IMAGE", "BOOLEAN", "IMAGE"]
    assert ours[NUDITY]["output_is_list"] == [False, False, False, False, True, False]
    assert ours["ShieldDiffNudityCensor"]["output"] == ["IMAGE", "MASK", "BOOLEAN"]
    extensions = comfy.get("/extensions").json()
    assert any(e.endswith("comfyui-shielddiff/js/shielddiff.js") for e in extensions), extensions
    assert any(e.endswith("comfyui-shielddiff/js/shielddiff_train.js") for e in extensions), extensions
    templates = comfy.get("/api/workflow_templates").json()
    assert templates.get("comfyui-shielddiff"), templates


def test_nudity_score_reads_back_from_history(comfy):
    name = upload(comfy, figure(), "shielddiff-figure.png")
    entry = comfy.run(score_workflow({"class_type": "LoadImage", "inputs": {"image": name}}))
    outputs = entry["outputs"]
    (verdict,) = outputs["2"]["shielddiff_nudity"]
    assert verdict["is_nude"] is True and verdict["nudity"] >= 0.6
    assert "0.6" in outputs["2"]["shielddiff_rule"][0]
    assert outputs["4"]["text"] == ["True"]  # the BOOLEAN output, as a downstream node sees it
    detections = json.loads(outputs["5"]["text"][0])
    assert detections["images"][0]["detections"][0]["label"] == "FEMALE_BREAST_EXPOSED"


def test_empty_image_is_safe_and_websocket_carries_the_verdict(comfy):
    empty = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 3, "color": 0}}
    with comfy.events() as events:
        prompt_id = comfy.queue(score_workflow(empty))
        entry = comfy.wait(prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert [v["is_nude"] for v in entry["outputs"]["2"]["shielddiff_nudity"]] == [False] * 3
    assert entry["outputs"]["4"]["text"] == ["False"]
    executed = [m["data"] for m in events.of_type("executed") if m["data"].get("prompt_id") == prompt_id]
    ours = [d for d in executed if d["node"] == "2"]
    assert ours and len(ours[0]["output"]["shielddiff_nudity"]) == 3


def test_txt2img_with_the_demo_checkpoint_then_nudity_score(comfy, demo_checkpoint):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": demo_checkpoint.name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a portrait photo", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": 7,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": NUDITY, "inputs": {"images": ["6", 0], "threshold": 0.6}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "shielddiff-e2e"}},
    }
    entry = comfy.run(prompt, timeout=300)
    log = comfy.log()
    for complaint in ("unet missing", "clip missing", "vae missing", "Could not detect model type", "left over keys"):
        assert complaint not in log, f"ComfyUI logged '{complaint}' loading the demo checkpoint"
    verdicts = entry["outputs"]["7"]["shielddiff_nudity"]
    assert len(verdicts) == 2 and all(math.isfinite(v["nudity"]) for v in verdicts)
    saved = entry["outputs"]["8"]["images"]
    pixels = np.asarray(Image.open(comfy.base_dir / "output" / saved[0]["subfolder"] / saved[0]["filename"]))
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0  # an image, not NaN turned to a flat colour


@pytest.mark.parametrize("threshold", [-1.0, 2.0])
def test_out_of_range_threshold_is_refused_by_name_and_comfyui_keeps_running(comfy, threshold):
    bad = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": NUDITY, "inputs": {"images": ["1", 0], "threshold": threshold}},
    }
    r = comfy.post("/prompt", json={"prompt": bad})
    assert r.status_code == 400
    errors = r.json()["node_errors"]["2"]["errors"]
    assert errors[0]["details"] == "threshold" and str(threshold) in errors[0]["message"]
    assert comfy.alive()
