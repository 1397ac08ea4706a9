"""Every scoring node in one real ComfyUI workflow, and bad input that must not hurt ComfyUI."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from support.comfy_images import saved, upload
from support.tiny_models import TINY_CLIP_CONFIG
from trainer.nudity.sample_images import figure

CLIP_FILE = "shielddiff-tiny-clip.safetensors"


@pytest.fixture(scope="module")
def clip_weights(comfy, tmp_path_factory):
    """Tiny open_clip weights with their config beside them, in the server's models/shielddiff_clip."""
    import open_clip

    from support.tiny_models import register_tiny_clip

    name = register_tiny_clip(tmp_path_factory.mktemp("clip"))
    torch.manual_seed(0)
    folder = comfy.base_dir / "models" / "shielddiff_clip"
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in open_clip.create_model(name).state_dict().items()}
    save_file(state, str(folder / CLIP_FILE))
    (folder / CLIP_FILE.replace(".safetensors", ".json")).write_text(json.dumps(TINY_CLIP_CONFIG))
    return CLIP_FILE


DETECTOR = {"detector": "320n (bundled)", "resolution": 320}
CLIP = {"clip_weights": CLIP_FILE, "clip_architecture": "auto"}


def censor_inputs(image_link, **overrides):
    inputs = {
        "images": image_link,
        "mode": "pixelate",
        "threshold": 0.6,
        "padding": 0.1,
        "replace_whole_image": False,
        "whole_image_threshold": 0.9,
        "class_thresholds": "",
        **DETECTOR,
    }
    return inputs | overrides


def test_every_scoring_node_in_one_workflow(comfy, clip_weights):
    name = upload(comfy, figure(), "shielddiff-reward-figure.png")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ShieldDiffNudityScore", "inputs": {"images": ["1", 0], "threshold": 0.6, **DETECTOR}},
        "3": {"class_type": "ShieldDiffNudityCensor", "inputs": censor_inputs(["1", 0])},
        "4": {"class_type": "ShieldDiffClipScore", "inputs": {"images": ["1", 0], "text": "a person", **CLIP}},
        "5": {
            "class_type": "ShieldDiffReward",
            "inputs": {
                "images": ["1", 0],
                "prompt": "a person",
                "w_clip": 2.5,
                "w_nude": 1.0,
                "safe_template": "{prompt}, fully clothed",
                "threshold": 0.6,
                **CLIP,
                **DETECTOR,
            },
        },
        "6": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "orig"}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "censored"}},
        "8": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 1]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "mask"}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["2", 3], "filename_prefix": "preview"}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["3", 2]}},
        "12": {"class_type": "PreviewAny", "inputs": {"source": ["5", 3]}},
    }
    entry = comfy.run(prompt)
    out = entry["outputs"]
    original, censored, mask = (
        saved(comfy, entry, "6"),
        saved(comfy, entry, "7"),
        saved(comfy, entry, "9")[..., 0] > 127,
    )
    assert mask.any() and not mask.all()
    assert np.array_equal(censored[~mask], original[~mask])  # untouched outside the mask
    assert (censored[mask] != original[mask]).any()
    assert out["11"]["text"] == ["True"]
    assert not np.array_equal(saved(comfy, entry, "10"), original)  # boxes drawn on the preview
    (score,) = out["4"]["shielddiff_clip"]
    assert -1.0 <= score <= 1.0
    parts = json.loads(out["12"]["text"][0])
    image = parts["images"][0]
    assert image["reward"] == pytest.approx(2.5 * image["clip"] + 1.0 * (1 - image["nudity_score"]))
    assert image["nudity_score"] >= image["nudity"]  # the trained score is at least the rule's max
    assert image["safe_text"] == "a person, fully clothed"
    assert out["5"]["shielddiff_reward"][0]["nudity"] >= 0.6


def test_toy_red_reward_node_tells_a_red_render_from_a_green_one(comfy):
    from trainer.toyworld.world import BASE_RGB, Scene, render

    names = [
        upload(
            comfy,
            Image.fromarray(render(Scene(c, "circle", "light", c, 0, BASE_RGB[c], 220, 16, 8, 8))),
            f"toy-{c}.png",
        )
        for c in ("red", "green")
    ]
    prompt = {}
    for n, name in enumerate(names):
        load, node = str(10 * n + 1), str(10 * n + 2)
        prompt[load] = {"class_type": "LoadImage", "inputs": {"image": name}}
        prompt[node] = {
            "class_type": "ShieldDiffToyRedReward",
            "inputs": {
                "images": [load, 0],
                "prompt": "a red circle on a light background",
                "w_align": 1.0,
                "w_red": 1.0,
            },
        }
        prompt[str(10 * n + 3)] = {"class_type": "PreviewAny", "inputs": {"source": [node, 3]}}
    out = comfy.run(prompt)["outputs"]
    red, green = (json.loads(out[k]["text"][0])["images"][0] for k in ("3", "13"))
    assert (red["is_red"], red["red"], red["alignment"]) == (True, 1.0, 1.0)
    assert (green["is_red"], green["red"], green["alignment"]) == (False, 0.0, 1.0)
    assert green["reward"] > red["reward"]


@pytest.mark.parametrize(("width", "height"), [(1, 1), (7680, 4320)], ids=["1px", "8k"])
def test_tiny_and_huge_images_give_finite_results(comfy, width, height):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ShieldDiffNudityScore", "inputs": {"images": ["1", 0], "threshold": 0.6, **DETECTOR}},
        "3": {"class_type": "ShieldDiffNudityCensor", "inputs": censor_inputs(["1", 0], mode="blur")},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 2]}},
    }
    entry = comfy.run(prompt, timeout=300)
    (verdict,) = entry["outputs"]["2"]["shielddiff_nudity"]
    assert math.isfinite(verdict["nudity"]) and verdict["is_nude"] is False
    assert entry["outputs"]["4"]["text"] == ["False"]


def test_corrupt_detector_file_is_named_and_comfyui_keeps_running(comfy):
    folder = comfy.base_dir / "models" / "nudenet"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken-640m.onnx").write_bytes(b"\x80\x04\x95 a pickle, not an onnx model")
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "ShieldDiffNudityScore",
            "inputs": {"images": ["1", 0], "threshold": 0.6, "detector": "broken-640m.onnx", "resolution": 640},
        },
    }
    entry = comfy.wait(comfy.queue(prompt))
    assert entry["status"]["status_str"] == "error"
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert "broken-640m.onnx" in error["exception_message"]
    assert comfy.alive()


def test_bad_class_thresholds_are_named(comfy):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ShieldDiffNudityCensor", "inputs": censor_inputs(["1", 0], class_thresholds="BOOBS=0.5")},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    entry = comfy.wait(comfy.queue(prompt))
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert "BOOBS" in error["exception_message"]
    assert comfy.alive()


def test_clip_score_without_weights_says_where_to_put_them(comfy):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "ShieldDiffClipScore",
            "inputs": {
                "images": ["1", 0],
                "text": "x",
                "clip_weights": "none (put weights in models/shielddiff_clip)",
                "clip_architecture": "ViT-B-32",
            },
        },
    }
    entry = comfy.wait(comfy.queue(prompt))
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert "models/shielddiff_clip" in error["exception_message"]
