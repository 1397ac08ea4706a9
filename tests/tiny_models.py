"""Tiny random models the tests build: an open_clip config small enough to run in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP = "ShieldDiffTinyCLIP"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def register_tiny_clip(folder: Path) -> str:
    """Register the tiny open_clip architecture (once per process); returns its name."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        path = Path(folder) / f"{TINY_CLIP}.json"
        path.write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(path)
    return TINY_CLIP
