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


def sd2_v_unet_checkpoint(path: Path, seed: int = 0) -> Path:
    """A tiny UNet-only checkpoint that ComfyUI detects as SD2.x v-prediction: SD2's 1024-wide
    cross-attention and linear projections, four levels of two res blocks at 320 channels, attention
    in the first level only, and output block 11's norm1 bias spread wide (ComfyUI's v-prediction test)."""
    import torch
    from safetensors.torch import save_file

    from trainer.diffusion.demo_checkpoint import _conv, _init, _linear, _norm, _unet_resblock
    from trainer.diffusion.sdxl_checkpoint import _transformer

    u, c = "model.diffusion_model.", 320

    def shapes():
        yield from _linear(u + "time_embed.0.", 1280, c)
        yield from _linear(u + "time_embed.2.", 1280, 1280)
        yield from _conv(u + "input_blocks.0.0.", c, 4, 3)
        block = 1
        for level in range(4):
            for _ in range(2):
                yield from _unet_resblock(u + f"input_blocks.{block}.0.", c, c)
                if level == 0:
                    yield from _transformer(u + f"input_blocks.{block}.1.", c, 1, context=1024)
                block += 1
            if level != 3:
                yield from _conv(u + f"input_blocks.{block}.0.op.", c, c, 3)
                block += 1
        yield from _unet_resblock(u + "middle_block.0.", c, c)
        yield from _transformer(u + "middle_block.1.", c, 1, context=1024)
        yield from _unet_resblock(u + "middle_block.2.", c, c)
        for block in range(12):
            yield from _unet_resblock(u + f"output_blocks.{block}.0.", 2 * c, c)
            if block >= 9:
                yield from _transformer(u + f"output_blocks.{block}.1.", c, 1, context=1024)
            if block in (2, 5, 8):
                yield from _conv(u + f"output_blocks.{block}.1.conv.", c, c, 3)
        yield from _norm(u + "out.0.", c)
        yield from _conv(u + "out.2.", 4, c, 3)

    gen = torch.Generator().manual_seed(seed)
    state = {k: _init(k, s, gen).half() for k, s in shapes()}
    state[u + "output_blocks.11.1.transformer_blocks.0.norm1.bias"] = torch.randn(c, generator=gen).half() * 0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def sdxl_lora(
    unet_config: dict, rank: int = 4, alpha: float = 2.0, seed: int = 0, targets=("to_q", "to_k", "to_v", "to_out.0")
):
    """A random LoRA on every UNet attention projection of an SDXL-layout UNet (the modules the trainer
    adapts, found on a weightless copy of the UNet) and on both text encoders' first attention layer."""
    import torch
    from diffusers import UNet2DConditionModel

    from trainer.lora.formats import LoraFile, LoraModule

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config({k: v for k, v in unet_config.items() if not k.startswith("_")})
    found = [
        ("unet", name, m.out_features, m.in_features)
        for name, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear) and ".attn" in name and name.endswith(tuple("." + t for t in targets))
    ]
    for component, width in (("te1", 768), ("te2", 1280)):
        found += [(component, f"text_model.encoder.layers.0.self_attn.{p}", width, width) for p in ("q_proj", "v_proj")]
    gen = torch.Generator().manual_seed(seed)
    modules = {
        (c, p): LoraModule(
            down=torch.randn((rank, i), generator=gen) * 0.1,
            up=torch.randn((o, rank), generator=gen) * 0.1,
            alpha=torch.tensor(float(alpha)),
        )
        for c, p, o, i in found
    }
    return LoraFile(modules=modules, family="sdxl")


def toy_lora(path, scale):
    """A kohya LoRA on the cross-attention of the toy UNet's 4x4 level and mid block (models/toyworld)."""
    import torch

    from trainer.lora.formats import LoraFile, LoraModule, write_lora

    gen = torch.Generator().manual_seed(0)
    modules = {}
    for block in ("down_blocks.2.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.0"):
        for proj in ("to_k", "to_v"):
            modules[("unet", f"{block}.transformer_blocks.0.attn2.{proj}")] = LoraModule(
                down=torch.randn(4, 64, generator=gen),
                up=scale * torch.randn(64, 4, generator=gen),
                alpha=torch.tensor(4.0),
            )
    write_lora(LoraFile(modules=modules), path, "kohya")
    return path
