"""Module names of Stable Diffusion LoRAs in the three namings tools use, and the maps between them.

A LoRA module is named here by its component and its diffusers/transformers module path:
("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q") or
("te1", "text_model.encoder.layers.0.self_attn.q_proj") ("te2" is SDXL's second encoder).

- kohya (A1111, Forge, kohya-ss): "lora_unet_" / "lora_te_" ("lora_te1_", "lora_te2_" for SDXL)
  + the path with "." replaced by "_".
- diffusers / peft: "unet." / "text_encoder." / "text_encoder_2." + the path.
- ComfyUI: "diffusion_model." + the path in the original (LDM) UNet layout, and
  "text_encoders.clip_l.transformer." / "text_encoders.clip_g.transformer." + the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LAYOUTS",
    "UnetLayout",
    "comfy_name",
    "diffusers_name",
    "diffusers_to_ldm",
    "from_comfy_name",
    "from_diffusers_name",
    "from_kohya_name",
    "kohya_name",
    "ldm_to_diffusers",
]

# Parts of module names that contain "_" themselves: kept whole when kohya's "_" become ".".
_COMPOUND = sorted(
    [
        "down_blocks",
        "up_blocks",
        "mid_block",
        "transformer_blocks",
        "proj_in",
        "proj_out",
        "to_q",
        "to_k",
        "to_v",
        "to_out",
        "time_emb_proj",
        "conv_shortcut",
        "conv_in",
        "conv_out",
        "conv_norm_out",
        "time_embedding",
        "linear_1",
        "linear_2",
        "add_embedding",
        "text_model",
        "self_attn",
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "layer_norm1",
        "layer_norm2",
        "final_layer_norm",
        "token_embedding",
        "position_embedding",
        "text_projection",
        "add_k_proj",
        "add_v_proj",
    ],
    key=len,
    reverse=True,
)
_KOHYA_PREFIX = {"unet": "lora_unet_", "te1": "lora_te1_", "te2": "lora_te2_"}
_DIFFUSERS_PREFIX = {"unet": "unet.", "te1": "text_encoder.", "te2": "text_encoder_2."}
_COMFY_TE_PREFIX = {"te1": "text_encoders.clip_l.transformer.", "te2": "text_encoders.clip_g.transformer."}


def _undo_underscores(flat: str) -> str:
    protected = flat
    for i, token in enumerate(_COMPOUND):
        protected = re.sub(rf"(?<![a-z0-9]){token}(?![a-z])", f"\x00{i}\x00", protected)
    dotted = protected.replace("_", ".")
    return re.sub(r"\x00(\d+)\x00", lambda m: _COMPOUND[int(m.group(1))], dotted)


def kohya_name(component: str, path: str, sdxl: bool = False) -> str:
    prefix = "lora_te_" if component == "te1" and not sdxl else _KOHYA_PREFIX[component]
    return prefix + path.replace(".", "_")


def from_kohya_name(name: str) -> tuple[str, str]:
    for component, prefix in (("unet", "lora_unet_"), ("te1", "lora_te1_"), ("te2", "lora_te2_"), ("te1", "lora_te_")):
        if name.startswith(prefix):
            return component, _undo_underscores(name[len(prefix) :])
    raise ValueError(
        f"{name!r} is not a kohya LoRA module name (lora_unet_..., lora_te_..., lora_te1_..., lora_te2_...)"
    )


def diffusers_name(component: str, path: str) -> str:
    return _DIFFUSERS_PREFIX[component] + path


def from_diffusers_name(name: str) -> tuple[str, str]:
    name = name.removeprefix("base_model.model.")
    for component, prefix in (("te2", "text_encoder_2."), ("te1", "text_encoder."), ("unet", "unet.")):
        if name.startswith(prefix):
            return component, name[len(prefix) :]
    if name.startswith(("down_blocks.", "up_blocks.", "mid_block.", "conv_", "time_embedding.")):
        return "unet", name  # a bare peft UNet save
    if name.startswith("text_model."):
        return "te1", name
    raise ValueError(f"{name!r} is not a diffusers/peft LoRA module name (unet.*, text_encoder.*, text_encoder_2.*)")


@dataclass(frozen=True)
class UnetLayout:
    """What the diffusers <-> original (LDM) UNet names depend on: res blocks per level and level count."""

    name: str
    layers_per_block: int
    levels: int
    attention_levels: tuple[int, ...]


LAYOUTS = {
    "sd15": UnetLayout("sd15", layers_per_block=2, levels=4, attention_levels=(0, 1, 2)),
    "sdxl": UnetLayout("sdxl", layers_per_block=2, levels=3, attention_levels=(1, 2)),
    # the pack's demo checkpoint: SD1.5 widths, one level with one res block
    "sd15-demo": UnetLayout("sd15-demo", layers_per_block=1, levels=1, attention_levels=(0,)),
}

_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_RESNET_FROM_LDM = {v: k for k, v in _RESNET_TO_LDM.items()}
_TOP_TO_LDM = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_TOP_FROM_LDM = {v: k for k, v in _TOP_TO_LDM.items()}
_TOP_TO_LDM |= {"class_embedding.linear_1": "label_emb.0.0", "class_embedding.linear_2": "label_emb.0.2"}


def _resnet_rest(rest: str, table: dict[str, str]) -> str:
    for src, dst in table.items():
        if rest == src or rest.startswith(src + "."):
            return dst + rest[len(src) :]
    raise ValueError(f"unknown res-block part {rest!r}")


def diffusers_to_ldm(path: str, layout: UnetLayout) -> str:
    """A diffusers UNet module path -> the original UNet's path (what ComfyUI calls it)."""
    r = layout.layers_per_block
    if path in _TOP_TO_LDM:
        return _TOP_TO_LDM[path]
    m = re.fullmatch(r"(down_blocks|up_blocks)\.(\d+)\.(attentions|resnets|downsamplers|upsamplers)\.(\d+)\.(.+)", path)
    if m:
        kind, i, part, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        if part == "downsamplers":
            return f"input_blocks.{(i + 1) * (r + 1)}.0.op"
        if part == "upsamplers":
            slot = 2 if (layout.levels - 1 - i) in layout.attention_levels else 1
            return f"output_blocks.{i * (r + 1) + r}.{slot}.conv"
        block, index = (
            ("input_blocks", 1 + i * (r + 1) + j) if kind == "down_blocks" else ("output_blocks", i * (r + 1) + j)
        )
        if part == "attentions":
            return f"{block}.{index}.1.{rest}"
        return f"{block}.{index}.0.{_resnet_rest(rest, _RESNET_TO_LDM)}"
    m = re.fullmatch(r"mid_block\.(attentions|resnets)\.(\d+)\.(.+)", path)
    if m:
        part, j, rest = m.group(1), int(m.group(2)), m.group(3)
        if part == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{2 * j}.{_resnet_rest(rest, _RESNET_TO_LDM)}"
    raise ValueError(f"no original-UNet name for diffusers module {path!r} in layout {layout.name}")


