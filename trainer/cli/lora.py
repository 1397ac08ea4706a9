"""`python -m trainer lora inspect|convert`: look into a LoRA file, or rewrite it in another naming."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter

from ..lora.formats import FORMATS, LoraFormatError, read_lora, write_lora
from ..lora.names import LAYOUTS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lora_command", required=True)
    inspect = sub.add_parser("inspect", help="format, model family, layers, rank and metadata of a LoRA file")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    convert = sub.add_parser("convert", help="rewrite a LoRA in another key naming, tensors unchanged")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument("--to", required=True, choices=FORMATS, help="the naming to write")
    convert.add_argument("--layout", choices=sorted(LAYOUTS), help="UNet layout for ComfyUI naming (default: detected)")


def summary(path: str) -> dict:
    lora = read_lora(path)
    if not lora.modules:
        raise LoraFormatError(f"{path} holds no LoRA modules")
    components = Counter(component for component, _ in lora.modules)
    return {
        "file": path,
        "format": lora.source_format,
        "family": lora.family,
        "modules": dict(components),
        "ranks": sorted({m.rank for m in lora.modules.values()}),
        "alphas": sorted({round(m.scale() * m.rank, 6) for m in lora.modules.values()}),
        "dtype": str(next(iter(lora.modules.values())).down.dtype).removeprefix("torch."),
        "metadata": lora.metadata,
    }


def run(args: argparse.Namespace) -> int:
    try:
        if args.lora_command == "inspect":
            info = summary(args.file)
            if args.json:
                sys.stdout.write(json.dumps(info, indent=1) + "\n")
            else:
                meta = info.pop("metadata")
                for key, value in info.items():
                    sys.stdout.write(f"{key:10s} {value}\n")
                for key, value in sorted(meta.items()):
                    shown = value if len(value) < 200 else value[:200] + "..."
                    sys.stdout.write(f"  {key}: {shown}\n")
            return 0
        lora = read_lora(args.input, LAYOUTS.get(args.layout) if args.layout else None)
        write_lora(lora, args.output, args.to, layout=LAYOUTS.get(args.layout) if args.layout else None)
        log.info("wrote %s (%s naming, %d modules)", args.output, args.to, len(lora.modules))
        return 0
    except (LoraFormatError, ValueError) as exc:
        log.error("%s", exc)
        return 2
