"""Load Stable Diffusion 1.x for training, offline: a diffusers folder or a single-file checkpoint.

A single file (the same .safetensors ComfyUI loads) is read with diffusers' single-file loader
and configs the pack writes itself: the SD1.5 model configs (UNet levels and res blocks read
from the file's keys, so the tiny demo checkpoint works too) and the CLIP tokenizer built from
the BPE table that open_clip ships. Nothing is fetched from a hub.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from functools import lru_cache
from pathlib import Path

__all__ = ["ModelLoadError", "file_hash", "load_pipeline", "unet_layout_from_keys", "write_sd15_configs"]

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says which file is missing or wrong, and what to do."""


SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD15_TEXT = {
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
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None],
    "safety_checker": [None, None],
    "requires_safety_checker": False,
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def file_hash(path: str | Path, limit: int = 1 << 24) -> str:
    """A short content hash (sha256 of the first 16 MiB and the size) to name a base model."""
    path = Path(path)
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(limit))
    return digest.hexdigest()[:16]


def unet_layout_from_keys(keys: list[str]) -> tuple[int, int]:
    """(levels, res blocks per level) of an original-layout SD UNet, read from its key names."""
    prefix = "model.diffusion_model.input_blocks."
    indices = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if not indices:
        raise ModelLoadError("the file has no Stable Diffusion UNet (no model.diffusion_model.input_blocks.* keys)")
    down = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.0\.op\.", k))}
    count = max(indices)  # input_blocks 1..count after the first convolution
    per_level = (min(down) if down else count + 1) - 1
    levels = len(down) + 1
    return levels, per_level


def _unet_config(levels: int, per_level: int) -> dict:
    if (levels, per_level) == (4, 2):
        return dict(SD15_UNET)
    if levels == 1:
        return dict(
            SD15_UNET,
            block_out_channels=[320],
            layers_per_block=per_level,
            down_block_types=["CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D"],
        )
    raise ModelLoadError(f"unsupported SD1.x UNet layout: {levels} levels with {per_level} res blocks each")


def _bytes_to_unicode() -> dict[int, str]:
    visible = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = visible[:]
    n = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(visible, (chr(c) for c in chars), strict=True))


def write_tokenizer(folder: Path) -> None:
    """CLIP's tokenizer files (vocab.json, merges.txt) from the BPE table bundled with open_clip."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(p) for p in pairs] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        )
    )


def write_sd15_configs(folder: Path, levels: int = 4, per_level: int = 2) -> Path:
    """A diffusers config folder for an SD1.x single file with the given UNet layout."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {
        "model_index.json": MODEL_INDEX,
        "unet/config.json": _unet_config(levels, per_level),
        "vae/config.json": SD15_VAE,
        "text_encoder/config.json": SD15_TEXT,
        "scheduler/scheduler_config.json": SD15_SCHEDULER,
    }
    for name, content in parts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=1))
    if not (folder / "tokenizer" / "vocab.json").exists():
        write_tokenizer(folder / "tokenizer")
    return folder


@lru_cache(maxsize=4)
def _config_folder(levels: int, per_level: int, cache: str) -> Path:
    return write_sd15_configs(Path(cache) / f"sd15-{levels}x{per_level}", levels, per_level)


def load_pipeline(path: str | Path, cache_dir: str | Path | None = None):
    """A StableDiffusionPipeline from a diffusers folder or an SD1.x single file, offline."""
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"{path} is a folder without model_index.json: give a diffusers model folder or a "
                ".safetensors checkpoint (e.g. one from ComfyUI/models/checkpoints)"
            )
        return StableDiffusionPipeline.from_pretrained(
            path, local_files_only=True, safety_checker=None, requires_safety_checker=False
        )
    if not path.is_file():
        raise ModelLoadError(
            f"checkpoint {path} does not exist: put an SD1.5 .safetensors file there "
            "(ComfyUI/models/checkpoints/ is where ComfyUI keeps them)"
        )
    if path.suffix != ".safetensors":
        raise ModelLoadError(
            f"{path.name}: only .safetensors checkpoints are loaded (a pickled {path.suffix} "
            "file could run code); convert it to safetensors first"
        )
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    levels, per_level = unet_layout_from_keys(keys)
    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "shielddiff" / "configs"
    config = _config_folder(levels, per_level, str(cache))
    log.info(
        "loading %s as SD1.x (%d UNet levels x %d res blocks) with configs in %s", path.name, levels, per_level, config
    )
    return StableDiffusionPipeline.from_single_file(
        str(path), config=str(config), local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
