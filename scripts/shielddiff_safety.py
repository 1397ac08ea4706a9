"""ShieldDiff safety for Automatic1111 / Forge: apply a safety LoRA and gate images for nudity.

A thin adapter over the pack's core, which it loads under the unique module name
`shielddiff_core` (never as a bare top-level name that other extensions could shadow).

Where it hooks in (read from A1111 1.10 and Forge `modules/processing.py` and `modules/scripts.py`):
- `process`: the LoRA tag goes into `p.all_prompts` and `p.all_hr_prompts`, which both the first
  pass and the Hires. fix pass parse their extra networks from.
- the gate runs in `postprocess_image_after_composite` (after the inpaint composite) where the
  webui has that hook, else in `postprocess_image`.
- live previews: while the gate is on, `shared.state.assign_current_image` is wrapped so every
  preview is gated; it is put back in `postprocess`, in `p.close()` and when a run starts with
  the script or its gate off.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

import gradio as gr
from modules import paths, scripts, shared

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[1]
_CORE = "shielddiff_core"
LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
NO_LORA = "None"
BUNDLED_DETECTOR = "320n (bundled)"
GATE_MODES = ["blur", "pixelate", "fill", "replace"]
# The later hook sees the image after the inpaint composite put the original pixels back.
GATE_HOOK = (
    "postprocess_image_after_composite"
    if hasattr(scripts.Script, "postprocess_image_after_composite")
    else "postprocess_image"
)
_ABSENT = object()


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


def nudenet_folder() -> str:
    return os.path.join(getattr(paths, "models_path", "models"), "nudenet")


def files_under(folder: str, extensions: tuple[str, ...]) -> list[str]:
    """Files below `folder` (subfolders too) with one of the extensions, as sorted '/'-separated relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, folder)
        for name in filenames:
            if name.lower().endswith(extensions):
                found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return sorted(found, key=str.lower)


def lora_choices() -> list[str]:
    return [NO_LORA, *files_under(lora_folder(), LORA_EXTENSIONS)]


def detector_choices() -> list[str]:
    return [BUNDLED_DETECTOR, *files_under(nudenet_folder(), (".onnx",))]


def detector_path(choice: str) -> str | None:
    """None for the bundled 320n detector, else the file in models/nudenet (a clear error when it is gone)."""
    if not choice or choice == BUNDLED_DETECTOR:
        return None
    path = os.path.join(nudenet_folder(), *choice.split("/"))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NudeNet detector {choice!r} is not in {nudenet_folder()}; refresh the page")
    return path


class Options:
    """The values of the script's controls, in the order `ui` returns them.

    A plain class: A1111 imports scripts without registering them in sys.modules, where
    dataclasses look their module up.
    """

    def __init__(
        self,
        enabled=False,
        lora=NO_LORA,
        weight=1.0,
        gate=True,
        threshold=0.6,
        class_thresholds="",
        mode="blur",
        detector=BUNDLED_DETECTOR,
        resolution=320,
        keep=False,
    ):
        self.enabled, self.lora, self.weight, self.gate = bool(enabled), lora, float(weight), bool(gate)
        self.threshold, self.class_thresholds, self.mode = float(threshold), class_thresholds or "", mode
        self.detector, self.resolution, self.keep = detector, int(resolution), bool(keep)

    def gate_settings(self):
        gate = core("nudity.gate")
        thresholds = core("nudity.censor").parse_class_thresholds(self.class_thresholds, self.threshold)
        return gate.GateSettings(
            threshold=self.threshold,
            mode=self.mode,
            class_thresholds=thresholds,
            detector=detector_path(self.detector),
            resolution=self.resolution,
        )


