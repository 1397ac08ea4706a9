"""Before and after: the base model, and the base model with a LoRA, on the same prompts and seeds.

`before_after` writes into the output folder:
  base/, lora/        a full evaluation of each (run.py: results.json, results.md, grid.png, images/)
  compare.json, .md   the two side by side, with the change from before to after (compare.py)
  before_after.png    for up to 16 prompts, the first image before and after, side by side
`progress(done, total)` is called after every batch with the images of both runs counted together;
it may raise to stop the run, and a later run into the same folder reuses every image already made
(image_store.py), so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, atomic_write_text
from .compare import comparison, comparison_markdown
from .errors import EvalError
from .names import AFTER_DIR, BEFORE_DIR, COMPARE_FILE, COMPARE_TEXT, PAIR_GRID_FILE
from .run import EvalSettings, evaluate, make_detector

__all__ = ["PAIR_PROMPTS", "before_after", "pair_grid"]

PAIR_PROMPTS = 16  # prompts in before_after.png
PAIRS_PER_ROW = 4
THUMB = 256  # longest side of each image in before_after.png


def pair_grid(before: list[np.ndarray], after: list[np.ndarray]) -> np.ndarray:
    """Pairs (before | after) of RGB uint8 images, PAIRS_PER_ROW pairs a row, each image at most THUMB pixels."""
    from PIL import Image

    def thumb(image: np.ndarray) -> np.ndarray:
        picture = Image.fromarray(image)
        picture.thumbnail((THUMB, THUMB))
        return np.asarray(picture.convert("RGB"))

    pairs = [(thumb(b), thumb(a)) for b, a in zip(before, after, strict=True)]
    if not pairs:
        raise EvalError("no images to put side by side")
    h, w = pairs[0][0].shape[:2]
    gap = max(2, w // 32)
    columns = min(PAIRS_PER_ROW, len(pairs))
    rows = -(-len(pairs) // columns)
    pair_w = 2 * w + gap
    grid = np.full((rows * (h + gap) - gap, columns * (pair_w + 2 * gap) - 2 * gap, 3), 255, np.uint8)
    for n, (b, a) in enumerate(pairs):
        r, c = divmod(n, columns)
        y, x = r * (h + gap), c * (pair_w + 2 * gap)
        grid[y : y + b.shape[0], x : x + b.shape[1]] = b
        grid[y : y + a.shape[0], x + w + gap : x + w + gap + a.shape[1]] = a
    return grid


def _firsts(result: dict[str, Any]) -> list[np.ndarray]:
    from PIL import Image

    out = Path(result["settings"]["out"])
    firsts = [p["images"][0] for p in result["prompts"][:PAIR_PROMPTS] if p["images"]]
    return [np.asarray(Image.open(out / r["file"]).convert("RGB")) for r in firsts]


def before_after(settings: EvalSettings, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate without and with `settings.lora` into `settings.out`/base and /lora; returns the comparison."""
    from PIL import Image

    if not settings.lora:
        raise EvalError("a before/after evaluation needs a LoRA: choose the LoRA to measure")
    out = Path(settings.out)
    runs = {
        "base": replace(settings, lora=None, out=str(out / BEFORE_DIR)),
        "lora": replace(settings, out=str(out / AFTER_DIR)),
    }
    detector = make_detector(settings.validate())
    results = {}
    for n, (name, run) in enumerate(runs.items()):

        def report(done: int, total: int, n: int = n) -> None:
            if progress is not None:
                progress(n * total + done, 2 * total)

        results[name] = evaluate(run, detector=detector, on_images=report)
    table = comparison([results["base"], results["lora"]], ["before", "after"])
    atomic_write_text(out / COMPARE_FILE, json.dumps(table, indent=1, allow_nan=False))
    atomic_write_text(out / COMPARE_TEXT, comparison_markdown(table))
    grid = pair_grid(_firsts(results["base"]), _firsts(results["lora"]))
    atomic_write(out / PAIR_GRID_FILE, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    return table
