"""The censor's look, the per-image verdicts, "stop on nudity" and per-image progress, in a real ComfyUI."""

import json

import numpy as np
from PIL import Image

from support.comfy_images import saved, upload
from trainer.nudity.sample_images import figure

DETECTOR = {"detector": "320n (bundled)", "resolution": 320}
SCORE = "ShieldDiffNudityScore"


def censor(image_link, **overrides) -> dict:
    inputs = {
        "images": image_link,
        "mode": "blur",
        "threshold": 0.6,
        "padding": 0.0,
        "replace_whole_image": False,
        "whole_image_threshold": 0.6,
        "class_thresholds": "",
        **DETECTOR,
    }
    return {"class_type": "ShieldDiffNudityCensor", "inputs": inputs | overrides}


def load(name: str) -> dict:
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def save(link, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": link, "filename_prefix": prefix}}


def sticker_png() -> Image.Image:
    """Green, its left half opaque and its right half transparent."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 1], rgba[:, :8, 3] = 255, 255
    return Image.fromarray(rgba, "RGBA")


def test_sticker_feather_and_replacement_in_one_workflow(comfy):
    person = upload(comfy, figure(), "controls-figure.png")
    sticker = upload(comfy, sticker_png(), "controls-sticker.png")
    blue = upload(comfy, Image.new("RGB", (40, 30), (0, 0, 255)), "controls-blue.png")
    prompt = {
        "1": load(person),
        "2": load(sticker),
        "3": load(blue),
        "4": censor(["1", 0], mode="sticker", sticker=["2", 0], sticker_mask=["2", 1]),
        "5": save(["4", 0], "controls-sticker"),
        "6": save(["1", 0], "controls-original"),
        "7": censor(["1", 0], mode="fill", fill_color="#ff0000", shape="ellipse", feather=12.0),
        "8": save(["7", 0], "controls-feather"),
        "9": {"class_type": "MaskToImage", "inputs": {"mask": ["7", 1]}},
        "10": save(["9", 0], "controls-feather-mask"),
        "11": censor(["1", 0], replace_whole_image=True, whole_image_threshold=0.6, replacement=["3", 0]),
        "12": save(["11", 0], "controls-replaced"),
        "13": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 1]}},
        "14": save(["13", 0], "controls-sticker-mask"),
        # an opaque sticker: Load Image gives a 64x64 empty mask for an image without transparency
        "15": censor(["1", 0], mode="sticker", sticker=["3", 0], sticker_mask=["3", 1]),
        "16": save(["15", 0], "controls-opaque-sticker"),
    }
    entry = comfy.run(prompt)
    original = saved(comfy, entry, "6").astype(int)

    stickered, region = saved(comfy, entry, "5").astype(int), saved(comfy, entry, "14")[..., 0] > 127
    green = (stickered == (0, 255, 0)).all(axis=2)
    assert green.sum() > 50 and not green[~region].any()  # the sticker lies only inside the regions
    assert (stickered[region] == original[region]).all(axis=1).mean() > 0.2  # its transparent half shows the image
    assert np.array_equal(stickered[~region], original[~region])

    filled, soft = saved(comfy, entry, "8").astype(int), saved(comfy, entry, "10")[..., 0].astype(int)
    assert (soft == 255).any() and ((soft > 20) & (soft < 235)).sum() > 50  # a hard core and a feathered edge
    assert (filled[soft == 255] == (255, 0, 0)).all()  # the ellipse itself fully red
    assert np.array_equal(filled[soft == 0], original[soft == 0])

    assert (saved(comfy, entry, "12") == (0, 0, 255)).all()
    assert (saved(comfy, entry, "16")[region] == (0, 0, 255)).all()  # replaced whole by the blue image, scaled


def test_nudity_filter_splits_a_batch_and_a_side_with_no_image_runs_nothing(comfy):
    person = figure()
    names = [
        upload(comfy, person, "filter-figure.png"),
        upload(comfy, Image.new("RGB", person.size, (90, 90, 90)), "filter-grey.png"),
    ]
    batch = {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["1", 0]}}  # grey, figure
    prompt = {
        "1": load(names[0]),
        "2": load(names[1]),
        "3": batch,
        "4": {"class_type": "ShieldDiffNudityFilter", "inputs": {"images": ["3", 0], "threshold": 0.6, **DETECTOR}},
        "5": save(["4", 0], "filter-safe"),
        "6": save(["4", 1], "filter-nude"),
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["4", 3]}},
        "9": {"class_type": SCORE, "inputs": {"images": ["3", 0], "threshold": 0.6, **DETECTOR}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 4]}},
    }
    entry = comfy.run(prompt)
    out = entry["outputs"]
    assert len(out["5"]["images"]) == 1 and len(out["6"]["images"]) == 1
    assert (saved(comfy, entry, "5") == 90).all()  # the grey one is the safe one
    assert json.loads(out["7"]["text"][0]) == [1] and out["8"]["text"] == ["1"]
    assert out["10"]["text"] == ["False", "True"]  # nude_flags: one verdict per image, in batch order

    only_nude = prompt | {"3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["1", 0]}}}
    entry = comfy.run(only_nude)
    assert "5" not in entry["outputs"] and len(entry["outputs"]["6"]["images"]) == 2  # nothing saved as safe
    assert json.loads(entry["outputs"]["7"]["text"][0]) == [0, 1]


def test_stop_on_nudity_ends_the_run_with_the_reason_and_comfyui_keeps_running(comfy):
    name = upload(comfy, figure(), "stop-figure.png")
    prompt = {
        "1": load(name),
        "2": {
            "class_type": SCORE,
            "inputs": {"images": ["1", 0], "threshold": 0.6, "stop_on_nudity": True, **DETECTOR},
        },
        "3": save(["2", 5], "stop-should-not-exist"),
    }
    entry = comfy.wait(comfy.queue(prompt))
    assert entry["status"]["status_str"] == "error"
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert error["exception_type"].endswith("NudityStop")
    assert "image 1 of 1 is nude" in error["exception_message"] and "stop_on_nudity" in error["exception_message"]
    assert "3" not in entry["outputs"]

    prompt["2"]["inputs"]["stop_on_nudity"] = False  # the same graph, not stopping, runs through
    assert len(comfy.run(prompt)["outputs"]["3"]["images"]) == 1
    grey = upload(comfy, Image.new("RGB", (64, 64), (90, 90, 90)), "stop-grey.png")
    stopped_censor = {"1": load(grey), "2": censor(["1", 0], stop_on_nudity=True), "3": save(["2", 0], "stop-grey")}
    assert len(comfy.run(stopped_censor)["outputs"]["3"]["images"]) == 1  # a safe image passes


def test_scoring_a_batch_advances_the_node_progress_bar_per_image(comfy):
    empty = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 3, "color": 0}}
    prompt = {"1": empty, "2": {"class_type": SCORE, "inputs": {"images": ["1", 0], "threshold": 0.6, **DETECTOR}}}
    with comfy.events() as events:
        prompt_id = comfy.queue(prompt)
        comfy.run_status(comfy.wait(prompt_id))
    steps = [
        (m["data"]["value"], m["data"]["max"])
        for m in events.of_type("progress")
        if m["data"].get("prompt_id") == prompt_id and m["data"].get("node") == "2"
    ]
    # ComfyUI may leave out updates in between (it throttles them); the first and the last are always sent
    assert steps[0] == (1, 3) and steps[-1] == (3, 3) and steps == sorted(set(steps))
