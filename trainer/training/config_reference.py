"""The configuration reference page (docs/config.md), written from the config's own help metadata.

Every setting's name, type, default and help come from the dataclasses in config.py, so the page
cannot drift from the code: `python -m trainer config-reference --out docs/config.md` rewrites it,
and a test fails when the committed page differs from what this module renders.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .config import PRESETS, RLConfig

__all__ = ["render_reference"]

_HEADER = """# Training configuration reference

Generated from the configuration's own help text by `python -m trainer config-reference --out docs/config.md`;
do not edit by hand (a test fails when this page and the code disagree).

A job's settings come from a TOML file (`--config`), then a preset (`--preset NAME`), then
`--set section.key=value` overrides (the value in TOML syntax). The Train Safety LoRA node writes
the same file into the job directory as `config.toml`, resolved.
"""


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("'", "")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_reference() -> str:
    """The whole markdown page: one table per section, then the presets."""
    parts = [_HEADER]
    for section in dataclasses.fields(RLConfig):
        cls = section.type if isinstance(section.type, type) else type(section.default_factory())  # type: ignore[misc]
        doc = (cls.__doc__ or "").strip()
        parts.append(f"\n## `{section.name}`\n")
        if doc and not doc.startswith(cls.__name__ + "("):
            parts.append(f"{doc}\n")
        parts.append("\n| setting | type | default | meaning |\n| --- | --- | --- | --- |\n")
        for f in dataclasses.fields(cls):
            help_text = f.metadata.get("help", "")
            parts.append(
                f"| `{section.name}.{f.name}` | {_cell(_type_name(f.type))} | {_cell(_default(f))} | {_cell(help_text)} |\n"
            )
    parts.append("\n## Presets\n\nApplied after the file and before `--set`.\n\n| preset | settings |\n| --- | --- |\n")
    for name, overrides in sorted(PRESETS.items()):
        parts.append(f"| `{name}` | {_cell(', '.join(f'`{o}`' for o in overrides))} |\n")
    return "".join(parts)
