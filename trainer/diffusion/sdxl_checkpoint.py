"""A tiny, deterministic, random-weight checkpoint in the SDXL single-file layout.

ComfyUI tells SDXL from its UNet's key names and shapes (320 base channels, linear transformer
projections, transformer depths 0, 0, 2, 2, 10, 10 in the input blocks, 2048-wide cross-attention,
2816-wide added conditioning) and builds both SDXL text encoders at their full, fixed sizes, so:
- UNet: the SDXL layout (three levels of two res blocks, 2 and 10 transformer blocks in the last
  two levels, 10 in the middle, the output blocks likewise), with 320 channels at every level
  instead of 320, 640, 1280 (about a tenth of SDXL's 2.6 billion parameters);
- VAE: the KL-f8 autoencoder layout SDXL shares with SD1.5;
- text encoders: complete CLIP ViT-L/14 (conditioner.embedders.0, transformers layout) and
  OpenCLIP ViT-bigG/14 (conditioner.embedders.1, open_clip layout) text towers, every tensor
  present, or ComfyUI would leave the rest uninitialised.
Every tensor is drawn from a seeded generator. It draws noise, not pictures: a stand-in for real
weights, about 1.1 billion parameters (2.2 GB in float16), most of them in the text encoders.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .demo_checkpoint import Shape, _conv, _init, _linear, _norm, _unet_resblock, _vae

__all__ = ["SDXL_DEPTHS", "build_state_dict", "checkpoint_shapes", "write_sdxl_checkpoint"]

log = logging.getLogger(__name__)

UNET = "model.diffusion_model."
CLIP_L = "conditioner.embedders.0.transformer.text_model."
CLIP_G = "conditioner.embedders.1.model."

CHANNELS = 320
TIME_EMBED = 1280
CONTEXT_DIM = 2048
ADM_IN = 2816  # pooled CLIP-G (1280) + six size/crop embeddings of 256
SDXL_DEPTHS = (0, 2, 10)  # transformer blocks per res block, per level
RES_PER_LEVEL = 2
VOCAB, POSITIONS = 49408, 77


def _transformer(p: str, c: int, depth: int, context: int = CONTEXT_DIM):
    yield from _norm(p + "norm.", c)
    yield from _linear(p + "proj_in.", c, c)
    for i in range(depth):
        b = p + f"transformer_blocks.{i}."
        for attn, ctx in (("attn1.", c), ("attn2.", context)):
            yield from _linear(b + attn + "to_q.", c, c, bias=False)
            yield from _linear(b + attn + "to_k.", c, ctx, bias=False)
            yield from _linear(b + attn + "to_v.", c, ctx, bias=False)
            yield from _linear(b + attn + "to_out.0.", c, c)
        yield from _linear(b + "ff.net.0.proj.", c * 8, c)  # GEGLU: two halves of 4c
        yield from _linear(b + "ff.net.2.", c, c * 4)
        for n in ("norm1.", "norm2.", "norm3."):
            yield from _norm(b + n, c)
    yield from _linear(p + "proj_out.", c, c)


def _unet():
    c = CHANNELS
    res = _unet_resblock  # time embedding 1280 wide, as in SD1.5
    yield from _linear(UNET + "time_embed.0.", TIME_EMBED, c)
    yield from _linear(UNET + "time_embed.2.", TIME_EMBED, TIME_EMBED)
    yield from _linear(UNET + "label_emb.0.0.", TIME_EMBED, ADM_IN)
    yield from _linear(UNET + "label_emb.0.2.", TIME_EMBED, TIME_EMBED)
    yield from _conv(UNET + "input_blocks.0.0.", c, 4, 3)
    block = 1
    for level, depth in enumerate(SDXL_DEPTHS):
        for _ in range(RES_PER_LEVEL):
            yield from res(UNET + f"input_blocks.{block}.0.", c, c)
            if depth:
                yield from _transformer(UNET + f"input_blocks.{block}.1.", c, depth)
            block += 1
        if level != len(SDXL_DEPTHS) - 1:
            yield from _conv(UNET + f"input_blocks.{block}.0.op.", c, c, 3)
            block += 1
    yield from res(UNET + "middle_block.0.", c, c)
    yield from _transformer(UNET + "middle_block.1.", c, SDXL_DEPTHS[-1])
    yield from res(UNET + "middle_block.2.", c, c)
    block = 0
    for level in reversed(range(len(SDXL_DEPTHS))):
        depth = SDXL_DEPTHS[level]
        for i in range(RES_PER_LEVEL + 1):  # each output block takes a skip connection: 2c in
            yield from res(UNET + f"output_blocks.{block}.0.", 2 * c, c)
            if depth:
                yield from _transformer(UNET + f"output_blocks.{block}.1.", c, depth)
            if level != 0 and i == RES_PER_LEVEL:
                yield from _conv(UNET + f"output_blocks.{block}.{2 if depth else 1}.conv.", c, c, 3)
            block += 1
    yield from _norm(UNET + "out.0.", c)
    yield from _conv(UNET + "out.2.", 4, c, 3)


def _clip_l():
    w, mlp = 768, 3072
    yield CLIP_L + "embeddings.token_embedding.weight", (VOCAB, w)
    yield CLIP_L + "embeddings.position_embedding.weight", (POSITIONS, w)
    for i in range(12):
        p = CLIP_L + f"encoder.layers.{i}."
        for n in ("q_proj.", "k_proj.", "v_proj.", "out_proj."):
            yield from _linear(p + "self_attn." + n, w, w)
        yield from _norm(p + "layer_norm1.", w)
        yield from _linear(p + "mlp.fc1.", mlp, w)
        yield from _linear(p + "mlp.fc2.", w, mlp)
        yield from _norm(p + "layer_norm2.", w)
    yield from _norm(CLIP_L + "final_layer_norm.", w)


def _clip_g():
    w, mlp = 1280, 5120
    yield CLIP_G + "token_embedding.weight", (VOCAB, w)
    yield CLIP_G + "positional_embedding", (POSITIONS, w)
    for i in range(32):
        p = CLIP_G + f"transformer.resblocks.{i}."
        yield p + "attn.in_proj_weight", (3 * w, w)
        yield p + "attn.in_proj_bias", (3 * w,)
        yield from _linear(p + "attn.out_proj.", w, w)
        yield from _norm(p + "ln_1.", w)
        yield from _linear(p + "mlp.c_fc.", mlp, w)
        yield from _linear(p + "mlp.c_proj.", w, mlp)
        yield from _norm(p + "ln_2.", w)
    yield from _norm(CLIP_G + "ln_final.", w)
    yield CLIP_G + "text_projection", (w, w)


def checkpoint_shapes() -> dict[str, Shape]:
    """Every key of the tiny SDXL checkpoint with its shape (UNet, VAE, both text encoders)."""
    return dict([*_unet(), *_vae(), *_clip_l(), *_clip_g()])


def build_state_dict(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """All tensors of the tiny SDXL checkpoint, drawn in a fixed order from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return {k: _init(k, s, gen).to(dtype) for k, s in checkpoint_shapes().items()}


def write_sdxl_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny SDXL checkpoint to `path` atomically (temp file in the same folder, then rename)."""
    from .. import __version__
    from ..files import atomic_save_safetensors

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = build_state_dict(seed)
    metadata = {
        "shielddiff.kind": "demo-checkpoint",
        "shielddiff.description": "tiny random-weight SDXL-layout checkpoint; draws noise, not pictures",
        "shielddiff.seed": str(seed),
        "shielddiff.version": __version__,
        "shielddiff.parameters": json.dumps(sum(t.numel() for t in state.values())),
        "modelspec.architecture": "stable-diffusion-xl-v1-base",
    }
    atomic_save_safetensors(state, path, metadata)
    log.info("wrote tiny SDXL checkpoint %s (%d tensors)", path, len(state))
    return path
