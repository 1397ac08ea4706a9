"""`python -m trainer train`: run a training job, the method from `train.method` (also under `accelerate launch`)."""

from __future__ import annotations

import argparse
import logging

from ..training.config import PRESETS, ConfigError, load_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="a TOML file (sections: model, lora, train, output; sample, reward, prompts; erase)"
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named settings applied after the file and before --set (esd: ESD-style erasure)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.epochs=10 (repeatable)",
    )
    parser.add_argument("--job-dir", required=True, help="the job directory (status, metrics, samples, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")


def run(args: argparse.Namespace) -> int:
    from ..prompts import PromptError
    from ..training.run import TrainingCancelled

    try:
        config = load_config(args.config, args.overrides, preset=args.preset).validate()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if config.train.method == "all-but-one":
        from ..erase.trainer import train
    else:
        from ..rl.trainer import train
    try:
        path = train(config, args.job_dir, resume=args.resume)
    except TrainingCancelled:
        log.warning("training cancelled; resume with --resume")
        return 143
    except (ConfigError, PromptError) as exc:
        log.error("%s", exc)
        return 2
    log.info("done: %s", path)
    return 0
