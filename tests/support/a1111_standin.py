"""Stand-ins for the parts of Automatic1111 / Forge the pack's script touches (A1111 cannot run here).

They record what the script does; they are not A1111. Names: modules.scripts, modules.shared,
modules.images, and gradio's layout/input components used by the script.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


class _Component:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.value = kwargs.get("value")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def install(lora_dir: Path, saved: list) -> dict[str, types.ModuleType]:
    """Build the stand-in modules; returns them by name for sys.modules."""
    gradio = types.ModuleType("gradio")
    for name in ("Accordion", "Checkbox", "Dropdown", "Slider", "Radio", "Row", "Column", "Group"):
        setattr(gradio, name, type(name, (_Component,), {}))
    modules = types.ModuleType("modules")
    modules.__path__ = []
    scripts = types.ModuleType("modules.scripts")
    scripts.AlwaysVisible = object()

    class Script:  # the base class A1111's scripts derive from
        pass

    scripts.Script = Script
    shared = types.ModuleType("modules.shared")
    shared.cmd_opts = types.SimpleNamespace(lora_dir=str(lora_dir))
    images = types.ModuleType("modules.images")

    def save_image(image, path, basename, **kwargs):
        saved.append((image.copy(), path, kwargs))

    images.save_image = save_image
    modules.scripts, modules.shared, modules.images = scripts, shared, images
    return {
        "gradio": gradio,
        "modules": modules,
        "modules.scripts": scripts,
        "modules.shared": shared,
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
