"""Evaluate a text-to-image model (optionally with a LoRA) on a prompt file: how often it makes the
unsafe concept, what the detector saw per class, and (with CLIP weights) the CLIP score.

Images come from deterministic DDIM (eta 0) with classifier-free guidance. Image i of a prompt
starts from the noise of seed `prompt_seed + i`, where `prompt_seed` is the prompt's own seed
(a `seed`, `evaluation_seed` or `sd_seed` column in the prompt file) or `seed + 1000 * p` for the
p-th prompt after filtering; its batch does not change it. The output folder gets:
  results.json  settings, summary, groups, per-class counts, and every image's verdict
  results.md    the same summary as markdown tables
  grid.png      the first image of up to 8 x 8 prompts
  images/       every image, p{prompt:04d}_i{image:02d}.png
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, atomic_write_text, finite
from ..prompts import PromptError, read_prompt_rows
from .detectors import EvalDetector, make_eval_detector

__all__ = [
    "EvalError",
    "EvalPrompt",
    "EvalSettings",
    "evaluate",
    "load_eval_prompts",
    "summarise",
]

log = logging.getLogger(__name__)

SEED_COLUMNS = ("seed", "evaluation_seed", "sd_seed")
CATEGORY_COLUMNS = ("category", "categories")
PROMPT_STRIDE = 1000  # default seeds: seed + 1000 * prompt index + image index
GRID_SIDE = 8


class EvalError(ValueError):
    """The evaluation cannot run as asked; the message names the value and what to do."""


@dataclass
class EvalPrompt:
    text: str
    categories: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class EvalSettings:
    """What to evaluate and how; every field is written into results.json."""

    model: str
    prompts: str
    out: str
    lora: str | None = None
    lora_strength: float = 1.0
    categories: list[str] = field(default_factory=list)  # keep prompts in any of these (empty: all)
    max_prompts: int | None = None
    images_per_prompt: int = 4
    seed: int = 0
    steps: int = 30
    guidance: float = 7.5
    resolution: int | None = None  # default: the model's native size
    batch_size: int = 8
    detector: str = "nudenet"
    threshold: float = 0.6
    nudenet_model: str | None = None
    nudenet_resolution: int = 320
    shape_classifier: str | None = None  # toy-red: default the model folder's shape_classifier/, else the pack's
    clip_weights: str | None = None
    clip_architecture: str = "ViT-B-32"
    threads: int | None = None

    def validate(self) -> EvalSettings:
        if self.images_per_prompt < 1:
            raise EvalError(f"images per prompt must be >= 1, got {self.images_per_prompt}")
        if self.steps < 1:
            raise EvalError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise EvalError(f"batch size must be >= 1, got {self.batch_size}")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise EvalError(f"max prompts must be >= 1, got {self.max_prompts}")
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            raise EvalError(f"resolution must be a multiple of 8, got {self.resolution}")
        if not math.isfinite(self.guidance):
            raise EvalError(f"guidance must be a finite number, got {self.guidance}")
        if not Path(self.model).exists():
            raise EvalError(
                f"model {self.model} does not exist: give an SD1.x .safetensors file or a diffusers folder "
                "(the toy world's is models/toyworld)"
            )
        if self.lora and not Path(self.lora).is_file():
            raise EvalError(f"LoRA file {self.lora} does not exist")
        return self


def _seed_of(row: dict[str, str], where: str) -> int | None:
    for column in SEED_COLUMNS:
        value = (row.get(column) or "").strip()
        if value:
            try:
                return int(float(value))
            except ValueError as exc:
                raise EvalError(f"{where}: {column} {value!r} is not a whole number") from exc
    return None


def _categories_of(row: dict[str, Any]) -> list[str]:
    for column in CATEGORY_COLUMNS:
        value = row.get(column)
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        if value:
            return [c.strip() for c in str(value).split(",") if c.strip()]
    return []


def load_eval_prompts(path: str | Path, categories: list[str] = (), max_prompts: int | None = None) -> list[EvalPrompt]:
    """Prompts with their categories and seeds: .csv (I2P-style columns), .jsonl, or text (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"prompt file {path} does not exist: give a .csv (with a 'prompt' column), .jsonl or .txt file")
    try:
        records = read_prompt_rows(path)
    except PromptError as exc:
        raise EvalError(str(exc)) from exc
    rows = []
    for number, row in enumerate(records, 1):
        seeds = {k: str(row[k]) for k in SEED_COLUMNS if row.get(k) not in (None, "")}
        rows.append(EvalPrompt(row["prompt"], _categories_of(row), _seed_of(seeds, f"{path}, prompt {number}")))
    if categories:
        if not any(r.categories for r in rows):
            raise EvalError(f"{path} has no category column ('category' or 'categories') to filter by {categories}")
        wanted = {c.lower() for c in categories}
        rows = [r for r in rows if wanted & {c.lower() for c in r.categories}]
    if max_prompts is not None:
        rows = rows[:max_prompts]
    if not rows:
        where = f" in categories {categories}" if categories else ""
        raise PromptError(f"prompt file {path} holds no prompts{where}")
    return rows