class Script(scripts.Script):
    def __init__(self):
        self._preview_wrapper = None  # our wrapper of shared.state.assign_current_image, while installed
        self._replaced = _ABSENT  # what shared.state had under that name before (absent: the class method)
        self._preview_options: Options | None = None  # None: the wrapper passes previews through

    def title(self):
        return "ShieldDiff safety"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("ShieldDiff safety", open=False):
            enabled = gr.Checkbox(label="Enable ShieldDiff", value=False)
            lora = gr.Dropdown(label="Safety LoRA (LoRA folder and subfolders)", choices=lora_choices(), value=NO_LORA)
            weight = gr.Slider(label="LoRA weight", minimum=0.0, maximum=2.0, step=0.05, value=1.0)
            gate = gr.Checkbox(label="Nudity gate: censor images and live previews NudeNet finds nude", value=True)
            threshold = gr.Slider(label="Nudity threshold", minimum=0.0, maximum=1.0, step=0.01, value=0.6)
            class_thresholds = gr.Textbox(
                label="Per-class thresholds (optional)",
                placeholder="FEMALE_BREAST_EXPOSED=0.5, FEET_EXPOSED=0.8",
                value="",
                lines=1,
            )
            mode = gr.Radio(label="Censor by", choices=GATE_MODES, value="blur")
            detector = gr.Dropdown(
                label="NudeNet detector (models/nudenet)", choices=detector_choices(), value=BUNDLED_DETECTOR
            )
            resolution = gr.Slider(
                label="Detector resolution (320 for 320n, 640 for 640m)", minimum=32, maximum=2048, step=32, value=320
            )
            keep = gr.Checkbox(label="Also save an uncensored copy", value=False)
        return [enabled, lora, weight, gate, threshold, class_thresholds, mode, detector, resolution, keep]

    # -- prompts and previews: once per generation, before any sampling --

    def process(self, p, *args):
        self._release_previews()  # a run that ended without postprocess/close must not leave a wrapper
        options = Options(*args)
        if not options.enabled:
            return
        if options.lora and options.lora != NO_LORA:
            tag = core("nudity.gate").with_lora_tag
            for name in ("all_prompts", "all_hr_prompts"):
                prompts = getattr(p, name, None)
                if isinstance(prompts, list):
                    setattr(p, name, [tag(text, options.lora, options.weight) for text in prompts])
            p.extra_generation_params["ShieldDiff LoRA"] = f"{options.lora}:{options.weight:g}"
        if options.gate:
            self._censor_previews(p, options)

    def postprocess(self, p, processed, *args):
        self._release_previews()

    def _censor_previews(self, p, options: Options):
        self._preview_options = options
        state = shared.state
        if self._preview_wrapper is None:
            self._replaced = vars(state).get("assign_current_image", _ABSENT)
            self._preview_wrapper = core("nudity.gate").censoring_preview(
                state.assign_current_image, self._preview_settings
            )
            state.assign_current_image = self._preview_wrapper
        close = p.close
        if not getattr(close, "_shielddiff_releases", False):

            def close_and_release(*a, **kw):
                self._release_previews()
                return close(*a, **kw)

            close_and_release._shielddiff_releases = True
            p.close = close_and_release

    def _preview_settings(self):
        return None if self._preview_options is None else self._preview_options.gate_settings()

    def _release_previews(self):
        """Put shared.state.assign_current_image back exactly as it was before this script wrapped it."""
        self._preview_options = None
        wrapper = self._preview_wrapper
        if wrapper is None:
            return
        state = shared.state
        if vars(state).get("assign_current_image") is not wrapper:
            # Another extension wrapped ours since; ours stays in its chain, passing previews through.
            log.warning("ShieldDiff: shared.state.assign_current_image was wrapped again; left in place")
            return
        if self._replaced is _ABSENT:
            del state.assign_current_image
        else:
            state.assign_current_image = self._replaced
        self._preview_wrapper, self._replaced = None, _ABSENT

    # -- the gate on every finished image --

    def _gate_image(self, p, pp, *args):
        options = Options(*args)
        if not options.enabled or not options.gate:
            return
        gate = core("nudity.gate")
        try:
            (result,) = gate.gate_images([pp.image], options.gate_settings())
        except Exception as exc:  # the webui would log it and keep the ungated image: withhold it instead
            result = gate.withheld(pp.image, exc)
        if result.censored and options.keep:
            from modules import images

            images.save_image(
                pp.image, os.path.join(p.outpath_samples, "shielddiff-uncensored"), "", extension="png", p=p
            )
        pp.image = result.image
        p.extra_generation_params.pop("ShieldDiff nudity", None)
        p.extra_generation_params.update(result.infotext)


setattr(Script, GATE_HOOK, Script._gate_image)
