"""trainer/ must import and run with ComfyUI's modules unimportable (headless, A1111, clusters)."""

import subprocess
import sys
import textwrap

from comfy_harness import REPO

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, importlib.util, pkgutil, sys

    BLOCKED = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "server", "nodes", "execution"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: trainer/ must not import ComfyUI")
            return None

    sys.meta_path.insert(0, Block())
    import trainer
    names = [m.name for m in pkgutil.walk_packages(trainer.__path__, "trainer.") if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    assert not BLOCKED & {n.split(".")[0] for n in sys.modules}, "a ComfyUI module was imported"
    from trainer.cli import build_parser
    build_parser().parse_args(["demo-checkpoint", "--out", "x.safetensors"])
    print("imported", len(names), "modules")
    """
)


def test_trainer_imports_with_comfyui_blocked():
    done = subprocess.run([sys.executable, "-c", BLOCKER], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout


def test_cli_runs_as_a_module_with_comfyui_blocked():
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "--version"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "shielddiff" in done.stdout
