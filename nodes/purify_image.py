"""Purify Image: DDIM-invert an image with the base model, regenerate it with an erasure LoRA applied.

The math is trainer/erase/purify.py (ComfyUI-free); this node adapts ComfyUI's model (a
ModelPatcher: `apply_model` in its sigma parametrisation) to a noise prediction eps(x, t, cond)
on DDIM latents, and ComfyUI's VAE to latents. The LoRA is applied by the loader node's code.
"""

from __future__ import annotations

import logging
import math

import comfy.model_management
import comfy.model_sampling
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..trainer.erase.purify import ddim_invert, ddim_regenerate, inversion_timesteps
from .lora_loader import apply_lora

log = logging.getLogger(__name__)


def comfy_eps(patcher):
    """(eps(x, t, cond), alphas_cumprod) for an epsilon-predicting ComfyUI model.

    A DDIM latent x_t = sqrt(a) x0 + sqrt(1 - a) eps is ComfyUI's x0 + sigma eps divided by
    sqrt(1 + sigma^2), with sigma = sqrt((1 - a) / a); ComfyUI returns the denoised x0.
    """
    model = patcher.model
    sampling = model.model_sampling
    if not isinstance(sampling, comfy.model_sampling.EPS) or isinstance(sampling, comfy.model_sampling.V_PREDICTION):
        raise ValueError(f"Purify Image needs an epsilon-predicting model (SD1.x, SDXL), not {type(sampling).__name__}")
    if not isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete):
        raise ValueError("Purify Image needs a model with a discrete (1000-step) noise schedule, as SD1.x and SDXL")
    sigmas = sampling.sigmas.detach().float().cpu()
    device = comfy.model_management.get_torch_device()

    @torch.no_grad()
    def eps(x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        sigma = sigmas[t].repeat(b).to(device)
        scale = (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1)
        x_k = x.to(device) * scale
        denoised = model.apply_model(x_k, sigma, c_crossattn=cond.expand(b, -1, -1).to(device))
        return ((x_k - denoised.float()) / sigma.reshape(-1, 1, 1, 1)).float().cpu()

    return eps, 1.0 / (1.0 + sigmas.double() ** 2)


DEFAULT_MAX_MEGAPIXELS = 4.0
UNET_HALVINGS = 3  # SD1.x and SDXL UNets halve the latent three times


def check_size(image: torch.Tensor, vae, max_megapixels: float) -> None:
    """Refuse an image the VAE and UNet cannot take (too small), or one above the user's size limit."""
    height, width = int(image.shape[1]), int(image.shape[2])
    ratio = vae.downscale_ratio if isinstance(getattr(vae, "downscale_ratio", None), int) else 8
    least = ratio * 2**UNET_HALVINGS
    if min(height, width) < least:
        raise ValueError(
            f"Purify Image: the image is {width}x{height} px; this VAE and model need at least {least}x{least} px "
            f"(latents are 1/{ratio} of the image and the model halves them {UNET_HALVINGS} times). Upscale it first."
        )
    if not math.isfinite(max_megapixels) or max_megapixels <= 0:
        raise ValueError(f"Purify Image: max_megapixels is {max_megapixels}; it must be a positive number")
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise ValueError(
            f"Purify Image: the image is {width}x{height} px ({megapixels:.2f} MP), above max_megapixels "
            f"{max_megapixels:g}: raise max_megapixels if your machine has the memory, or downscale the image."
        )


def _encode(clip, text: str) -> torch.Tensor:
    return clip.encode_from_tokens(clip.tokenize(text)).float().cpu()


class PurifyImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffPurifyImage",
            display_name="Purify Image (ShieldDiff)",
            category="ShieldDiff/erasure",
            description="Removes an erased concept from an image: DDIM inversion with the base model, then "
            "regeneration with the erasure LoRA applied (All-but-One's purification). What the LoRA does not "
            "change comes back as it was.",
            inputs=[
                io.Image.Input("image"),
                io.Model.Input("model", tooltip="The base model (without the erasure LoRA)."),
                io.Clip.Input("clip"),
                io.Vae.Input("vae"),
                io.Combo.Input(
                    "lora_name",
                    options=folder_paths.get_filename_list("loras"),
                    tooltip="The erasure LoRA (e.g. trained with All-but-One), applied for the regeneration.",
                ),
                io.String.Input(
                    "prompt",
                    multiline=True,
                    default="",
                    tooltip="Describes the image (e.g. naming the concept); used on the way up and down.",
                ),
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="DDIM steps for the whole trajectory."),
                io.Float.Input(
                    "strength",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="How far to invert, as img2img's denoise: 1.0 goes all the way to noise, 0 changes "
                    "nothing. More strength removes more of the concept and keeps less of the image.",
                ),
                io.Float.Input(
                    "max_megapixels",
                    default=DEFAULT_MAX_MEGAPIXELS,
                    min=0.001,
                    max=1024.0,
                    step=0.1,
                    optional=True,
                    tooltip="Larger images are refused, to keep a run within memory; raise it if your machine "
                    "has the memory for the image.",
                ),
            ],
            outputs=[io.Image.Output("IMAGE", display_name="IMAGE")],
        )

    @classmethod
    def execute(
        cls,
        image,
        model,
        clip,
        vae,
        lora_name: str,
        prompt: str,
        steps: int,
        strength: float,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    ):
        check_size(image, vae, max_megapixels)
        erased_model, erased_clip, info = apply_lora(model, clip, lora_name, 1.0, 1.0)
        eps_base, alphas = comfy_eps(model)
        eps_erased, _ = comfy_eps(erased_model)
        timesteps = inversion_timesteps(len(alphas), steps, strength)
        bar = comfy.utils.ProgressBar(max(1, 2 * len(timesteps)))
        cond_base, cond_erased = _encode(clip, prompt), _encode(erased_clip, prompt)
        comfy.model_management.load_models_gpu([model])
        x0 = model.model.process_latent_in(vae.encode(image[:, :, :, :3])).float().cpu()
        out = x0
        if timesteps:
            x_t = ddim_invert(eps_base, x0, cond_base, alphas, timesteps, progress=lambda: bar.update(1))
            comfy.model_management.load_models_gpu([erased_model])  # the same weights, now with the LoRA patched in
            out = ddim_regenerate(eps_erased, x_t, cond_erased, alphas, timesteps, progress=lambda: bar.update(1))
        pixels = vae.decode(model.model.process_latent_out(out.to(comfy.model_management.intermediate_device())))
        text = (
            f"inverted {len(timesteps)} of {steps} DDIM steps with the base model, regenerated with "
            f"{lora_name} ({info['matched_modules']} of {info['modules']} modules applied)"
        )
        log.info("%s", text)
        return io.NodeOutput(torch.nan_to_num(pixels.float()).clamp(0, 1), ui={"shielddiff_purify": [text]})
