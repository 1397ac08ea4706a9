"""Prompt sets for training: built-in defaults, files (text, CSV, JSONL), and the unsafe/benign mix."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

__all__ = ["DEFAULT_BENIGN", "DEFAULT_UNSAFE", "PromptError", "PromptMixer", "load_prompt_file"]

DEFAULT_UNSAFE = [
    "a nude woman on a beach",
    "a naked man standing in a forest",
    "topless woman, portrait photo",
    "nude figure study, oil painting",
    "a naked couple lying in bed",
    "a woman without clothes in the shower",
    "full body photo of a nude model in a studio",
    "naked people swimming in a lake",
]
DEFAULT_BENIGN = [
    "a woman on a beach",
    "a man standing in a forest",
    "portrait photo of a woman",
    "figure study, oil painting",
    "a couple reading in bed",
    "a cat sleeping on a sofa",
    "a city street at night",
    "a bowl of fruit on a table",
]


class PromptError(ValueError):
    """A prompt file or list is empty or unreadable; the message names it."""


def load_prompt_file(path: str | Path) -> list[str]:
    """Prompts from .txt (one per line, '#' comments), .csv (a 'prompt' column, else the first), .jsonl."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptError(f"cannot read prompt file {path}: {exc}") from exc
    if path.suffix == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            prompts = []
        else:
            header = [h.strip().lower() for h in rows[0]]
            column = header.index("prompt") if "prompt" in header else 0
            body = rows[1:] if "prompt" in header else rows
            prompts = [r[column].strip() for r in body if len(r) > column]
    elif path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    prompts.append(str(json.loads(line)["prompt"]).strip())
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise PromptError(f"{path}:{number}: expected a JSON object with a 'prompt' field") from exc
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise PromptError(f"prompt file {path} holds no prompts")
    return prompts


class PromptMixer:
    """Draws batches mixing unsafe and benign prompts at a ratio, from a seed (reproducible).

    Prompt lists are de-duplicated (order kept), so a prompt listed twice is not drawn twice as often.
    With `group_size` K a batch of n holds ceil(n / K) prompts, each K times in a row (its group; the
    last one smaller when K does not divide n); when the
    ratio is strictly between 0 and 1 and the batch holds at least two prompts, it has at least one
    unsafe and one benign prompt.
    """

    def __init__(self, unsafe: list[str], benign: list[str], unsafe_ratio: float = 0.5):
        if unsafe_ratio > 0 and not unsafe:
            raise PromptError("no unsafe prompts: give some, or set prompts.unsafe_ratio = 0")
        if unsafe_ratio < 1 and not benign:
            raise PromptError("no benign prompts: give some, or set prompts.unsafe_ratio = 1")
        self.unsafe, self.benign = list(dict.fromkeys(unsafe)), list(dict.fromkeys(benign))
        self.ratio = unsafe_ratio

    def draw(self, n: int, seed: int, group_size: int = 1) -> list[tuple[str, bool]]:
        if group_size < 1:
            raise PromptError(f"group size must be >= 1, got {group_size}")
        rng = random.Random(seed)
        g = -(-n // group_size)
        n_unsafe = round(g * self.ratio)
        if 0 < self.ratio < 1 and g >= 2:
            n_unsafe = min(max(n_unsafe, 1), g - 1)
        elif 0 < self.ratio < 1:  # one prompt: unsafe with the ratio's probability
            n_unsafe = int(rng.random() < self.ratio)
        picked = [(p, True) for p in _pick(rng, self.unsafe, n_unsafe)]
        picked += [(p, False) for p in _pick(rng, self.benign, g - n_unsafe)]
        rng.shuffle(picked)
        return [item for item in picked for _ in range(group_size)][:n]


def _pick(rng: random.Random, prompts: list[str], k: int) -> list[str]:
    """k prompts, distinct while the list has enough (then drawn with replacement)."""
    if k <= len(prompts):
        return rng.sample(prompts, k)
    return [rng.choice(prompts) for _ in range(k)]
