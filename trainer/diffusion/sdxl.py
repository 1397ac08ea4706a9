"""Load SDXL-family models (SDXL 1.0, Pony, Illustrious, NoobAI...) for training, offline.

A single file (the .safetensors ComfyUI loads) is read with diffusers' single-file loader and a
config folder the pack writes itself: the UNet config read from the file's key names and shapes
(so the tiny test checkpoint and real SDXL both load), SDXL's VAE (scaling factor 0.13025),
both text encoders (CLIP ViT-L/14 and OpenCLIP ViT-bigG/14) and both tokenizers, built from the
BPE table open_clip ships. A diffusers SDXL folder loads as it is. Nothing is fetched from a hub.
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path

from .loading import ModelLoadError, write_tokenizer

__all__ = ["SDXL_SCALING_FACTOR", "load_sdxl_pipeline", "sdxl_unet_config", "write_sdxl_configs"]

log = logging.getLogger(__name__)

UNET = "model.diffusion_model."
SDXL_SCALING_FACTOR = 0.13025
HEAD_CHANNELS = 64

SDXL_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": SDXL_SCALING_FACTOR,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}
CLIP_G = dict(
    CLIP_L,
    architectures=["CLIPTextModelWithProjection"],
    hidden_act="gelu",
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    projection_dim=1280,
)
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def _count(keys: set[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def sdxl_unet_config(shapes: dict[str, tuple[int, ...]]) -> dict:
    """The diffusers UNet config of an original-layout SDXL UNet, read from its key names and shapes."""
    keys = set(shapes)
    base = shapes[UNET + "input_blocks.0.0.weight"][0]
    down = sorted(
        {int(m.group(1)) for k in keys if (m := re.match(re.escape(UNET) + r"input_blocks\.(\d+)\.0\.op\.", k))}
    )
    blocks = _count(keys, re.escape(UNET) + r"input_blocks\.(\d+)\.")
    per_level = (down[0] - 1) if down else blocks - 1
    levels = len(down) + 1
    channels, depths = [], []
    for level in range(levels):
        first = 1 + level * (per_level + 1)
        channels.append(shapes[UNET + f"input_blocks.{first}.0.out_layers.3.weight"][0])
        depths.append(_count(keys, re.escape(UNET) + rf"input_blocks\.{first}\.1\.transformer_blocks\.(\d+)\."))
    middle = _count(keys, re.escape(UNET) + r"middle_block\.1\.transformer_blocks\.(\d+)\.")
    if middle != depths[-1]:
        raise ModelLoadError(
            f"unsupported SDXL UNet layout: {middle} transformer blocks in the middle against {depths[-1]} in the "
            "last level (diffusers needs them equal)"
        )
    context = shapes[next(k for k in sorted(keys) if k.endswith("attn2.to_k.weight"))][1]
    return {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256,
        "attention_head_dim": [c // HEAD_CHANNELS for c in channels],
        "block_out_channels": channels,
        "center_input_sample": False,
        "cross_attention_dim": context,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": shapes[UNET + "input_blocks.0.0.weight"][1],
        "layers_per_block": per_level,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": shapes[UNET + "out.2.weight"][0],
        "projection_class_embeddings_input_dim": shapes[UNET + "label_emb.0.0.weight"][1],
        "sample_size": 128,
        "time_embedding_type": "positional",
        "transformer_layers_per_block": [max(d, 1) for d in depths],
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        "use_linear_projection": len(shapes[next(k for k in sorted(keys) if k.endswith(".1.proj_in.weight"))]) == 2,
        "_base_channels": base,
    }


def write_sdxl_configs(folder: Path, unet: dict) -> Path:
    """A diffusers SDXL config folder (no weights) with the given UNet config and both tokenizers."""
    folder.mkdir(parents=True, exist_ok=True)
    unet = {k: v for k, v in unet.items() if not k.startswith("_base")}
    parts = {
        "model_index.json": SDXL_INDEX,
        "unet/config.json": unet,
        "vae/config.json": SDXL_VAE,
        "text_encoder/config.json": CLIP_L,
        "text_encoder_2/config.json": CLIP_G,
        "scheduler/scheduler_config.json": SDXL_SCHEDULER,
    }
    for name, content in parts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=1))
    for sub, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        if not (folder / sub / "vocab.json").exists():
            write_tokenizer(folder / sub)
            config = json.loads((folder / sub / "tokenizer_config.json").read_text())
            (folder / sub / "tokenizer_config.json").write_text(json.dumps(dict(config, pad_token=pad)))
    return folder


@lru_cache(maxsize=4)
def _config_folder(unet_json: str, cache: str) -> Path:
    unet = json.loads(unet_json)
    name = "sdxl-" + "-".join(str(c) for c in unet["block_out_channels"]) + "-d"
    name += "-".join(str(d) for d in unet["transformer_layers_per_block"])
    return write_sdxl_configs(Path(cache) / name, unet)


def load_sdxl_pipeline(path: Path, shapes: dict[str, tuple[int, ...]], cache: Path):
    """A StableDiffusionXLPipeline from an SDXL single file (its key shapes given), offline."""
    from diffusers import StableDiffusionXLPipeline

    config = _config_folder(json.dumps(sdxl_unet_config(shapes), sort_keys=True), str(cache))
    log.info("loading %s as SDXL with configs in %s", path.name, config)
    return StableDiffusionXLPipeline.from_single_file(str(path), config=str(config), local_files_only=True)


def encode_sdxl_prompts(pipe, prompts: list[str], device=None):
    """(embeddings, pooled) as SDXL conditions on them: both encoders' penultimate hidden states side
    by side (77 x 2048) and OpenCLIP's projected pooled output (1280), as ComfyUI's CLIPTextEncode gives."""
    import torch

    device = device or pipe.unet.device
    states = []
    for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        ids = tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        out = encoder(ids, output_hidden_states=True)
        states.append(out.hidden_states[-2])
    return torch.cat(states, dim=-1), out.text_embeds


def sdxl_time_ids(height: int, width: int, batch: int, dtype=None, device=None):
    """SDXL's size conditioning for an uncropped image generated at its own size:
    (original height, width, crop top, left, target height, width), as ComfyUI sets it."""
    import torch

    ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype or torch.float32, device=device)
    return ids.repeat(batch, 1)


def is_sdxl(pipe) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def encode_packed_prompts(pipe, prompts: list[str], device=None):
    """SDXL's conditioning in one tensor the trainers pass around like SD1.x embeddings: the 77
    hidden-state rows, then one row holding the pooled embedding (zero-padded to the row width).
    Batch indexing, repeats and the classifier-free-guidance concatenation work on it unchanged;
    the hook `unpack_conditioning_in` installs on the UNet splits it again."""
    import torch

    embeds, pooled = encode_sdxl_prompts(pipe, prompts, device)
    row = torch.zeros(embeds.shape[0], 1, embeds.shape[2], dtype=embeds.dtype, device=embeds.device)
    row[:, 0, : pooled.shape[1]] = pooled.to(embeds.dtype)
    return torch.cat([embeds, row], dim=1)


def unpack_conditioning_in(unet, pooled_dim: int, vae_scale_factor: int) -> None:
    """Let `unet(x, t, encoder_hidden_states=packed)` take packed SDXL conditioning: a forward
    pre-hook splits it into the hidden states and `added_cond_kwargs` (the pooled embedding and the
    size conditioning of an uncropped image of the sample's size). Calls that pass their own
    `added_cond_kwargs` (diffusers' pipeline) are left alone. The UNet, its LoRA and its switches
    (disable_adapters, gradient checkpointing) stay the same object."""

    def hook(module, args, kwargs):
        states = kwargs.get("encoder_hidden_states")
        if states is None or kwargs.get("added_cond_kwargs") is not None:
            return None
        sample = args[0] if args else kwargs["sample"]
        height, width = sample.shape[-2] * vae_scale_factor, sample.shape[-1] * vae_scale_factor
        added = {
            "text_embeds": states[:, -1, :pooled_dim],
            "time_ids": sdxl_time_ids(height, width, states.shape[0], states.dtype, states.device),
        }
        return args, dict(kwargs, encoder_hidden_states=states[:, :-1], added_cond_kwargs=added)

    unet.register_forward_pre_hook(hook, with_kwargs=True)
