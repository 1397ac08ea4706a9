"""Stand-ins for the parts of Automatic1111 / Forge the pack's script touches (A1111 cannot run here).

They record what the script does; they are not A1111. Names: modules.scripts, modules.shared
(with a `state` whose `assign_current_image` behaves as A1111 1.10's does), modules.paths,
modules.images, and the gradio components the script uses. `run_generation` calls the script's
hooks in the order A1111 1.10's and Forge's `process_images_inner` call them, including the
inpaint composite between `postprocess_image` and `postprocess_image_after_composite`.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from PIL import Image

HOOKS = (
    "setup",
    "process",
    "before_process_batch",
    "postprocess_image",
    "postprocess_image_after_composite",
    "postprocess",
)


class _Component:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.value = kwargs.get("value")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class State:
    """The live-preview part of A1111's `shared.state`: the UI shows `current_image`."""

    def __init__(self):
        self.current_image = None
        self.id_live_preview = 0
        self.shown: list = []  # every preview the UI was given (the stand-in's record)

    def assign_current_image(self, image):
        self.current_image = image
        self.id_live_preview += 1
        self.shown.append(image)


def install(lora_dir: Path, saved: list, models_dir: Path | None = None, after_composite: bool = True):
    """Build the stand-in modules; returns them by name for sys.modules.

    `after_composite=False` stands in for a webui older than the `postprocess_image_after_composite` hook.
    """
    gradio = types.ModuleType("gradio")
    for name in ("Accordion", "Checkbox", "Dropdown", "Slider", "Radio", "Textbox", "Row", "Column", "Group"):
        setattr(gradio, name, type(name, (_Component,), {}))
    modules = types.ModuleType("modules")
    modules.__path__ = []
    scripts = types.ModuleType("modules.scripts")
    scripts.AlwaysVisible = object()

    def hook(self, p, *args, **kwargs):
        pass

    hooks = [h for h in HOOKS if after_composite or h != "postprocess_image_after_composite"]
    scripts.Script = type("Script", (), dict.fromkeys(hooks, hook))  # the base class A1111's scripts derive from
    shared = types.ModuleType("modules.shared")
    shared.cmd_opts = types.SimpleNamespace(lora_dir=str(lora_dir))
    shared.state = State()
    paths = types.ModuleType("modules.paths")
    paths.models_path = str(models_dir or lora_dir.parent)
    images = types.ModuleType("modules.images")

    def save_image(image, path, basename, **kwargs):
        saved.append((image.copy(), path, kwargs))

    images.save_image = save_image
    modules.scripts, modules.shared, modules.images, modules.paths = scripts, shared, images, paths
    return {
        "gradio": gradio,
        "modules": modules,
        "modules.scripts": scripts,
        "modules.shared": shared,
        "modules.paths": paths,
        "modules.images": images,
    }


def load_script(path: Path):
    """Import a scripts/*.py file as A1111 does: by file path, the extension root on sys.path only meanwhile."""
    root = str(path.resolve().parents[1])
    saved_path = list(sys.path)
    sys.path.insert(0, root)
    try:
        spec = importlib.util.spec_from_file_location(path.name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved_path


class Processing:
    """A stand-in `p`: prompts for both passes, the Hires. fix switch and an optional inpaint mask."""

    def __init__(self, prompts, hr_prompts=None, enable_hr=False, init_image=None, mask=None, outpath="out"):
        self.all_prompts = list(prompts)
        self.all_hr_prompts = list(hr_prompts if hr_prompts is not None else prompts) if enable_hr else None
        self.enable_hr = enable_hr
        self.batch_size = 1
        self.n_iter = len(self.all_prompts)
        self.extra_generation_params = {}
        self.outpath_samples = outpath
        self.init_image, self.image_mask = init_image, mask  # img2img inpaint: original image, mask (white = redo)
        self.closed = False
        self.prompts = self.hr_prompts = None
        self.batches: list[tuple[list, list | None]] = []  # the prompts each batch's passes parsed

    def close(self):
        self.closed = True


def _runs(script, name: str) -> bool:
    """A1111 calls a hook only when the script's class overrides the base class's (ordered_callbacks)."""
    base = type(script).__mro__[1]
    return hasattr(base, name) and getattr(type(script), name) is not getattr(base, name)


def run_generation(script, p: Processing, args: list, sampled: list[Image.Image], previews=()) -> list[Image.Image]:
    """Drive the script's hooks the way process_images_inner does, one image per batch; returns the saved images.

    `sampled` are the images the model "makes"; `previews` are assigned to shared.state during sampling.
    With an inpaint mask, the original image is put back outside the mask (the overlay composite).
    """
    state = sys.modules["modules.shared"].state
    out = []
    try:
        if _runs(script, "process"):
            script.process(p, *args)
        for n, image in enumerate(sampled):
            p.prompts = p.all_prompts[n : n + 1]
            if _runs(script, "before_process_batch"):
                script.before_process_batch(p, *args, batch_number=n, prompts=p.prompts)
            p.hr_prompts = p.all_hr_prompts[n : n + 1] if p.enable_hr else None
            p.batches.append((list(p.prompts), list(p.hr_prompts) if p.hr_prompts else None))
            for preview in previews:
                state.assign_current_image(preview)
            pp = types.SimpleNamespace(image=image)
            if _runs(script, "postprocess_image"):
                script.postprocess_image(p, pp, *args)
            image = pp.image
            if p.image_mask is not None:
                image = Image.composite(image.convert("RGB"), p.init_image.convert("RGB"), p.image_mask.convert("L"))
            pp = types.SimpleNamespace(image=image)
            if _runs(script, "postprocess_image_after_composite"):
                script.postprocess_image_after_composite(p, pp, *args)
            out.append(pp.image)
        if _runs(script, "postprocess"):
            script.postprocess(p, types.SimpleNamespace(images=out), *args)
    finally:
        p.close()  # txt2img / img2img run processing inside `with closing(p)`
    return out
