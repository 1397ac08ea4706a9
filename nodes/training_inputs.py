"""Widgets and checks the training nodes share: numbers within the request's limits, prompt files."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..trainer.jobs.request import LIMITS, RequestError

NO_FILE = "none"
_PROMPT_SUFFIXES = (".txt", ".csv", ".jsonl")


def prompt_files() -> list[str]:
    """Prompt files in ComfyUI's input folder (and its subfolders)."""
    root = folder_paths.get_input_directory()
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(_PROMPT_SUFFIXES):
                found.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return [NO_FILE, *sorted(found)]


def input_file(name: str, setting: str) -> str | None:
    """The path of a prompt file chosen by name, or None for "none"."""
    if name == NO_FILE or not name:
        return None
    if name not in prompt_files():
        raise RequestError(f"{setting} {name!r} is not a prompt file (.txt, .csv, .jsonl) in ComfyUI's input folder")
    return os.path.join(folder_paths.get_input_directory(), name)


def int_input(name: str, default: int, tooltip: str, **kw) -> io.Int.Input:
    low, high = LIMITS[name]
    return io.Int.Input(name, default=default, min=low, max=high, tooltip=tooltip, **kw)


def float_input(name: str, default: float, tooltip: str, step: float = 0.1) -> io.Float.Input:
    low, high = LIMITS[name]
    return io.Float.Input(name, default=default, min=low, max=high, step=step, tooltip=tooltip)
