"""Publishing a finished job's LoRA: a copy into the LoRA folder under a name nothing holds.

The copy is complete or absent (written aside, then hard-linked into place, which never replaces a
file), so a loader never reads half a file and a file the user put there meanwhile is never
overwritten: the LoRA then goes under the next free `<name>-N.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_copy_new

__all__ = ["NoFreeName", "lora_file_name", "publish_lora"]

MAX_TRIES = 1000


class NoFreeName(Exception):  # noqa: N818 - reads as the condition it reports
    """Every name `<stem>.safetensors`, `<stem>-2.safetensors`, ... is taken."""


def lora_file_name(stem: str, n: int = 1) -> str:
    """The LoRA folder's file name for the LoRA named `stem`: `<stem>.safetensors`, or `<stem>-N...` after it."""
    return f"{stem}.safetensors" if n == 1 else f"{stem}-{n}.safetensors"


def publish_lora(source: Path, loras_dir: Path, stem: str) -> str:
    """Copy `source` into `loras_dir` as `<stem>.safetensors` or the first free `<stem>-N.safetensors`;
    returns the name written. OSError when the folder cannot take it (read-only, full); NoFreeName."""
    loras_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_TRIES):
        name = lora_file_name(stem, n)
        try:
            atomic_copy_new(source, loras_dir / name)
            return name
        except FileExistsError:
            continue
    raise NoFreeName(f"no free name for {stem} in {loras_dir}")