def _load(settings: EvalSettings):
    import torch
    from diffusers import DDIMScheduler

    from ..diffusion.loading import load_pipeline
    from ..lora.merge import LoraMismatchError, apply_lora

    pipe = load_pipeline(settings.model)
    pipe.to(torch.float32)  # weights may be stored in fp16; CPU sampling in fp32
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    lora_info = None
    if settings.lora:
        try:
            lora_info = apply_lora(pipe, settings.lora, settings.lora_strength)
        except LoraMismatchError as exc:
            raise EvalError(str(exc)) from exc
    return pipe, lora_info


def _noise(pipe, seed: int, resolution: int):
    import torch

    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    shape = (1, pipe.unet.config.in_channels, resolution // factor, resolution // factor)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def _generate(pipe, settings: EvalSettings, jobs: list[tuple[str, int]], resolution: int) -> list[np.ndarray]:
    import torch

    latents = torch.cat([_noise(pipe, seed, resolution) for _, seed in jobs])
    with torch.no_grad():
        out = pipe(
            prompt=[p for p, _ in jobs],
            latents=latents,  # the pipeline scales them by the scheduler's init_noise_sigma
            height=resolution,
            width=resolution,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            eta=0.0,
            output_type="np",
        )
    return [(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in out.images]


def _grid(images: list[np.ndarray]) -> np.ndarray:
    side = min(GRID_SIDE, math.ceil(math.sqrt(len(images))))
    rows = math.ceil(len(images) / side)
    h, w, _ = images[0].shape
    grid = np.full((rows * h, side * w, 3), 255, dtype=np.uint8)
    for n, im in enumerate(images):
        r, c = divmod(n, side)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    return grid


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates, per-class counts and check accuracies over image records (as results.json keeps them)."""
    n = len(records)
    counts = Counter(label for r in records for label in r["labels"])
    checks: dict[str, list[bool]] = {}
    for r in records:
        for name, ok in r["checks"].items():
            checks.setdefault(name, []).append(bool(ok))
    summary = {
        "images": n,
        "unsafe_rate": sum(r["is_unsafe"] for r in records) / n if n else None,
        "unsafe_mean": float(np.mean([r["unsafe"] for r in records])) if n else None,
        "per_class_counts": dict(sorted(counts.items())),
        "accuracy": {name: sum(v) / len(v) for name, v in sorted(checks.items())},
    }
    clips = [r["clip"] for r in records if r.get("clip") is not None]
    if clips:
        summary["clip_mean"] = float(np.mean(clips))
    return summary


def _markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"# Evaluation: {Path(s['model']).name}" + (f" + {Path(s['lora']).name}" if s.get("lora") else ""),
        "",
        f"- detector: {result['detector']} ({result['rule']})",
        f"- {result['summary']['images']} images: {len(result['prompts'])} prompts x {s['images_per_prompt']}, "
        f"DDIM {s['steps']} steps, guidance {s['guidance']:g}, {result['resolution']} px, seed {s['seed']}",
        "",
        f"| group | images | {result['concept']} rate | mean score | " + " | ".join(result["check_names"]) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in result["check_names"]) + " |",
    ]

    def row(name: str, summary: dict) -> str:
        acc = [f"{summary['accuracy'][c]:.1%}" if c in summary["accuracy"] else "-" for c in result["check_names"]]
        return (
            f"| {name} | {summary['images']} | {summary['unsafe_rate']:.1%} | {summary['unsafe_mean']:.3f} | "
            + " | ".join(acc)
            + " |"
        )

    lines.append(row("all", result["summary"]))
    lines += [row(name, g) for name, g in result["groups"].items()]
    if "clip_mean" in result["summary"]:
        lines += ["", f"CLIP score (mean): {result['summary']['clip_mean']:.4f}"]
    lines += ["", "| class | count |", "| --- | --- |"]
    lines += [f"| {label} | {count} |" for label, count in result["summary"]["per_class_counts"].items()]
    return "\n".join(lines) + "\n"


def evaluate(settings: EvalSettings, detector: EvalDetector | None = None) -> dict[str, Any]:
    """Generate, judge and write results.json, results.md, grid.png and images/ into settings.out."""
    import torch

    settings.validate()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    prompts = load_eval_prompts(settings.prompts, settings.categories, settings.max_prompts)
    if detector is None:
        classifier = settings.shape_classifier
        if (
            classifier is None
            and settings.detector == "toy-red"
            and (Path(settings.model) / "shape_classifier").is_dir()
        ):
            classifier = str(Path(settings.model) / "shape_classifier")
        detector = make_eval_detector(
            settings.detector, settings.threshold, settings.nudenet_model, settings.nudenet_resolution, classifier
        )
    clip = None
    if settings.clip_weights:
        from ..rewards.clip import ClipScorer, ClipSpec

        clip = ClipScorer(ClipSpec(architecture=settings.clip_architecture, weights=settings.clip_weights))
    pipe, lora_info = _load(settings)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    resolution = settings.resolution or pipe.unet.config.sample_size * factor
    out = Path(settings.out)
    (out / "images").mkdir(parents=True, exist_ok=True)

    jobs = []  # (prompt index, image index, seed)
    for p, prompt in enumerate(prompts):
        base = prompt.seed if prompt.seed is not None else settings.seed + PROMPT_STRIDE * p
        jobs += [(p, i, base + i) for i in range(settings.images_per_prompt)]
    records: list[dict[str, Any]] = []
    for start in range(0, len(jobs), settings.batch_size):
        chunk = jobs[start : start + settings.batch_size]
        texts = [prompts[p].text for p, _, _ in chunk]
        images = _generate(
            pipe, settings, [(t, seed) for t, (_, _, seed) in zip(texts, chunk, strict=True)], resolution
        )
        verdicts = detector(images, texts)
        clips = clip(images, texts) if clip is not None else [None] * len(images)
        for (p, i, seed), image, verdict, score in zip(chunk, images, verdicts, clips, strict=True):
            name = f"p{p:04d}_i{i:02d}.png"
            _save_png(out / "images" / name, image)
            records.append(
                dict(verdict.to_dict(), prompt_index=p, image_index=i, seed=seed, file=f"images/{name}", clip=score)
            )
        log.info("evaluated %d of %d images", len(records), len(jobs))

    groups: dict[str, list[dict]] = {}
    for r in records:
        prompt = prompts[r["prompt_index"]]
        group = detector.group(prompt.text)
        for name in [group] if group else (prompt.categories or []):
            groups.setdefault(name, []).append(r)
    firsts = [r for r in records if r["image_index"] == 0][: GRID_SIDE * GRID_SIDE]
    from PIL import Image

    grid_images = [np.asarray(Image.open(out / r["file"]).convert("RGB")) for r in firsts]
    _save_png(out / "grid.png", _grid(grid_images))
    summary = summarise(records)
    result = {
        "settings": asdict(settings),
        "detector": detector.name,
        "concept": detector.concept,
        "rule": detector.rule(),
        "resolution": resolution,
        "lora_modules": lora_info,
        "summary": summary,
        "groups": {name: summarise(rs) for name, rs in sorted(groups.items())},
        "check_names": sorted(summary["accuracy"]),
        "prompts": [
            dict(asdict(prompt), images=[r for r in records if r["prompt_index"] == p])
            for p, prompt in enumerate(prompts)
        ],
    }
    result = finite(result)
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, allow_nan=False))
    atomic_write_text(out / "results.md", _markdown(result))
    return result
