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

from ..trainer.erase.purify import ddim_invert, ddim_regenerate, guided, inversion_timesteps
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
    def eps(x: torch.Tensor, t: int, cond: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        cross, y = cond
        b = x.shape[0]
        sigma = sigmas[t].repeat(b).to(device)
        scale = (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1)
        x_k = x.to(device) * scale
        extra = {} if y is None else {"y": y.expand(b, -1).to(device)}
        denoised = model.apply_model(x_k, sigma, c_crossattn=cross.expand(b, -1, -1).to(device), **extra)
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


def _encode(patcher, clip, text: str, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prompt's cross-attention conditioning and, for models with added conditioning (SDXL's
    `y`: the pooled text embedding and the image size), ComfyUI's own encoding of it."""
    cross, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
    y = patcher.model.encode_adm(pooled_output=pooled, width=width, height=height, device="cpu", prompt_type="positive")
    return cross.float().cpu(), None if y is None else y.float().cpu()


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
                    "guidance",
                    default=1.0,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                    tooltip="Classifier-free guidance of the inversion and the regeneration, against the empty "
                    "prompt. 1.0 uses the prompt's prediction alone (exact DDIM inversion works best near 1); "
                    "higher follows the prompt more and inverts less faithfully.",
                ),
                io.Float.Input(
                    "lora_strength",
                    default=1.0,
                    min=0.0,
                    max=2.0,
                    step=0.05,
                    tooltip="Strength of the erasure LoRA in the regeneration (model and text encoder). 0 "
                    "regenerates with the base model.",
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
        guidance: float = 1.0,
        lora_strength: float = 1.0,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    ):
        check_size(image, vae, max_megapixels)
        erased_model, erased_clip, info = apply_lora(model, clip, lora_name, lora_strength, lora_strength)
        eps_base, alphas = comfy_eps(model)
        eps_erased, _ = comfy_eps(erased_model)
        height, width = image.shape[1], image.shape[2]
        eps_base = guided(eps_base, _encode(model, clip, "", height, width), guidance)
        eps_erased = guided(eps_erased, _encode(erased_model, erased_clip, "", height, width), guidance)
        timesteps = inversion_timesteps(len(alphas), steps, strength)
        bar = comfy.utils.ProgressBar(max(1, 2 * len(timesteps)))
        cond_base = _encode(model, clip, prompt, height, width)
        cond_erased = _encode(erased_model, erased_clip, prompt, height, width)
        comfy.model_management.load_models_gpu([model])
        encoded = vae.encode(image[:, :, :, :3])
        if timesteps:
            x0 = model.model.process_latent_in(encoded).float().cpu()
            x_t = ddim_invert(eps_base, x0, cond_base, alphas, timesteps, progress=lambda: bar.update(1))
            comfy.model_management.load_models_gpu([erased_model])  # the same weights, now with the LoRA patched in
            out = ddim_regenerate(eps_erased, x_t, cond_erased, alphas, timesteps, progress=lambda: bar.update(1))
            encoded = model.model.process_latent_out(out.to(comfy.model_management.intermediate_device()))
        # strength 0: the VAE's own latent, decoded as it came (no scaling there and back, no dtype change),
        # so the result is exactly ComfyUI's VAE round trip on every ComfyUI version
        pixels = vae.decode(encoded)
        text = (
            f"inverted {len(timesteps)} of {steps} DDIM steps with the base model (guidance {guidance:g}), "
            f"regenerated with {lora_name} at strength {lora_strength:g} ({info['matched_modules']} of "
            f"{info['modules']} modules applied)"
        )
        log.info("%s", text)
        return io.NodeOutput(torch.nan_to_num(pixels.float()).clamp(0, 1), ui={"shielddiff_purify": [text]})
