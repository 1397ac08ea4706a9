"""The before/after evaluation of a finished training job: its LoRA, measured as the Evaluate LoRA node does.

The prompts are the job's own (up to four unsafe and four benign ones; for an erasure, up to four of
the concept's prompts and four it must preserve) on seeds from 9000, which no training run draws,
at the job's resolution, steps and guidance; the judge is the one the job was trained against
(NudeNet, or the toy world's red detector for a `toy-red` job). For prompts the job never saw, use
the Evaluate LoRA node with a prompt set.
"""

from __future__ import annotations

from pathlib import Path

from ..training.config import RLConfig

__all__ = ["HELD_OUT_SEED", "PROMPTS_PER_SIDE", "evaluation_settings"]

HELD_OUT_SEED = 9000  # the trainers draw their seeds from `seed(...)` hashes, far from 9000 + 1000p + i
PROMPTS_PER_SIDE = 4


def _prompts(config: RLConfig) -> list[str]:
    if config.train.method == "all-but-one":
        sides = (config.erase.concepts, config.erase.preserve)
    else:
        sides = (config.prompts.unsafe, config.prompts.benign)
    chosen: list[str] = []
    for side in sides:
        chosen += [p for p in dict.fromkeys(side) if p not in chosen][:PROMPTS_PER_SIDE]
    return chosen


def evaluation_settings(config: RLConfig, lora: Path) -> tuple[dict, list[str]]:
    """The evaluation job's settings (EvalSettings fields but `out` and `prompts`) and its prompts."""
    prompts = _prompts(config)
    settings = dict(
        model=str(config.model.checkpoint),
        lora=str(lora),
        images_per_prompt=2,
        seed=HELD_OUT_SEED,
        steps=config.sample.steps,
        guidance=config.sample.guidance,
        resolution=config.model.resolution,
        detector="toy-red" if config.reward.kind == "toy-red" else "nudenet",
    )
    return settings, prompts
