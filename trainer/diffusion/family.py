"""Which model family a checkpoint belongs to, read from its tensor names and shapes (no weights loaded).

The trainer supports two epsilon-prediction families: SD1.x and SDXL (SDXL 1.0 and the models
fine-tuned from it: Pony, Illustrious, NoobAI...). Everything else is named, so a refusal can say
what was found: SD2.x, SDXL v-prediction, the SDXL refiner, SD3, Flux, or "not a UNet we know".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUPPORTED", "Family", "UnsupportedFamilyError", "checkpoint_family", "family_of", "require_trainable"]

UNET = "model.diffusion_model."
SUPPORTED = ("sd15", "sdxl")


@dataclass(frozen=True)
class Family:
    key: str  # sd15, sdxl, sd2, sdxl-vpred, sdxl-refiner, sd3, flux, unknown
    label: str  # what a person calls it

    @property
    def supported(self) -> bool:
        return self.key in SUPPORTED


class UnsupportedFamilyError(ValueError):
    """The checkpoint is of a family the trainer cannot train; the message names it."""


SD15 = Family("sd15", "SD1.x")
SDXL = Family("sdxl", "SDXL (SDXL 1.0, Pony, Illustrious...)")


def family_of(shapes: dict[str, tuple[int, ...]]) -> Family:
    """The family of a single-file checkpoint from its {key: shape} table."""
    keys = shapes.keys()
    if any("joint_blocks.0.context_block" in k for k in keys):
        return Family("sd3", "SD3 / SD3.5 (MMDiT)")
    if any("double_blocks.0.img_attn" in k for k in keys):
        return Family("flux", "Flux")
    to_k = sorted(k for k in keys if k.startswith(UNET) and k.endswith("attn2.to_k.weight"))
    if not to_k:
        return Family("unknown", "not a Stable Diffusion UNet checkpoint (no model.diffusion_model.*attn2 keys)")
    context = shapes[to_k[0]][1]
    adm = shapes.get(UNET + "label_emb.0.0.weight", (0, 0))[1]
    vpred = "v_pred" in keys or "edm_vpred.sigma_max" in keys
    if context == 768 and not adm:
        return SD15
    if context == 1024:
        return Family("sd2", "SD2.x (768-px models predict v)")
    if context == 2048 and adm == 2816:
        return Family("sdxl-vpred", "SDXL v-prediction") if vpred else SDXL
    if context == 1280 and adm == 2560:
        return Family("sdxl-refiner", "SDXL refiner")
    return Family("unknown", f"an unknown UNet (cross-attention width {context}, added conditioning {adm})")


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """{key: shape} of a .safetensors file, read from its header only."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _folder_family(path: Path) -> Family:
    index = json.loads((path / "model_index.json").read_text())
    name = index.get("_class_name", "")
    if name == "StableDiffusionXLPipeline":
        return SDXL
    if name == "StableDiffusionPipeline":
        unet = path / "unet" / "config.json"
        context = json.loads(unet.read_text()).get("cross_attention_dim", 768) if unet.is_file() else 768
        return SD15 if context != 1024 else Family("sd2", "SD2.x (768-px models predict v)")
    return Family("unknown", f"a diffusers {name or 'pipeline without a _class_name'}")


def checkpoint_family(path: str | Path) -> Family:
    """The family of a .safetensors checkpoint or a diffusers model folder."""
    path = Path(path)
    if path.is_dir() and (path / "model_index.json").is_file():
        return _folder_family(path)
    return family_of(checkpoint_shapes(path))


def require_trainable(path: str | Path) -> Family:
    """The checkpoint's family, or UnsupportedFamilyError naming it when the trainer cannot train it."""
    family = checkpoint_family(path)
    if not family.supported:
        raise UnsupportedFamilyError(
            f"{Path(path).name} is {family.label}: the trainer trains SD1.x and SDXL-family "
            "(epsilon-prediction) checkpoints only; choose one of those"
        )
    return family
