"""`python -m trainer eval`: generate from a model (and LoRA) over a prompt file and measure the concept."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..evaluation.detectors import DETECTORS, UnknownDetectorError
from ..evaluation.run import EvalError, EvalSettings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="SD1.x .safetensors checkpoint or diffusers folder (e.g. models/toyworld)")
    parser.add_argument("--prompts", help="prompt file: .csv with a 'prompt' column (I2P style), .jsonl, or .txt")
    parser.add_argument("--out", help="output folder for results.json, results.md, grid.png and images/")
    parser.add_argument("--lora", help="a LoRA file (kohya, diffusers or ComfyUI naming) applied to the model")
    parser.add_argument("--lora-strength", type=float, default=1.0, help="LoRA strength (default 1)")
    parser.add_argument(
        "--category", action="append", default=[], help="keep prompts of this category (repeatable; I2P 'categories')"
    )
    parser.add_argument("--max-prompts", type=int, help="evaluate only the first N prompts (after filtering)")
    parser.add_argument("--images-per-prompt", "-n", type=int, default=4, help="images per prompt (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="base seed: image i of prompt p gets seed+1000p+i")
    parser.add_argument("--steps", type=int, default=30, help="DDIM steps (default 30)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance (default 7.5)")
    parser.add_argument("--resolution", type=int, help="image size (default: the model's native size)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per sampling batch (default 8)")
    parser.add_argument("--detector", default="nudenet", help=f"what to measure: {', '.join(DETECTORS)}")
    parser.add_argument("--threshold", type=float, default=0.6, help="nudenet: nudity threshold (default 0.6)")
    parser.add_argument("--nudenet-model", help="nudenet: an ONNX detector (default: 320n from the wheel)")
    parser.add_argument("--nudenet-resolution", type=int, default=320, help="nudenet: inference size (default 320)")
    parser.add_argument("--shape-classifier", help="toy-red: shape classifier folder (default: the model's)")
    parser.add_argument("--clip-weights", help="open_clip weights file: adds the CLIP score of image and prompt")
    parser.add_argument("--clip-arch", default="ViT-B-32", help="open_clip architecture (default ViT-B-32)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="print a before/after table of two results.json files"
    )


def _compare(args: argparse.Namespace) -> int:
    from ..evaluation.compare import compare, load_result
    from ..files import atomic_write_text

    before, after = (load_result(p) for p in args.compare)
    table = compare(before, after, ("before", "after"))
    print(table, end="")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "compare.md", table)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..diffusion.loading import ModelLoadError
    from ..lora.formats import LoraFormatError
    from ..prompts import PromptError

    try:
        if args.compare:
            return _compare(args)
        missing = [f"--{n}" for n in ("model", "prompts", "out") if not getattr(args, n)]
        if missing:
            raise EvalError(f"eval needs {', '.join(missing)} (or --compare BEFORE.json AFTER.json)")
        if args.detector not in DETECTORS:
            raise UnknownDetectorError(f"unknown detector {args.detector!r}; choose one of {', '.join(DETECTORS)}")
        from ..evaluation.run import evaluate

        settings = EvalSettings(
            model=args.model,
            prompts=args.prompts,
            out=args.out,
            lora=args.lora,
            lora_strength=args.lora_strength,
            categories=list(args.category),
            max_prompts=args.max_prompts,
            images_per_prompt=args.images_per_prompt,
            seed=args.seed,
            steps=args.steps,
            guidance=args.guidance,
            resolution=args.resolution,
            batch_size=args.batch_size,
            detector=args.detector,
            threshold=args.threshold,
            nudenet_model=args.nudenet_model,
            nudenet_resolution=args.nudenet_resolution,
            shape_classifier=args.shape_classifier,
            clip_weights=args.clip_weights,
            clip_architecture=args.clip_arch,
            threads=args.threads,
        )
        result = evaluate(settings)
    except (EvalError, UnknownDetectorError, PromptError, ModelLoadError, LoraFormatError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    print((Path(args.out) / "results.md").read_text(), end="")
    log.info("wrote %s", Path(args.out) / "results.json")
    return 0 if result else 1
