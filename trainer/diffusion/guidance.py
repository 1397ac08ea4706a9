"""What every method does with a diffusion model: encode prompts, predict noise with
classifier-free guidance, decode latents to images."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["decode_images", "encode_prompts", "guided_eps"]


@torch.no_grad()
def encode_prompts(pipe, prompts: list[str], device) -> torch.Tensor:
    ids = pipe.tokenizer(
        prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
    return pipe.text_encoder(ids)[0]


def guided_eps(unet, latents, t, prompt_embeds, negative_embeds, guidance: float) -> torch.Tensor:
    """The classifier-free-guided noise prediction (one UNet call on the doubled batch)."""
    model_in = torch.cat([latents, latents])
    t_in = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim == 1 else t  # per-sample timesteps, doubled
    eps = unet(model_in, t_in, encoder_hidden_states=torch.cat([negative_embeds, prompt_embeds])).sample
    eps_uncond, eps_text = eps.chunk(2)
    return eps_uncond + guidance * (eps_text - eps_uncond)


@torch.no_grad()
def decode_images(vae, latents: torch.Tensor) -> list[np.ndarray]:
    """Final latents -> RGB uint8 images."""
    images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return list(images.permute(0, 2, 3, 1).cpu().numpy())
