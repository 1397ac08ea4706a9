"""`python -m trainer score`: nudity, CLIP and reward for image files, one record per image."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from ..nudity.detector import NudityRule, get_detector
from ..rewards.clip import ClipScorer, ClipSpec
from ..rewards.shielddiff import RewardConfig, ShieldDiffReward

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files, or folders (their images, sorted by name)")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="the prompt of every image (for the CLIP part of the reward)")
    prompt.add_argument("--prompts", help="a text file with one prompt per image, in the order of the images")
    parser.add_argument("--json", action="store_true", help="print one JSON record per line")
    parser.add_argument("--threshold", type=float, default=0.6, help="nudity threshold (default 0.6)")
    parser.add_argument("--nudenet-model", help="a NudeNet ONNX detector (default: the 320n model in the wheel)")
    parser.add_argument("--resolution", type=int, default=320, help="NudeNet inference resolution (default 320)")
    parser.add_argument("--clip-arch", default="ViT-B-32", help="open_clip architecture, or 'auto' (default ViT-B-32)")
    parser.add_argument("--clip-weights", help="CLIP weights file; without it (or --clip-pretrained) no CLIP score")
    parser.add_argument("--clip-pretrained", help="an open_clip pretrained tag (downloads when online)")
    parser.add_argument("--w-clip", type=float, default=RewardConfig.w_clip, help="weight of the CLIP part")
    parser.add_argument("--w-nude", type=float, default=RewardConfig.w_nude, help="weight of the (1 - nudity) part")
    parser.add_argument("--safe-template", default="{prompt}", help="safe text, e.g. '{prompt}, fully clothed'")


def collect_images(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def run(args: argparse.Namespace) -> int:
    files = collect_images(args.inputs)
    if args.prompts:
        from ..prompts import PromptError, load_prompt_file

        try:
            prompts = load_prompt_file(args.prompts)
        except PromptError as exc:
            log.error("%s", exc)
            return 2
        if len(prompts) != len(files):
            log.error(
                "%s has %d prompts for %d images: give one line per image", args.prompts, len(prompts), len(files)
            )
            return 2
    else:
        prompts = [args.prompt or ""] * len(files)
    use_clip = bool(args.clip_weights or args.clip_pretrained)
    config = RewardConfig(
        w_clip=args.w_clip if use_clip else 0.0,
        w_nude=args.w_nude,
        safe_template=args.safe_template,
        rule=NudityRule(threshold=args.threshold),
    )
    clip = ClipScorer(ClipSpec(args.clip_arch, args.clip_weights, args.clip_pretrained)) if use_clip else None
    reward = ShieldDiffReward(config, get_detector(args.nudenet_model, args.resolution), clip)
    failed = 0
    for path, prompt in zip(files, prompts, strict=True):
        try:
            image = _read(path)
        except (OSError, ValueError) as exc:
            failed += 1
            log.error("cannot read image %s: %s", path, exc)
            continue
        parts = reward([image], prompt)[0]
        record = {
            "file": str(path),
            "nudity": parts.nudity,
            "is_nude": parts.is_nude,
            "clip": parts.clip if use_clip else None,
            "reward": parts.reward,
            "detections": [{"label": d.label, "score": d.score, "box": list(d.box)} for d in parts.detections],
            "rule": config.rule.describe(),
        }
        if args.json:
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            clip_text = f"{parts.clip:.3f}" if use_clip else "-"
            sys.stdout.write(
                f"{path}\tnudity {parts.nudity:.3f}\t{'NUDE' if parts.is_nude else 'safe'}\t"
                f"clip {clip_text}\treward {parts.reward:.3f}\n"
            )
    if failed:
        log.error("%d of %d images could not be read", failed, len(files))
        return 1
    return 0
