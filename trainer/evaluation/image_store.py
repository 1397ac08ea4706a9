"""The images of an evaluation, kept under OUT/images so that a long run can resume.

Image i of prompt p is `p{p:04d}_i{i:02d}.png`; the PNG carries, as a text chunk, the key of what
made it (model path, size and time; LoRA file hash and strength; prompt, seed, guidance, steps,
resolution). A re-run into the same folder reuses an image whose key matches and regenerates any other, so an
interrupted run generates only what is missing, and a run with another LoRA or setting never
reuses an image that is not its own. Writes are atomic: an interruption leaves no half image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write

__all__ = ["ImageStore", "file_digest", "model_stamp"]

KEY_CHUNK = "shielddiff-eval"


def file_digest(path: str | Path) -> str:
    """The sha256 of a file (LoRAs are small enough to hash on every run)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_stamp(path: str | Path) -> str:
    """The model's path with the size and modification time of its file(s): a model retrained or replaced
    in place is not the one that made the stored images (checkpoints are too large to hash each run)."""
    path = Path(path).resolve()
    files = [f for f in sorted(path.rglob("*")) if f.is_file()] if path.is_dir() else [path]
    size = sum(f.stat().st_size for f in files)
    newest = max((f.stat().st_mtime_ns for f in files), default=0)
    return f"{path} ({size} bytes, modified {newest})"


class ImageStore:
    def __init__(self, folder: str | Path, run_key: dict[str, Any]):
        """run_key: what every image of the run shares (model, LoRA, steps, resolution)."""
        self.folder = Path(folder)
        self.run_key = run_key
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def name(prompt_index: int, image_index: int) -> str:
        return f"p{prompt_index:04d}_i{image_index:02d}.png"

    def key(self, prompt: str, seed: int, guidance: float) -> str:
        return json.dumps(dict(self.run_key, prompt=prompt, seed=seed, guidance=guidance), sort_keys=True)

    def load(self, name: str, key: str) -> np.ndarray | None:
        """The stored image if it was made with this key, else None."""
        from PIL import Image

        path = self.folder / name
        if not path.is_file():
            return None
        try:
            with Image.open(path) as im:
                if getattr(im, "text", {}).get(KEY_CHUNK) != key:
                    return None
                return np.asarray(im.convert("RGB"))
        except OSError:  # unreadable: make it again
            return None

    def save(self, name: str, image: np.ndarray, key: str) -> None:
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text(KEY_CHUNK, key)
        atomic_write(self.folder / name, lambda tmp: Image.fromarray(image).save(tmp, format="PNG", pnginfo=info))
