"""trainer/ must import and run with ComfyUI's modules unimportable (headless, A1111, clusters)."""

import ast
import subprocess
import sys
import textwrap

from support.comfy_harness import REPO

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


LEAVES = {"", "images", "files", "prompts"}  # "" is trainer/__init__.py (the version)
BELOW_ONLY_LEAVES = {"lora", "nudity", "diffusion"}
FORBIDDEN = {
    "training": {"rl", "erase", "jobs"},
    "jobs": {"rl", "erase"},
    "evaluation": {"training"},
}


def _unit(module: str) -> str:
    """trainer.rl.trainer -> 'rl'; trainer.images -> 'images'; trainer -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    """For every module of trainer/, the trainer modules it imports (at any depth, relative or absolute)."""
    found = {}
    for path in sorted((REPO / "trainer").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        package = module if is_package else module.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
                targets.update(names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "trainer":
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == "trainer")
        found[module] = targets
    return found


def test_the_import_reader_sees_relative_and_nested_imports():
    imports = _imports()
    assert "trainer.diffusion.guidance" in imports["trainer.rl.trainer"]
    assert any(t.startswith("trainer.toyworld.") for t in imports["trainer.evaluation.detectors"])  # inside a function


def test_subpackages_import_only_what_the_layout_allows():
    broken = []
    for module, targets in _imports().items():
        unit = _unit(module)
        for target in targets:
            other = _unit(target)
            if other == unit or other == "__version__":
                continue
            if unit in BELOW_ONLY_LEAVES and other not in LEAVES:
                broken.append(f"{module} imports {target}: {unit}/ may import only images, files, prompts")
            if other in FORBIDDEN.get(unit, ()):
                broken.append(f"{module} imports {target}: {unit}/ must not import {other}/")
    assert not broken, "\n".join(broken)


def test_no_import_cycles_between_subpackages():
    graph: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        graph.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    graph = {unit: {t for t in deps if t != "__version__"} for unit, deps in graph.items()}

    def cycle_from(start: str, node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*path, nxt]
            if nxt not in path:
                found = cycle_from(start, nxt, [*path, nxt])
                if found:
                    return found
        return None

    cycles = [" -> ".join(c) for unit in sorted(graph) if (c := cycle_from(unit, unit, [unit]))]
    assert not cycles, "import cycles between subpackages:\n" + "\n".join(cycles)