def ldm_to_diffusers(path: str, layout: UnetLayout) -> str:
    """The inverse of diffusers_to_ldm."""
    r = layout.layers_per_block
    if path in _TOP_FROM_LDM:
        return _TOP_FROM_LDM[path]
    m = re.fullmatch(r"middle_block\.(\d+)\.(.+)", path)
    if m:
        index, rest = int(m.group(1)), m.group(2)
        if index == 1:
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{index // 2}.{_resnet_rest(rest, _RESNET_FROM_LDM)}"
    m = re.fullmatch(r"(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.+)", path)
    if not m:
        raise ValueError(f"{path!r} is not an original-UNet module path")
    block, index, slot, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
    if block == "input_blocks":
        if index % (r + 1) == 0:
            if (slot, rest) != (0, "op"):
                raise ValueError(f"{path!r} is not a module of layout {layout.name}")
            return f"down_blocks.{index // (r + 1) - 1}.downsamplers.0.conv"
        i, j = divmod(index - 1, r + 1)
        if slot == 1:
            return f"down_blocks.{i}.attentions.{j}.{rest}"
        return f"down_blocks.{i}.resnets.{j}.{_resnet_rest(rest, _RESNET_FROM_LDM)}"
    i, j = divmod(index, r + 1)
    has_attention = (layout.levels - 1 - i) in layout.attention_levels
    if slot == 0:
        return f"up_blocks.{i}.resnets.{j}.{_resnet_rest(rest, _RESNET_FROM_LDM)}"
    if slot == 1 and has_attention:
        return f"up_blocks.{i}.attentions.{j}.{rest}"
    if j == r and rest == "conv" and slot == (2 if has_attention else 1):
        return f"up_blocks.{i}.upsamplers.0.conv"
    raise ValueError(f"{path!r} is not a module of layout {layout.name}")


def comfy_name(component: str, path: str, layout: UnetLayout) -> str:
    if component == "unet":
        return "diffusion_model." + diffusers_to_ldm(path, layout)
    return _COMFY_TE_PREFIX[component] + path


def from_comfy_name(name: str, layout: UnetLayout) -> tuple[str, str]:
    if name.startswith("diffusion_model."):
        return "unet", ldm_to_diffusers(name[len("diffusion_model.") :], layout)
    for component, prefix in _COMFY_TE_PREFIX.items():
        if name.startswith(prefix):
            return component, name[len(prefix) :]
    raise ValueError(f"{name!r} is not a ComfyUI LoRA module name (diffusion_model.*, text_encoders.clip_l/clip_g.*)")
