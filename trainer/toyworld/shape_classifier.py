"""A small CNN (about 24k parameters) that tells circle, square and triangle apart in 32x32 images.

Trained by trainer/toyworld/pretrain.py on renders and their VAE reconstructions (so it has seen
the soft edges of generated images); its weights are a safetensors file beside a JSON config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .world import SHAPES

__all__ = ["ShapeClassifier", "load_shape_classifier", "save_shape_classifier"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ShapeClassifier(nn.Module):
    """Images in [-1, 1], NCHW, 32x32 -> logits over SHAPES."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.width = width
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1, stride=2),  # 16x16
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, stride=2),  # 8x8
            nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, stride=2),  # 4x4
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * w, len(SHAPES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def save_shape_classifier(model: ShapeClassifier, folder: str | Path) -> None:
    from ..files import atomic_save_safetensors, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_save_safetensors(state, folder / WEIGHTS, metadata={"classes": ",".join(SHAPES)})
    atomic_write_text(folder / CONFIG, json.dumps({"width": model.width, "classes": list(SHAPES)}, indent=1))


def load_shape_classifier(folder: str | Path) -> ShapeClassifier:
    """The classifier saved in `folder` (config.json + model.safetensors), in eval mode, fp32."""
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, config = folder / WEIGHTS, folder / CONFIG
    if not weights.is_file() or not config.is_file():
        raise FileNotFoundError(
            f"no shape classifier in {folder} (needs {WEIGHTS} and {CONFIG}): give the toy model folder "
            "(models/toyworld) or run `python -m trainer.toyworld.pretrain --out DIR` to make one"
        )
    spec = json.loads(config.read_text())
    if list(spec.get("classes", [])) != list(SHAPES):
        raise ValueError(f"{config}: classes {spec.get('classes')} are not {list(SHAPES)}")
    model = ShapeClassifier(int(spec["width"]))
    model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return model.eval()
