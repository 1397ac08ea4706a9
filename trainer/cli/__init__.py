"""The `python -m trainer` command line: one sub-command per task."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__

log = logging.getLogger(__name__)


def _demo_checkpoint(args: argparse.Namespace) -> int:
    from ..diffusion.demo_checkpoint import write_demo_checkpoint

    write_demo_checkpoint(args.out, seed=args.seed)
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    from ..files import atomic_write_text
    from ..training.config_reference import render_reference

    text = render_reference()
    if args.out:
        atomic_write_text(args.out, text)
        log.info("wrote %s", args.out)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="ShieldDiff core tools.")
    parser.add_argument("--version", action="version", version=f"shielddiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-checkpoint", help="write a tiny random SD1.5-layout checkpoint (for demos and tests)")
    demo.add_argument("--out", required=True, help="where to write the .safetensors file")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    demo.set_defaults(func=_demo_checkpoint)

    reference = sub.add_parser("config-reference", help="write the training configuration reference (markdown)")
    reference.add_argument("--out", help="file to write (default: standard output)")
    reference.set_defaults(func=_config_reference)

    from . import score as score_cli

    score = sub.add_parser("score", help="nudity, CLIP and reward of image files")
    score_cli.add_arguments(score)
    score.set_defaults(func=score_cli.run)

    from . import lora as lora_cli

    lora = sub.add_parser("lora", help="inspect or convert LoRA files")
    lora_cli.add_arguments(lora)
    lora.set_defaults(func=lora_cli.run)

    from . import eval as eval_cli

    evaluate = sub.add_parser("eval", help="measure a model (and LoRA) over a prompt file: concept rate, counts, CLIP")
    eval_cli.add_arguments(evaluate)
    evaluate.set_defaults(func=eval_cli.run)

    from . import train as train_cli

    train = sub.add_parser("train", help="fine-tune a safety LoRA (ShieldDiff RL or All-but-One erasure)")
    train_cli.add_arguments(train)
    train.set_defaults(func=train_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr
    )
    return args.func(args)
