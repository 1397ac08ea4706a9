"""SDXL LoRA training memory: the fixed part by arithmetic (any machine), the peak by measurement (a GPU).

    python benchmarks/sdxl_memory.py                      # parameter counts and weight memory (CPU, no weights)
    python benchmarks/sdxl_memory.py --measure --resolution 1024 --method shielddiff-rl
    python benchmarks/sdxl_memory.py --measure --resolution 768 --method all-but-one

--measure builds a random-weight SDXL of the real sizes (2.6 B UNet parameters; no download: the
memory a training step takes does not depend on the weights' values), saves it as a diffusers folder,
runs one epoch of the chosen method through the trainer with bf16 and gradient checkpointing, and
prints torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.diffusion.sdxl import CLIP_G, CLIP_L, SDXL_VAE

SDXL_UNET = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def _models(device):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET)
        te1 = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in CLIP_L.items() if k != "architectures"}))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**{k: v for k, v in CLIP_G.items() if k != "architectures"}))
        vae = AutoencoderKL(**{k: v for k, v in SDXL_VAE.items() if not k.startswith("_")})
    return unet, te1, te2, vae


def estimate(rank: int) -> dict:
    unet, te1, te2, vae = _models("meta")
    count = {
        name: sum(p.numel() for p in m.parameters())
        for name, m in (("unet", unet), ("te1", te1), ("te2", te2), ("vae", vae))
    }
    lora = sum(
        rank * (m.in_features + m.out_features)
        for n, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear) and ".attn" in n and n.endswith(tuple("." + t for t in TARGETS))
    )
    gib = 1024**3
    return {
        "parameters": count,
        "lora_parameters": lora,
        "bf16_unet_and_text_encoders_GiB": round(2 * (count["unet"] + count["te1"] + count["te2"]) / gib, 2),
        "fp32_vae_GiB": round(4 * count["vae"] / gib, 2),
        "lora_weights_grads_adamw_fp32_GiB": round(4 * 4 * lora / gib, 3),  # weight, grad, two moments
    }


def measure(args) -> dict:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    from trainer.diffusion.sdxl import SDXL_SCHEDULER, write_sdxl_configs
    from trainer.training.config import load_config

    folder = Path(tempfile.mkdtemp()) / "sdxl-random"
    configs = write_sdxl_configs(folder.with_name("configs"), dict(SDXL_UNET, _class_name="UNet2DConditionModel"))
    unet, te1, te2, vae = _models("cuda")
    scheduler = EulerDiscreteScheduler.from_config({k: v for k, v in SDXL_SCHEDULER.items() if k != "_class_name"})
    pipe = StableDiffusionXLPipeline(
        vae.half(),
        te1.half(),
        te2.half(),
        CLIPTokenizer.from_pretrained(configs / "tokenizer"),
        CLIPTokenizer.from_pretrained(configs / "tokenizer_2"),
        unet.half(),
        scheduler,
    )
    pipe.save_pretrained(folder)
    del pipe, unet, te1, te2, vae
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    overrides = [
        f'model.checkpoint="{folder}"',
        f"model.resolution={args.resolution}",
        'model.mixed_precision="bf16"',
        "model.gradient_checkpointing=true",
        f'train.method="{args.method}"',
        "train.epochs=1",
        "train.batch_size=1",
        f"lora.rank={args.rank}",
        "sample.batch_size=1",
        "sample.batches_per_epoch=1",
        f"sample.steps={args.steps}",
        "train.timestep_batch=1",
        "reward.kind=center-brightness",
        "erase.steps=10",
        "erase.iterations=2",
        "train.samples_to_save=0",
    ]
    config = load_config(None, overrides)
    if args.method == "all-but-one":
        from trainer.erase.trainer import train
    else:
        from trainer.rl.trainer import train
    train(config, folder.with_name("job"))
    return {
        "resolution": args.resolution,
        "method": args.method,
        "overrides": overrides,
        "peak_allocated_GiB": round(torch.cuda.max_memory_allocated() / 1024**3, 2),
        "device": torch.cuda.get_device_name(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="run one epoch on a CUDA GPU and report the peak")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--method", choices=("shielddiff-rl", "all-but-one"), default="shielddiff-rl")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    result = measure(args) if args.measure else estimate(args.rank)
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
