"""Merging a LoRA into a diffusers pipeline's weights (for evaluation and scripts, not training)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .formats import LoraFormatError, read_lora

__all__ = ["LoraMismatchError", "apply_lora"]

log = logging.getLogger(__name__)


class LoraMismatchError(LoraFormatError):
    """No module of the LoRA matches the model (a LoRA for another base model)."""


def apply_lora(pipe, path: str | Path, strength: float = 1.0) -> dict[str, int]:
    """Merge a LoRA file (any naming trainer/lora/formats.py reads) into the pipeline's weights.

    W += strength * (alpha / rank) * up @ down, for the UNet and the text encoder. Returns how many
    modules applied; refuses a LoRA of which no module matches this model.
    """
    lora = read_lora(path)
    components = {"unet": pipe.unet, "te1": pipe.text_encoder}
    applied, missing = 0, []
    for (component, module_path), module in lora.modules.items():
        model = components.get(component)
        try:
            layer = model.get_submodule(module_path) if model is not None else None
        except AttributeError:
            layer = None
        if layer is None or not hasattr(layer, "weight"):
            missing.append(f"{component}:{module_path}")
            continue
        weight = layer.weight
        delta = module.up.float().flatten(1) @ module.down.float().flatten(1)
        delta = (strength * module.scale() * delta).reshape(weight.shape)
        with torch.no_grad():
            weight.add_(delta.to(weight.dtype))
        applied += 1
    if not applied:
        raise LoraMismatchError(
            f"no module of LoRA {Path(path).name} matches this model (e.g. {missing[:3]}): is it for another base model?"
        )
    if missing:
        log.warning("LoRA %s: %d of %d modules do not match this model: %s", path, len(missing), applied, missing[:5])
    return {"applied": applied, "unmatched": len(missing)}
