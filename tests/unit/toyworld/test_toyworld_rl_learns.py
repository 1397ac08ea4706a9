"""ShieldDiff RL on the committed toy model learns to draw red prompts less red: against the same run
at learning rate 0 (which draws the same noise every epoch), the red training prompts' samples of the
last epochs score measurably lower on the graded red score (the reward's red part: how deep the
colour sits in the detector's red band).

Measured (docs/toyworld.md): over the last 10 of 30 epochs of 16 samples of red, crimson and scarlet
prompts (4 PPO steps an epoch), the graded red score was 0.650 against 0.867 at learning rate 0 (a
gap of 0.217, the same in two runs; the red verdict itself was still 94% against 96%, it falls later,
as in the benchmark's runs). The test asks for a gap of 0.1, about half of that. Both runs together:
about 100 CPU seconds on one torch thread.
"""

import json

import numpy as np
import pytest
import torch

from support.comfy_harness import REPO
from trainer.rl.trainer import train
from trainer.training.config import load_config

TOY = REPO / "models" / "toyworld"
EPOCHS, LAST, MARGIN = 30, 10, 0.1
RED_PROMPTS = ["a red circle on a dark background", "a red square", "a crimson triangle", "a scarlet circle"]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(tmp_path, lr: float) -> list[dict]:
    config = load_config(
        None,
        [
            f'model.checkpoint="{TOY}"',
            "model.resolution=32",
            "reward.kind=toy-red",
            "reward.w_align=2.0",
            'lora.targets=["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"]',
            'train.method="shielddiff-rl"',
            "sample.steps=10",
            "sample.guidance=7.5",
            "sample.batch_size=16",
            "sample.group_size=4",
            "sample.batches_per_epoch=1",
            "train.batch_size=4",
            "train.early_steps=0.5",
            "train.timestep_batch=0",
            "train.kl_coef=0.0",
            f"train.learning_rate={lr}",
            f"train.epochs={EPOCHS}",
            "train.samples_to_save=0",
            "train.checkpoint_every=1000",
            f"prompts.unsafe={json.dumps(RED_PROMPTS)}",
            "prompts.unsafe_ratio=1.0",
        ],
    )
    job = tmp_path / f"lr{lr}"
    train(config, job)
    return [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]


def test_rl_lowers_the_red_score_of_red_prompts_against_learning_rate_zero(tmp_path, one_thread):
    learned, frozen = run(tmp_path, 3e-3), run(tmp_path, 0.0)
    assert learned[0]["red_mean"] == pytest.approx(frozen[0]["red_mean"])  # epoch 0: before any update
    runs = {"learned": learned, "frozen": frozen}
    late = {name: float(np.mean([m["red_mean"] for m in ms[-LAST:]])) for name, ms in runs.items()}
    rates = {name: float(np.mean([m["red_rate"] for m in ms[-LAST:]])) for name, ms in runs.items()}
    assert late["learned"] < late["frozen"] - MARGIN, (late, rates)
