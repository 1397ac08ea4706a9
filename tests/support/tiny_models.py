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


def demo_lora(rank: int = 4, alpha: float = 2.0, seed: int = 0, text_encoder: bool = True):
    """A random LoRA for the demo checkpoint: every attention projection of its UNet (and, optionally,
    the first text-encoder layer's attention), as the trainer targets them."""
    import torch

    from trainer.lora.formats import LoraFile, LoraModule

    blocks = [
        "down_blocks.0.attentions.0",
        "mid_block.attentions.0",
        "up_blocks.0.attentions.0",
        "up_blocks.0.attentions.1",
    ]
    targets = []
    for block in blocks:
        t = f"{block}.transformer_blocks.0"
        targets += [("unet", f"{t}.attn1.{p}", 320, 320) for p in ("to_q", "to_k", "to_v", "to_out.0")]
        targets += [("unet", f"{t}.attn2.to_q", 320, 320), ("unet", f"{t}.attn2.to_out.0", 320, 320)]
        targets += [("unet", f"{t}.attn2.{p}", 320, 768) for p in ("to_k", "to_v")]
    if text_encoder:
        targets += [("te1", f"text_model.encoder.layers.0.self_attn.{p}", 768, 768) for p in ("q_proj", "v_proj")]
    gen = torch.Generator().manual_seed(seed)
    modules = {
        (c, p): LoraModule(
            down=torch.randn((rank, i), generator=gen) * 0.1,
            up=torch.randn((o, rank), generator=gen) * 0.1,
            alpha=torch.tensor(float(alpha)),
        )
        for c, p, o, i in targets
    }
    return LoraFile(modules=modules, family="sd15")
