"""A tiny, deterministic, random-weight checkpoint in the Stable Diffusion 1.5 single-file layout.

It exists so that a new install (and every test) has a checkpoint that ComfyUI's
CheckpointLoaderSimple detects as SD1.5 and that diffusers' single-file loader reads:
- UNet: SD1.5 widths (320 channels, 768-wide cross-attention, convolutional proj_in) but one
  level with one res block and one transformer (about 28M parameters);
- VAE: the full KL-f8 autoencoder layout (ch 128, mult 1,2,4,4, 2 res blocks);
- text encoder: a complete CLIP ViT-L/14 text tower (every tensor present, or ComfyUI would
  leave the rest uninitialised).
Every tensor is drawn from a seeded generator, so the file is the same on every machine with
the same torch version. It draws noise, not pictures: it is a stand-in for real weights.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = ["build_state_dict", "checkpoint_shapes", "write_demo_checkpoint"]

log = logging.getLogger(__name__)

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "cond_stage_model.transformer.text_model."

UNET_CHANNELS = 320
TIME_EMBED = 1280
CONTEXT_DIM = 768
VAE_CHANNELS = (128, 256, 512, 512)
CLIP_WIDTH, CLIP_LAYERS, CLIP_MLP, CLIP_VOCAB, CLIP_POSITIONS = 768, 12, 3072, 49408, 77

Shape = tuple[int, ...]


def _conv(p: str, cout: int, cin: int, k: int) -> Iterator[tuple[str, Shape]]:
    yield p + "weight", (cout, cin, k, k)
    yield p + "bias", (cout,)


def _linear(p: str, cout: int, cin: int, bias: bool = True) -> Iterator[tuple[str, Shape]]:
    yield p + "weight", (cout, cin)
    if bias:
        yield p + "bias", (cout,)


def _norm(p: str, c: int) -> Iterator[tuple[str, Shape]]:
    yield p + "weight", (c,)
    yield p + "bias", (c,)


def _unet_resblock(p: str, cin: int, cout: int):
    yield from _norm(p + "in_layers.0.", cin)
    yield from _conv(p + "in_layers.2.", cout, cin, 3)
    yield from _linear(p + "emb_layers.1.", cout, TIME_EMBED)
    yield from _norm(p + "out_layers.0.", cout)
    yield from _conv(p + "out_layers.3.", cout, cout, 3)
    if cin != cout:
        yield from _conv(p + "skip_connection.", cout, cin, 1)


def _unet_transformer(p: str, c: int):
    yield from _norm(p + "norm.", c)
    yield from _conv(p + "proj_in.", c, c, 1)
    b = p + "transformer_blocks.0."
    for attn, ctx in (("attn1.", c), ("attn2.", CONTEXT_DIM)):
        yield from _linear(b + attn + "to_q.", c, c, bias=False)
        yield from _linear(b + attn + "to_k.", c, ctx, bias=False)
        yield from _linear(b + attn + "to_v.", c, ctx, bias=False)
        yield from _linear(b + attn + "to_out.0.", c, c)
    yield from _linear(b + "ff.net.0.proj.", c * 8, c)  # GEGLU: two halves of 4c
    yield from _linear(b + "ff.net.2.", c, c * 4)
    for n in ("norm1.", "norm2.", "norm3."):
        yield from _norm(b + n, c)
    yield from _conv(p + "proj_out.", c, c, 1)


def _unet():
    c = UNET_CHANNELS
    yield from _linear(UNET + "time_embed.0.", TIME_EMBED, c)
    yield from _linear(UNET + "time_embed.2.", TIME_EMBED, TIME_EMBED)
    yield from _conv(UNET + "input_blocks.0.0.", c, 4, 3)
    yield from _unet_resblock(UNET + "input_blocks.1.0.", c, c)
    yield from _unet_transformer(UNET + "input_blocks.1.1.", c)
    yield from _unet_resblock(UNET + "middle_block.0.", c, c)
    yield from _unet_transformer(UNET + "middle_block.1.", c)
    yield from _unet_resblock(UNET + "middle_block.2.", c, c)
    for i in range(2):  # each output block takes a skip connection: 2c in
        yield from _unet_resblock(UNET + f"output_blocks.{i}.0.", 2 * c, c)
        yield from _unet_transformer(UNET + f"output_blocks.{i}.1.", c)
    yield from _norm(UNET + "out.0.", c)
    yield from _conv(UNET + "out.2.", 4, c, 3)


def _vae_resblock(p: str, cin: int, cout: int):
    yield from _norm(p + "norm1.", cin)
    yield from _conv(p + "conv1.", cout, cin, 3)
    yield from _norm(p + "norm2.", cout)
    yield from _conv(p + "conv2.", cout, cout, 3)
    if cin != cout:
        yield from _conv(p + "nin_shortcut.", cout, cin, 1)


def _vae_mid(p: str, c: int):
    yield from _vae_resblock(p + "block_1.", c, c)
    yield from _norm(p + "attn_1.norm.", c)
    for n in ("q.", "k.", "v.", "proj_out."):
        yield from _conv(p + "attn_1." + n, c, c, 1)
    yield from _vae_resblock(p + "block_2.", c, c)


def _vae():
    chs = VAE_CHANNELS
    e = VAE + "encoder."
    yield from _conv(e + "conv_in.", chs[0], 3, 3)
    block_in = chs[0]
    for i, ch in enumerate(chs):
        for j in range(2):
            yield from _vae_resblock(e + f"down.{i}.block.{j}.", block_in, ch)
            block_in = ch
        if i != len(chs) - 1:
            yield from _conv(e + f"down.{i}.downsample.conv.", ch, ch, 3)
    yield from _vae_mid(e + "mid.", chs[-1])
    yield from _norm(e + "norm_out.", chs[-1])
    yield from _conv(e + "conv_out.", 8, chs[-1], 3)
    yield from _conv(VAE + "quant_conv.", 8, 8, 1)
    yield from _conv(VAE + "post_quant_conv.", 4, 4, 1)
    d = VAE + "decoder."
    yield from _conv(d + "conv_in.", chs[-1], 4, 3)
    yield from _vae_mid(d + "mid.", chs[-1])
    block_in = chs[-1]
    for i in reversed(range(len(chs))):
        for j in range(3):
            yield from _vae_resblock(d + f"up.{i}.block.{j}.", block_in, chs[i])
            block_in = chs[i]
        if i != 0:
            yield from _conv(d + f"up.{i}.upsample.conv.", block_in, block_in, 3)
    yield from _norm(d + "norm_out.", chs[0])
    yield from _conv(d + "conv_out.", 3, chs[0], 3)


def _clip():
    w = CLIP_WIDTH
    yield CLIP + "embeddings.token_embedding.weight", (CLIP_VOCAB, w)
    yield CLIP + "embeddings.position_embedding.weight", (CLIP_POSITIONS, w)
    for i in range(CLIP_LAYERS):
        p = CLIP + f"encoder.layers.{i}."
        for n in ("q_proj.", "k_proj.", "v_proj.", "out_proj."):
            yield from _linear(p + "self_attn." + n, w, w)
        yield from _norm(p + "layer_norm1.", w)
        yield from _linear(p + "mlp.fc1.", CLIP_MLP, w)
        yield from _linear(p + "mlp.fc2.", w, CLIP_MLP)
        yield from _norm(p + "layer_norm2.", w)
    yield from _norm(CLIP + "final_layer_norm.", w)


def checkpoint_shapes() -> dict[str, Shape]:
    """Every key of the demo checkpoint with its shape (UNet, VAE, text encoder)."""
    return dict([*_unet(), *_vae(), *_clip()])


def _init(key: str, shape: Shape, gen: torch.Generator) -> torch.Tensor:
    if key.endswith("bias"):
        return torch.zeros(shape)
    if len(shape) == 1:  # the only 1-D weights are normalisation scales
        return torch.ones(shape)
    if "embedding" in key:
        return torch.randn(shape, generator=gen) * 0.02
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) / math.sqrt(fan_in)


def build_state_dict(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """All tensors of the demo checkpoint, drawn in a fixed order from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return {k: _init(k, s, gen).to(dtype) for k, s in checkpoint_shapes().items()}


def write_demo_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Write the demo checkpoint to `path` atomically (temp file in the same folder, then rename)."""
    from .. import __version__
    from ..files import atomic_save_safetensors

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = build_state_dict(seed)
    metadata = {
        "shielddiff.kind": "demo-checkpoint",
        "shielddiff.description": "tiny random-weight SD1.5-layout checkpoint; draws noise, not pictures",
        "shielddiff.seed": str(seed),
        "shielddiff.version": __version__,
        "shielddiff.parameters": json.dumps(sum(t.numel() for t in state.values())),
    }
    atomic_save_safetensors(state, path, metadata)
    log.info("wrote demo checkpoint %s (%d tensors)", path, len(state))
    return path
