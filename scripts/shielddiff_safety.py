"""ShieldDiff safety for Automatic1111 / Forge: apply a safety LoRA and gate finished images for nudity.

A thin adapter over the pack's core, which it loads under the unique module name
`shielddiff_core` (never as a bare top-level name that other extensions could shadow).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import gradio as gr
from modules import scripts, shared

_ROOT = Path(__file__).resolve().parents[1]
_CORE = "shielddiff_core"


def core(submodule: str):
    """Import `shielddiff_core.<submodule>`, loading the pack's trainer/ package under that name once."""
    if _CORE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            _CORE, _ROOT / "trainer" / "__init__.py", submodule_search_locations=[str(_ROOT / "trainer")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[_CORE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{_CORE}.{submodule}")


def lora_folder() -> str:
    return getattr(getattr(shared, "cmd_opts", None), "lora_dir", None) or os.path.join("models", "Lora")


def lora_choices() -> list[str]:
    folder = lora_folder()
    if not os.path.isdir(folder):
        return ["None"]
    names = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    return ["None", *names]


class Script(scripts.Script):
    def title(self):
        return "ShieldDiff safety"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("ShieldDiff safety", open=False):
            enabled = gr.Checkbox(label="Enable ShieldDiff", value=False)
            lora = gr.Dropdown(label="Safety LoRA (from the LoRA folder)", choices=lora_choices(), value="None")
            weight = gr.Slider(label="LoRA weight", minimum=0.0, maximum=2.0, step=0.05, value=1.0)
            gate = gr.Checkbox(label="Nudity gate: censor images NudeNet finds nude", value=True)
            threshold = gr.Slider(label="Nudity threshold", minimum=0.0, maximum=1.0, step=0.01, value=0.6)
            mode = gr.Radio(label="Censor by", choices=["blur", "pixelate", "fill", "replace"], value="blur")
            keep = gr.Checkbox(label="Also save an uncensored copy", value=False)
        return [enabled, lora, weight, gate, threshold, mode, keep]

    def before_process_batch(self, p, enabled, lora, weight, gate, threshold, mode, keep, **kwargs):
        if not enabled or not lora or lora == "None":
            return
        with_lora_tag = core("nudity.gate").with_lora_tag
        prompts = kwargs.get("prompts")
        if prompts is not None:
            prompts[:] = [with_lora_tag(text, lora, weight) for text in prompts]
        p.extra_generation_params["ShieldDiff LoRA"] = f"{lora}:{weight:g}"

    def postprocess_image(self, p, pp, enabled, lora, weight, gate, threshold, mode, keep):
        if not enabled or not gate:
            return
        gate_module = core("nudity.gate")
        (result,) = gate_module.gate_images([pp.image], gate_module.GateSettings(threshold=threshold, mode=mode))
        if result.censored and keep:
            from modules import images

            images.save_image(
                pp.image, os.path.join(p.outpath_samples, "shielddiff-uncensored"), "", extension="png", p=p
            )
        pp.image = result.image
        p.extra_generation_params.update(result.infotext)
