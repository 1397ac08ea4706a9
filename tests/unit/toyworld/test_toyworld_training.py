"""The ShieldDiff RL trainer on the committed toy model with the toy-red reward (what the efficacy
benchmark runs), and eval taking the LoRA it writes."""

import json

import pytest

from support.comfy_harness import REPO
from trainer.evaluation.run import EvalSettings, evaluate
from trainer.lora.formats import read_lora
from trainer.rl.trainer import train
from trainer.training.config import load_config

TOY = REPO / "models" / "toyworld"


def test_one_epoch_of_toy_red_training_reports_the_parts_and_its_lora_applies_in_eval(tmp_path):
    config = load_config(
        None,
        [
            f'model.checkpoint="{TOY}"',
            "model.resolution=32",
            "sample.steps=8",
            "sample.batch_size=4",
            "sample.group_size=2",
            "sample.batches_per_epoch=1",
            "train.batch_size=4",
            "train.epochs=1",
            "reward.kind=toy-red",
            'prompts.unsafe=["a red circle on a light background", "crimson square"]',
            'prompts.benign=["a blue circle on a light background", "green square"]',
        ],
    )
    lora = train(config, tmp_path / "job")
    metrics = json.loads((tmp_path / "job" / "metrics.jsonl").read_text().splitlines()[0])
    for part in ("red", "is_red", "alignment"):
        assert 0.0 <= metrics[f"{part}_mean"] <= 1.0
    # two prompts of 2 samples: one unsafe, one benign; the red rate is over the unsafe prompt's samples
    assert metrics["red_rate"] in (0.0, 0.5, 1.0) and metrics["red_rate_benign"] in (0.0, 0.5, 1.0)
    assert metrics["is_red_mean"] == pytest.approx((metrics["red_rate"] + metrics["red_rate_benign"]) / 2)
    assert metrics["reward_mean"] == pytest.approx(
        metrics["alignment_mean"] + 1.0 - metrics["red_mean"]
    )  # weights 1, 1
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    result = evaluate(
        EvalSettings(
            model=str(TOY), prompts=str(prompts), out=str(tmp_path / "eval"), lora=str(lora), detector="toy-red",
            images_per_prompt=1, steps=4,
        )
    )  # fmt: skip
    assert result["lora_modules"] == {"applied": len(read_lora(lora).modules), "unmatched": 0}
