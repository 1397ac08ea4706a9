"""Read, write and convert Stable Diffusion LoRA files (safetensors only; nothing is unpickled).

Formats (see names.py for the module names):
- "kohya": `<name>.lora_down.weight`, `<name>.lora_up.weight`, `<name>.alpha`; what A1111, Forge and
  ComfyUI load natively. The pack writes this format, with kohya's `ss_*` metadata.
- "diffusers": `<name>.lora_A.weight` (down) and `<name>.lora_B.weight` (up), optionally under
  `base_model.model.`; ranks and alphas in the `lora_adapter_metadata` header entry, as diffusers
  writes and reads it.
- "comfy": ComfyUI's own naming (original UNet paths under `diffusion_model.`), with
  `.lora_down` / `.lora_up` / `.alpha` like ComfyUI's trainer writes.
Conversions move tensors unchanged: a round trip through every format is bit-exact.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..files import atomic_save_safetensors
from . import names

__all__ = ["FORMATS", "LoraFile", "LoraFormatError", "LoraModule", "detect_format", "read_lora", "write_lora"]

FORMATS = ("kohya", "diffusers", "comfy")
ADAPTER_METADATA = "lora_adapter_metadata"
_DIFFUSERS_COMPONENT = {"unet": "unet", "te1": "text_encoder", "te2": "text_encoder_2"}
_BASE_VERSION = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}


class LoraFormatError(ValueError):
    """The file is not a LoRA this pack can read; the message names the file and the problem."""


@dataclass
class LoraModule:
    """One adapted layer: delta W = (alpha / rank) * up @ down."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: torch.Tensor | None = None  # a 0-d tensor; None means alpha = rank

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def scale(self) -> float:
        return (float(self.alpha) if self.alpha is not None else self.rank) / self.rank


@dataclass
class LoraFile:
    """A LoRA: modules keyed by (component, diffusers path), the file's metadata, its family."""

    modules: dict[tuple[str, str], LoraModule]
    metadata: dict[str, str] = field(default_factory=dict)
    family: str = "unknown"  # "sd15", "sdxl", "unknown"
    source_format: str = "kohya"


def _read_header(path: Path) -> dict:
    """The safetensors JSON header, read and checked before any tensor is touched."""
    size = path.stat().st_size
    if size < 8:
        raise LoraFormatError(f"{path.name} is not a safetensors file: it is {size} bytes long")
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length <= 1 or 8 + length > size or length > 100_000_000:
            raise LoraFormatError(
                f"{path.name} is not a safetensors file (or is truncated): its header says {length} bytes, "
                f"the file has {size}. Only .safetensors LoRAs are loaded; pickled .ckpt/.pt files never are."
            )
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoraFormatError(f"{path.name} has a damaged safetensors header: {exc}") from exc
    entries = [v for k, v in header.items() if k != "__metadata__"] if isinstance(header, dict) else None
    if entries is None or not all(isinstance(v, dict) and "data_offsets" in v and "shape" in v for v in entries):
        raise LoraFormatError(f"{path.name} has a damaged safetensors header (not a table of tensors)")
    end = max((v["data_offsets"][1] for v in entries), default=0)
    if 8 + length + end > size:
        raise LoraFormatError(f"{path.name} is truncated: its tensors need {8 + length + end} bytes, it has {size}")
    return header


def detect_format(keys: list[str]) -> str:
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers"
    if any(k.startswith(("diffusion_model.", "text_encoders.")) and ".lora_" in k for k in keys):
        return "comfy"
    return "unknown"


def _split_kohya_style(key: str) -> tuple[str, str] | None:
    for suffix in (".lora_down.weight", ".lora_up.weight", ".alpha"):
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix
    return None


_FAMILY_FROM_VERSION = {v: k for k, v in _BASE_VERSION.items()}
_CROSS_ATTENTION_WIDTH = {768: "sd15", 2048: "sdxl"}


def _family_of(shapes: dict[str, list[int]], metadata: dict[str, str]) -> str:
    """sd15, sdxl or unknown, from the header alone: SDXL's second text encoder, the width of the
    cross-attention keys' input, or kohya's ss_base_model_version."""
    if any(k.startswith(("lora_te2_", "text_encoder_2.", "text_encoders.clip_g.")) for k in shapes):
        return "sdxl"
    for key, shape in shapes.items():
        if (
            "attn2" in key
            and "to_k" in key
            and key.endswith((".lora_down.weight", ".lora_A.weight"))
            and len(shape) == 2
        ):
            if shape[1] in _CROSS_ATTENTION_WIDTH:
                return _CROSS_ATTENTION_WIDTH[shape[1]]
    return _FAMILY_FROM_VERSION.get(metadata.get("ss_base_model_version", ""), "unknown")


