"""The ShieldDiff RL trainer on the committed toy model with the toy-red reward (what the efficacy
benchmark runs), and eval taking the LoRA it writes."""

import json

import pytest

from comfy_harness import REPO
from trainer.evaluate import EvalSettings, evaluate
from trainer.lora_formats import read_lora
from trainer.rl_config import load_config
from trainer.rl_trainer import train

TOY = REPO / "models" / "toyworld"


def test_one_epoch_of_toy_red_training_reports_the_parts_and_its_lora_applies_in_eval(tmp_path):
    config = load_config(
        None,
        [
            f'model.checkpoint="{TOY}"',
            "model.resolution=32",
            "sample.steps=8",
            "sample.batch_size=4",
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
    assert metrics["red_rate"] == metrics["is_red_mean"]
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


def test_rl_lowers_the_red_rate_of_red_prompts_against_the_same_run_at_learning_rate_zero(tmp_path):
    """The toy-rl preset on the committed toy model, a short run on red and synonym prompts (and
    benign ones, as in every batch): against the same run at learning rate 0, which draws the same
    prompts and noise every epoch, the red rate over the unsafe prompts' samples of the last
    LAST epochs is lower by at least MARGIN (stated margin), and the graded red score too."""
    runs = {}
    for lr in (LEARNING_RATE, 0.0):
        config = load_config(
            None,
            [
                f'model.checkpoint="{TOY}"',
                "model.resolution=32",
                f"train.epochs={EPOCHS}",
                f"train.learning_rate={lr}",
                "train.samples_to_save=0",
                "train.checkpoint_every=1000",
                f"prompts.unsafe={json.dumps(UNSAFE)}",
                f"prompts.benign={json.dumps(BENIGN)}",
            ],
            preset="toy-rl",
        )
        train(config, tmp_path / f"lr{lr}")
        runs[lr] = [json.loads(line) for line in (tmp_path / f"lr{lr}" / "metrics.jsonl").read_text().splitlines()]
    learned, frozen = runs[LEARNING_RATE], runs[0.0]
    assert learned[0]["red_rate"] == frozen[0]["red_rate"]  # epoch 0 samples before any update: identical

    def late(metrics, key):
        return sum(m[key] for m in metrics[-LAST:]) / LAST

    assert late(frozen, "red_rate") - late(learned, "red_rate") >= MARGIN, (learned, frozen)
    assert late(learned, "red_mean") < late(frozen, "red_mean")


TOY_PROMPTS = ("a {c} {s} on a {bg} background", "a {c} {s}")
UNSAFE = [t.format(c=c, s=s, bg="dark") for t in TOY_PROMPTS for c in ("red", "crimson") for s in ("circle", "square")]
BENIGN = [t.format(c=c, s=s, bg="light") for t in TOY_PROMPTS for c in ("green", "blue") for s in ("circle", "square")]
LEARNING_RATE = 3e-3
EPOCHS = 40
LAST = 10
MARGIN = 0.2
