"""Long runs on the toy model: an interrupted run resumes with only the missing images and gives the
same table; another LoRA never reuses an image; each prompt's own seed and guidance are used; the
second judge runs beside the detector."""

import json

import numpy as np
import pytest
from PIL import Image

from support.comfy_harness import REPO
from support.tiny_onnx import brightness_classifier, p_unsafe
from trainer.evaluation.run import EvalSettings, evaluate

TOY = REPO / "models" / "toyworld"
PROMPTS = ["a red circle on a light background", "a scarlet square", "a blue triangle, dark background"]


def settings(tmp_path, out, texts=PROMPTS, **extra):
    file = tmp_path / "prompts.txt"
    file.write_text("\n".join(texts) + "\n")
    values = dict(model=str(TOY), prompts=str(file), out=str(tmp_path / out), detector="toy-red")
    values.update(steps=4, batch_size=2, images_per_prompt=2, threads=2)  # a batch is one prompt's images
    values.update(extra)
    return EvalSettings(**values)


def same_numbers(a, b):
    assert a["summary"] == b["summary"] and a["groups"] == b["groups"]
    assert [p["images"] for p in a["prompts"]] == [p["images"] for p in b["prompts"]]


def test_an_interrupted_run_generates_only_the_missing_images_and_gives_the_same_table(tmp_path):
    whole = evaluate(settings(tmp_path, "whole"))
    assert whole["run"] == {"generated": 6, "reused": 0}

    first = evaluate(settings(tmp_path, "resumed", max_prompts=2))  # stopped after two prompts
    assert first["run"] == {"generated": 4, "reused": 0}
    resumed = evaluate(settings(tmp_path, "resumed"))
    assert resumed["run"] == {"generated": 2, "reused": 4}
    same_numbers(resumed, whole)
    assert (tmp_path / "resumed" / "results.md").read_text() == (tmp_path / "whole" / "results.md").read_text()

    (tmp_path / "resumed" / "images" / "p0001_i01.png").unlink()  # a lost image is made again
    again = evaluate(settings(tmp_path, "resumed"))
    assert again["run"] == {"generated": 1, "reused": 5}
    same_numbers(again, whole)
    fresh = evaluate(settings(tmp_path, "resumed", reuse_images=False))
    assert fresh["run"] == {"generated": 6, "reused": 0}


def test_another_lora_or_setting_never_reuses_an_image(tmp_path):
    from support.tiny_models import toy_lora

    evaluate(settings(tmp_path, "out", max_prompts=1))
    zero = evaluate(settings(tmp_path, "out", max_prompts=1, lora=str(toy_lora(tmp_path / "zero.safetensors", 0.0))))
    assert zero["run"] == {"generated": 2, "reused": 0}
    assert evaluate(settings(tmp_path, "out", max_prompts=1, steps=5))["run"]["reused"] == 0
    assert evaluate(settings(tmp_path, "out", max_prompts=1, steps=5))["run"]["reused"] == 2


def test_each_prompt_uses_its_own_seed_and_guidance(tmp_path):
    file = tmp_path / "nudity.csv"
    file.write_text(
        "case_number,prompt,evaluation_seed,evaluation_guidance\n"
        "0,a red circle,5,7.5\n"
        "1,a red circle,5,2\n"
        "2,a red circle,5,\n"
    )
    result = evaluate(settings(tmp_path, "out", prompts=str(file), guidance=7.5))
    images = [[np.asarray(Image.open(tmp_path / "out" / im["file"])) for im in p["images"]] for p in result["prompts"]]
    assert [[im["seed"], im["guidance"]] for p in result["prompts"] for im in p["images"]] == [
        [5, 7.5], [6, 7.5], [5, 2.0], [6, 2.0], [5, 7.5], [6, 7.5]
    ]  # fmt: skip
    assert [p["guidance"] for p in result["prompts"]] == [7.5, 2.0, None]
    assert all(np.array_equal(a, b) for a, b in zip(images[0], images[2], strict=True))  # the run's 7.5
    assert not any(np.array_equal(a, b) for a, b in zip(images[0], images[1], strict=True))
    assert "(or the file's own per prompt)" in (tmp_path / "out" / "results.md").read_text()


def test_the_onnx_judge_runs_beside_the_detector(tmp_path):
    model = brightness_classifier(tmp_path / "judge.onnx", size=16)
    result = evaluate(settings(tmp_path, "judged", judge=f"onnx:{model}", judge_size=16))
    records = [im for p in result["prompts"] for im in p["images"]]
    for r in records:
        small = Image.open(tmp_path / "judged" / r["file"]).convert("RGB").resize((16, 16), Image.BILINEAR)
        expected = p_unsafe(float(np.mean(np.asarray(small, np.float32) / 255)))
        assert r["judge"]["unsafe"] == pytest.approx(expected, abs=1e-4)
        assert r["judge"]["is_unsafe"] == (expected >= 0.5)
    verdicts = [r["judge"]["is_unsafe"] for r in records]
    assert result["summary"]["judge_unsafe_rate"] == pytest.approx(np.mean(verdicts))
    assert "judge.onnx" in result["judge"]
    md = (tmp_path / "judged" / "results.md").read_text()
    assert "| judge rate | judge ASR |" in md and "- judge: ONNX classifier" in md
    assert json.loads((tmp_path / "judged" / "results.json").read_text())["summary"] == result["summary"]