def _layout(family: str, layout: names.UnetLayout | None) -> names.UnetLayout:
    if layout is not None:
        return layout
    if family not in names.LAYOUTS:
        raise LoraFormatError(
            f"the UNet layout of this LoRA (family {family!r}) is unknown; name it (sd15, sdxl, sd15-demo)"
        )
    return names.LAYOUTS[family]


_SUPPORTED_SUFFIXES = {
    "kohya": (".lora_down.weight", ".lora_up.weight", ".alpha"),
    "comfy": (".lora_down.weight", ".lora_up.weight", ".alpha"),
    "diffusers": (".lora_A.weight", ".lora_B.weight"),
}


def _identify(path: Path, name: str, parse, sources: dict) -> tuple[str, str]:
    """The module a file's name refers to; two names for one module, or a foreign name, are errors."""
    try:
        ident = parse(name)
    except ValueError as exc:
        raise LoraFormatError(f"{path.name}: {exc}") from exc
    if sources.setdefault(ident, name) != name:
        raise LoraFormatError(f"{path.name}: {sources[ident]!r} and {name!r} name the same module; wrong layout?")
    return ident


def _guess_comfy_layout(keys: list[str], hint: str | None, layout: names.UnetLayout | None) -> names.UnetLayout:
    if layout is not None:
        return layout
    if hint in names.LAYOUTS:
        return names.LAYOUTS[hint]
    if any(k.startswith("diffusion_model.input_blocks.4.1.transformer_blocks.1.") for k in keys):
        return names.LAYOUTS["sdxl"]
    return names.LAYOUTS["sd15"]


def read_lora(path: str | Path, layout: names.UnetLayout | None = None) -> LoraFile:
    """Read a LoRA file in any of the three formats."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise LoraFormatError(f"LoRA file {path} does not exist")
    header = _read_header(path)
    metadata = header.get("__metadata__", {}) or {}
    keys = [k for k in header if k != "__metadata__"]
    fmt = detect_format(keys)
    if fmt == "unknown":
        sample = ", ".join(keys[:3]) or "no tensors"
        raise LoraFormatError(f"{path.name} holds no LoRA weights in a known naming (first keys: {sample})")
    family = _family_of({k: header[k]["shape"] for k in keys}, metadata)
    hint = family if family != "unknown" else None
    modules: dict[tuple[str, str], LoraModule] = {}
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in keys}
    unsupported = [k for k in keys if not k.endswith(_SUPPORTED_SUFFIXES[fmt])]
    if unsupported:
        raise LoraFormatError(
            f"{path.name} holds tensors this pack does not convert (LoHa, LoKr, DoRA or other adapters?): "
            f"{unsupported[:5]}; only plain LoRA up/down/alpha tensors are read"
        )
    sources: dict[tuple[str, str], str] = {}
    if fmt == "diffusers":
        try:
            adapter = json.loads(metadata.get(ADAPTER_METADATA, "{}") or "{}")
        except json.JSONDecodeError as exc:
            raise LoraFormatError(f"{path.name}: its {ADAPTER_METADATA} header entry is not JSON ({exc})") from exc
        for key, tensor in tensors.items():
            for tag, slot in ((".lora_A.weight", "down"), (".lora_B.weight", "up")):
                if key.endswith(tag):
                    ident = _identify(path, key[: -len(tag)], names.from_diffusers_name, sources)
                    modules.setdefault(ident, LoraModule(None, None))  # type: ignore[arg-type]
                    setattr(modules[ident], slot, tensor)
        for (component, module_path), module in modules.items():
            prefix = _DIFFUSERS_COMPONENT[component]
            alphas = adapter.get(f"{prefix}.alpha_pattern", {}) or {}
            alpha = alphas.get(module_path, adapter.get(f"{prefix}.lora_alpha"))
            if alpha is not None:
                module.alpha = torch.tensor(float(alpha), dtype=module.down.dtype if module.down is not None else None)
    else:
        comfy_layout = _guess_comfy_layout(keys, hint, layout) if fmt == "comfy" else None
        for key, tensor in tensors.items():
            split = _split_kohya_style(key)
            if split is None:
                continue
            base, suffix = split
            if fmt == "kohya":
                ident = _identify(path, base, names.from_kohya_name, sources)
            else:
                ident = _identify(path, base, lambda n: names.from_comfy_name(n, comfy_layout), sources)
            module = modules.setdefault(ident, LoraModule(None, None))  # type: ignore[arg-type]
            if suffix == ".alpha":
                module.alpha = tensor
            elif suffix == ".lora_down.weight":
                module.down = tensor
            else:
                module.up = tensor
    broken = [f"{c}:{p}" for (c, p), m in modules.items() if m.down is None or m.up is None]
    if broken:
        raise LoraFormatError(f"{path.name}: these LoRA modules miss their up or down weight: {broken[:5]}")
    return LoraFile(modules=modules, metadata=dict(metadata), family=family, source_format=fmt)


def _kohya_metadata(lora: LoraFile) -> dict[str, str]:
    ranks = sorted({m.rank for m in lora.modules.values()})
    alphas = sorted({m.scale() * m.rank for m in lora.modules.values()})
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(max(ranks)),
        "ss_network_alpha": f"{max(alphas):g}",
    }
    if lora.family in _BASE_VERSION:
        meta["ss_base_model_version"] = _BASE_VERSION[lora.family]
    return meta


def _tensors_for(lora: LoraFile, fmt: str, layout: names.UnetLayout | None) -> tuple[dict, dict[str, str]]:
    sdxl = lora.family == "sdxl"
    out: dict[str, torch.Tensor] = {}
    extra: dict[str, str] = {}
    if fmt == "diffusers":
        adapter: dict[str, object] = {}
        for (component, path), m in lora.modules.items():
            name = names.diffusers_name(component, path)
            out[f"{name}.lora_A.weight"] = m.down
            out[f"{name}.lora_B.weight"] = m.up
            prefix = _DIFFUSERS_COMPONENT[component]
            adapter.setdefault(f"{prefix}.r", m.rank)
            adapter.setdefault(f"{prefix}.lora_alpha", m.scale() * m.rank)
            adapter.setdefault(f"{prefix}.target_modules", []).append(path)  # type: ignore[union-attr]
            adapter.setdefault(f"{prefix}.rank_pattern", {})[path] = m.rank  # type: ignore[index]
            adapter.setdefault(f"{prefix}.alpha_pattern", {})[path] = m.scale() * m.rank  # type: ignore[index]
        extra[ADAPTER_METADATA] = json.dumps(adapter, sort_keys=True)
        return out, extra
    for (component, path), m in lora.modules.items():
        if fmt == "kohya":
            name = names.kohya_name(component, path, sdxl=sdxl)
        else:
            name = names.comfy_name(component, path, _layout(lora.family, layout))
        out[f"{name}.lora_down.weight"] = m.down
        out[f"{name}.lora_up.weight"] = m.up
        if m.alpha is not None:
            out[f"{name}.alpha"] = m.alpha
    return out, extra


def state_dict_in(lora: LoraFile, fmt: str = "kohya", layout: names.UnetLayout | None = None) -> dict:
    """The tensors of `lora` keyed in `fmt`'s naming (the same tensor objects, not copies)."""
    return _tensors_for(lora, fmt, layout)[0]


