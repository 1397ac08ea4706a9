"""A tiny random Stable Diffusion pipeline, saved as a diffusers folder: the model that tests and
benchmarks train and sample in seconds on a CPU (random weights: it draws noise, not pictures)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["tiny_pipeline"]


def tiny_pipeline(folder: Path, seed: int = 0, text_strength: float = 1.0) -> Path:
    """A tiny random StableDiffusionPipeline saved as a diffusers folder (the RL tests' model).

    `text_strength` > 1 scales the text encoder's token embeddings by it and the UNet's
    cross-attention keys and values by a quarter of it, so that different prompts give clearly
    different noise predictions (at 20: the guidance term is about a fifth of eps's norm,
    against a twentieth at 1); the erasure tests need prompts the model tells apart."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .loading import write_tokenizer

    folder = Path(folder)
    if (folder / "model_index.json").exists():
        return folder
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=5,
            num_attention_heads=4,
            vocab_size=49408,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            max_position_embeddings=77,
        )
    )
    write_tokenizer(folder / "_tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "_tokenizer")
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    if text_strength != 1.0:
        with torch.no_grad():
            text.get_input_embeddings().weight.mul_(text_strength)
            for name, module in unet.named_modules():
                if name.endswith(("attn2.to_k", "attn2.to_v")):
                    module.weight.mul_(text_strength / 4)
    pipe = StableDiffusionPipeline(vae, text, tokenizer, unet, scheduler, None, None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder
