"""Evaluation prompt sets, read as they are published (docs/evaluation.md says where each one is).

Every format goes through the pack's one prompt-file reader (trainer/prompts.py), with the prompt
column chosen here:
- I2P (and the erasure papers' copy of it): `prompt`, `categories` ("sexual, violence"),
  `evaluation_seed` / `sd_seed`, `evaluation_guidance` / `sd_guidance_scale`, and more columns;
- UnlearnDiffAtk's nudity set: the same layout, with a `case_number` column;
- MMA-Diffusion: `adv_prompt`, `target_prompt`, `clean_prompt` (default: `adv_prompt`);
- Ring-A-Bell: `prompt` (some files: `sensitive prompt` or `prompts`), no seeds;
- P4D: `prompt` with seeds and guidance; other prompt columns by choice;
- COCO captions: the captions JSON (`annotations[].caption`) or a CSV with `caption` or `prompt`;
- any .csv / .jsonl / .txt the pack reads elsewhere.
Each prompt keeps its own seed and guidance when the file has them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..prompts import PromptColumnError, PromptError, read_prompt_rows
from .errors import EvalError

__all__ = [
    "DEFAULT_PROMPT_COLUMNS",
    "GUIDANCE_COLUMNS",
    "SEED_COLUMNS",
    "EvalPrompt",
    "load_eval_prompts",
]

# The prompt column when none is chosen: the first of these the file has. An attack set's
# adversarial prompt comes before its plain one (MMA-Diffusion has both).
DEFAULT_PROMPT_COLUMNS = ("adv_prompt", "prompt", "sensitive prompt", "prompts", "caption")
SEED_COLUMNS = ("seed", "evaluation_seed", "sd_seed")
GUIDANCE_COLUMNS = ("guidance", "evaluation_guidance", "sd_guidance_scale")
CATEGORY_COLUMNS = ("category", "categories")


@dataclass
class EvalPrompt:
    text: str
    categories: list[str] = field(default_factory=list)
    seed: int | None = None  # the file's seed for image 0 (image i: seed + i); None: the run's
    guidance: float | None = None  # the file's classifier-free guidance; None: the run's


def _value(row: dict[str, Any], columns: tuple[str, ...]) -> tuple[str, str] | None:
    for column in columns:
        value = row.get(column)
        if value is not None and str(value).strip():
            return column, str(value).strip()
    return None


def _seed_of(row: dict[str, Any], where: str) -> int | None:
    found = _value(row, SEED_COLUMNS)
    if found is None:
        return None
    column, value = found
    try:
        return int(float(value))
    except (ValueError, OverflowError) as exc:
        raise EvalError(f"{where}: {column} {value!r} is not a whole number") from exc


def _guidance_of(row: dict[str, Any], where: str) -> float | None:
    found = _value(row, GUIDANCE_COLUMNS)
    if found is None:
        return None
    column, value = found
    try:
        guidance = float(value)
    except ValueError:
        guidance = math.nan
    if not math.isfinite(guidance):
        raise EvalError(f"{where}: {column} {value!r} is not a finite number")
    return guidance


def _categories_of(row: dict[str, Any]) -> list[str]:
    for column in CATEGORY_COLUMNS:
        value = row.get(column)
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        if value:
            return [c.strip() for c in str(value).split(",") if c.strip()]
    return []


def _coco_rows(path: Path) -> list[dict[str, Any]]:
    """COCO's captions JSON: one row per annotation, its caption as the prompt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"cannot read {path} as JSON: {exc}") from exc
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        keys = ", ".join(map(repr, data)) if isinstance(data, dict) else type(data).__name__
        raise EvalError(
            f"{path} is not a COCO captions file: it needs an 'annotations' list of {{'caption': ...}} "
            f"(it has {keys}); give COCO's captions_*.json, or a .csv with a 'caption' or 'prompt' column"
        )
    rows = []
    for a in annotations:
        if isinstance(a, dict) and str(a.get("caption") or "").strip():
            rows.append(dict(a, prompt=str(a["caption"]).strip()))
    return rows


def load_eval_prompts(
    path: str | Path,
    categories: list[str] = (),
    max_prompts: int | None = None,
    prompt_column: str | None = None,
) -> list[EvalPrompt]:
    """Prompts with their categories, seeds and guidance from a published set (module doc).

    prompt_column: the column holding the prompt (default: the first of DEFAULT_PROMPT_COLUMNS
    present). categories: keep prompts in any of these (case-insensitive; I2P's comma-separated
    `categories`). max_prompts: the first N after filtering."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(
            f"prompt file {path} does not exist: give a .csv (with a 'prompt' column), .jsonl, .txt or COCO captions .json"
        )
    columns = (prompt_column,) if prompt_column else DEFAULT_PROMPT_COLUMNS
    if path.suffix.lower() == ".json":
        records = _coco_rows(path)
    else:
        try:
            records = read_prompt_rows(path, columns)
        except PromptColumnError as exc:
            raise EvalError(f"{exc}: choose the prompt column with --prompt-column NAME") from exc
        except PromptError as exc:
            raise EvalError(str(exc)) from exc
    rows = []
    for number, row in enumerate(records, 1):
        where = f"{path}, prompt {number}"
        rows.append(EvalPrompt(row["prompt"], _categories_of(row), _seed_of(row, where), _guidance_of(row, where)))
    if categories:
        if not any(r.categories for r in rows):
            raise EvalError(f"{path} has no category column ('category' or 'categories') to filter by {categories}")
        wanted = {c.strip().lower() for c in categories}
        rows = [r for r in rows if wanted & {c.lower() for c in r.categories}]
    if max_prompts is not None:
        rows = rows[:max_prompts]
    if not rows:
        where = f" in categories {categories}" if categories else ""
        raise PromptError(f"prompt file {path} holds no prompts{where}")
    return rows
