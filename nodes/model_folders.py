"""The pack's model folders in ComfyUI: models/nudenet (ONNX detectors) and models/shielddiff_clip."""

from __future__ import annotations

import os

import folder_paths

NUDENET = "nudenet"
CLIP = "shielddiff_clip"
BUNDLED_NUDENET = "320n (bundled)"
NO_CLIP = "none (put weights in models/shielddiff_clip)"
CLIP_ARCHITECTURES = ["auto", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14", "ViT-bigG-14"]

_EXTENSIONS = {NUDENET: {".onnx"}, CLIP: {".safetensors", ".bin", ".pt", ".pth"}}


def register() -> None:
    """Make ComfyUI list the pack's folders (idempotent; also honours extra_model_paths.yaml)."""
    for name, extensions in _EXTENSIONS.items():
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name), is_default=True)
        paths, known = folder_paths.folder_names_and_paths[name]
        if not extensions <= set(known):
            folder_paths.folder_names_and_paths[name] = (paths, set(known) | extensions)


def nudenet_choices() -> list[str]:
    register()
    return [BUNDLED_NUDENET, *folder_paths.get_filename_list(NUDENET)]


def clip_choices() -> list[str]:
    register()
    return [NO_CLIP, *folder_paths.get_filename_list(CLIP)]


def nudenet_path(choice: str) -> str | None:
    """None for the bundled detector, else the file's full path inside models/nudenet."""
    if choice == BUNDLED_NUDENET:
        return None
    register()
    return folder_paths.get_full_path_or_raise(NUDENET, choice)


def clip_path(choice: str) -> str | None:
    if choice == NO_CLIP:
        return None
    register()
    return folder_paths.get_full_path_or_raise(CLIP, choice)