def write_lora(
    lora: LoraFile,
    path: str | Path,
    fmt: str = "kohya",
    metadata: dict[str, str] | None = None,
    layout: names.UnetLayout | None = None,
) -> Path:
    """Write `lora` in `fmt`, atomically (a temporary file in the same folder, then a rename)."""
    if fmt not in FORMATS:
        raise LoraFormatError(f"unknown LoRA format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    tensors, extra = _tensors_for(lora, fmt, layout)
    header = {k: v for k, v in lora.metadata.items() if k != ADAPTER_METADATA}
    header |= _kohya_metadata(lora) | extra | (metadata or {})
    return atomic_save_safetensors({k: v.contiguous() for k, v in tensors.items()}, path, header)


@dataclass
class LoraHeader:
    """What a LoRA file's header tells without loading a tensor."""

    format: str
    family: str
    modules: int
    metadata: dict[str, str]


def read_lora_header(path: str | Path) -> LoraHeader:
    """Format, model family, module count and metadata from the header alone (validated)."""
    path = Path(path)
    if not path.is_file():
        raise LoraFormatError(f"LoRA file {path} does not exist")
    header = _read_header(path)
    metadata = header.pop("__metadata__", {}) or {}
    fmt = detect_format(list(header))
    if fmt == "unknown":
        raise LoraFormatError(f"{path.name} holds no LoRA weights in a known naming (first keys: {list(header)[:3]})")
    downs = [k for k in header if k.endswith((".lora_down.weight", ".lora_A.weight"))]
    family = _family_of({k: v["shape"] for k, v in header.items()}, metadata)
    return LoraHeader(format=fmt, family=family, modules=len(downs), metadata=dict(metadata))


def shielddiff_metadata(
    method: str,
    base_model: str,
    base_model_hash: str,
    config: dict,
    summary: dict,
) -> dict[str, str]:
    """The header block every LoRA the pack trains carries (read back by the loader node and `lora inspect`)."""
    from .. import __version__

    return {
        "shielddiff.method": method,
        "shielddiff.base_model": base_model,
        "shielddiff.base_model_hash": base_model_hash,
        "shielddiff.config": json.dumps(config, sort_keys=True),
        "shielddiff.summary": json.dumps(summary, sort_keys=True),
        "shielddiff.version": __version__,
        "ss_sd_model_name": base_model,
        "ss_training_comment": f"ShieldDiff {method}",
    }
