"""Load ShieldDiff LoRA: apply a LoRA through ComfyUI's own LoRA machinery, and say how much of it applied.

A safety LoRA that silently does not load is worse than none: this node refuses a file whose
keys match none of the model's weights, and reports partial matches in its `info` output.
"""

from __future__ import annotations

import json
import logging
import math
import os

import comfy.lora
import comfy.lora_convert
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..trainer.lora.formats import LoraFormatError, read_lora, read_lora_header, state_dict_in
from .lora_fit import fitting_patches

log = logging.getLogger(__name__)

_MODEL_FAMILY = {"SD15": "sd15", "SD20": "sd2", "SDXL": "sdxl", "SDXLRefiner": "sdxl-refiner"}


def _lora_path(name: str) -> str:
    """The file in a loras folder; a name that points elsewhere ('..', absolute paths) is refused.
    (A symlink the user put into the loras folder is the user's choice and is followed.)"""
    roots = [os.path.abspath(p) for p in folder_paths.get_folder_paths("loras")]
    path = (
        None
        if ".." in name.replace("\\", "/").split("/") or os.path.isabs(name)
        else folder_paths.get_full_path("loras", name)
    )
    if path is None or not any(os.path.abspath(path).startswith(r + os.sep) for r in roots):
        raise FileNotFoundError(f"LoRA {name!r} is not in ComfyUI's loras folder ({', '.join(roots)})")
    return path


def model_family(model) -> str:
    name = type(model.model.model_config).__name__
    return _MODEL_FAMILY.get(name, name)


_ADAPTER_PARTS = {
    "lora_up",
    "lora_down",
    "lora_A",
    "lora_B",
    "lora_mid",
    "alpha",
    "dora_scale",
    "lora",
    "diff",
    "diff_b",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1",
    "lokr_w2",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_t2",
    "w_norm",
    "b_norm",
}


def _module_name(key: str) -> str:
    """The layer a LoRA tensor belongs to: its key up to the first adapter part (lora_up, alpha, ...)."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if i and part in _ADAPTER_PARTS:
            return ".".join(parts[:i])
    return key


def _few(names: list[str]) -> str:
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


class LoadShieldDiffLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShieldDiffLoraLoader",
            display_name="Load ShieldDiff LoRA",
            category="ShieldDiff/lora",
            is_output_node=True,
            description="Applies a safety LoRA (or any kohya, diffusers or ComfyUI LoRA) with ComfyUI's own LoRA "
            "loader. Refuses a file that matches none of the model's weights and reports partial matches.",
            inputs=[
                io.Model.Input("model"),
                io.Clip.Input("clip"),
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list("loras")),
                io.Float.Input("strength_model", default=1.0, min=-10.0, max=10.0, step=0.01),
                io.Float.Input("strength_clip", default=1.0, min=-10.0, max=10.0, step=0.01),
            ],
            outputs=[
                io.Model.Output("MODEL", display_name="MODEL"),
                io.Clip.Output("CLIP", display_name="CLIP"),
                io.String.Output("info", display_name="info", tooltip="What the LoRA is and how much of it applied."),
            ],
        )

    @classmethod
    def execute(cls, model, clip, lora_name: str, strength_model: float, strength_clip: float) -> io.NodeOutput:
        out_model, out_clip, info = apply_lora(model, clip, lora_name, strength_model, strength_clip)
        return io.NodeOutput(
            out_model, out_clip, json.dumps(info, allow_nan=False), ui={"shielddiff_lora": [info["summary"]]}
        )


def apply_lora(model, clip, lora_name: str, strength_model: float, strength_clip: float):
    """(patched model, patched clip, info): the loader's work, for any node that applies a LoRA."""
    for label, value in (("strength_model", strength_model), ("strength_clip", strength_clip)):
        if not math.isfinite(value):
            raise ValueError(f"{label} is {value}: a LoRA strength must be a finite number (1.0 applies it fully)")
    path = _lora_path(lora_name)
    header = read_lora_header(path)
    family = model_family(model)
    if header.format == "diffusers":  # ComfyUI skips peft-named UNet keys: hand it kohya names instead
        state = state_dict_in(read_lora(path), "kohya")
    else:
        state = comfy.lora_convert.convert_lora(comfy.utils.load_torch_file(path, safe_load=True))
    broken = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all()))
    if broken:
        raise LoraFormatError(
            f"{lora_name}: {len(broken)} of its tensors hold NaN or infinite values (e.g. {broken[0]}), which would "
            "turn every image black: the file is damaged or its training diverged. Use another file."
        )
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, key_map)
    loaded = comfy.lora.load_lora(state, key_map, log_missing=False)
    weights = model.model.state_dict() | clip.cond_stage_model.state_dict()
    loaded, dropped = fitting_patches(loaded, weights)
    modules = {_module_name(k) for k in state}
    target = {m: key_map[m] if isinstance(key_map[m], str) else key_map[m][0] for m in modules if m in key_map}
    missing = sorted(m for m in modules if m not in target)
    misfit = sorted(m for m in target if target[m] in dropped)
    total = len(modules)
    applied = total - len(missing) - len(misfit)
    if not loaded:
        other = (
            f" It is a LoRA for {header.family}; the model is {family}."
            if header.family not in ("unknown", family)
            else ""
        )
        why = (
            f"none of its {total} LoRA modules match this model's weights"
            if not misfit
            else f"{len(misfit)} of its {total} LoRA modules are named like this model's weights but have other "
            f"shapes (e.g. {misfit[0]}: {dropped[target[misfit[0]]]}), and {len(missing)} match no weight"
        )
        raise LoraFormatError(
            f"{lora_name}: {why}, so it would change nothing.{other} Use a LoRA trained for this model."
        )
    out_model, out_clip = model, clip
    if strength_model != 0:
        out_model = model.clone()
        out_model.add_patches(loaded, strength_model)
    if strength_clip != 0:
        out_clip = clip.clone()
        out_clip.add_patches(loaded, strength_clip)
    meta = header.metadata
    info = {
        "file": lora_name,
        "format": header.format,
        "family": header.family,
        "model_family": family,
        "matched_modules": applied,
        "modules": total,
        "method": meta.get("shielddiff.method", meta.get("ss_network_module", "unknown")),
        "base_model": meta.get("shielddiff.base_model", meta.get("ss_sd_model_name", "unknown")),
        "training": _json_or_text(meta["shielddiff.summary"]) if "shielddiff.summary" in meta else None,
    }
    lines = [
        f"{lora_name}: {info['matched_modules']} of {total} LoRA modules applied ({header.format}, {header.family})"
    ]
    if missing:
        info["unmatched"] = missing
        lines.append(f"WARNING: {len(missing)} modules match no weight of this model and were skipped: {_few(missing)}")
        log.warning("%s", lines[-1])
    if misfit:
        info["wrong_shape"] = misfit
        lines.append(
            f"WARNING: {len(misfit)} modules have other shapes than this model's weights and were skipped: "
            + _few(misfit)
        )
        log.warning("%s", lines[-1])
    info["summary"] = "\n".join(lines)
    return out_model, out_clip, info
