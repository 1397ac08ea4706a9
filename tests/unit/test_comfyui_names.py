"""Every ComfyUI name the pack uses exists, and takes the arguments the pack passes it, in each
ComfyUI tree under test: 0.3.75 (the default) and 0.30.0 (the second target `make setup` prepares).

The pack's source is read, not run: each import from ComfyUI, each call into it (with how many
positional arguments and which keywords), each attribute it reads, and each method a pack class
defines over a ComfyUI base class. A probe process, in the tree's own Python, imports the names
and binds the calls to their signatures.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest

from support.comfy_harness import REPO, comfyui_python
from support.prerequisites import require

COMFY_MODULES = {
    "comfy",
    "comfy_api",
    "comfy_execution",
    "comfy_extras",
    "execution",
    "folder_paths",
    "latent_preview",
    "node_helpers",
    "nodes",
    "server",
}
PACK_SOURCES = [REPO / "__init__.py", *sorted((REPO / "nodes").glob("*.py"))]

PROBE = r"""
import importlib, inspect, json, os, re, sys
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
if os.path.exists("utils/__init__.py"):
    import utils  # as main.py does first: later imports would take comfy/utils.py for it

def resolve(dotted):
    parts = dotted.split(".")
    obj, i = None, len(parts)
    while i > 0:
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
            break
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise ImportError(f"importing {module}: {exc}") from exc
            i -= 1
    if obj is None:
        raise LookupError(f"no module {parts[0]!r}")
    for j, name in enumerate(parts[i:], start=i):
        if name == "instance" and inspect.isclass(obj) and not hasattr(type(obj), "instance"):
            # a singleton's instance: its attributes are the ones its __init__ assigns
            cls, init = obj, inspect.getsource(obj.__init__)
            nxt = parts[j + 1] if j + 1 < len(parts) else None
            if nxt is None:
                return cls, False
            made = re.search(rf"self\.{nxt}\s*=\s*([\w.]+)\(", init)
            if made is None and f"self.{nxt} =" not in init and not hasattr(cls, nxt):
                raise LookupError(f"{cls.__name__}.__init__ sets no attribute {nxt!r}")
            if made is None:
                return resolve_rest(getattr(cls, nxt, None), parts[j + 2:], dotted), True
            owner = inspect.getmodule(cls)
            typ = eval(made.group(1), vars(owner))
            return resolve_rest(typ, parts[j + 2:], dotted), True
        if not hasattr(obj, name):
            raise LookupError(f"{'.'.join(parts[:j])} has no attribute {name!r}")
        obj = getattr(obj, name)
    return obj, False

def resolve_rest(obj, rest, dotted):
    for name in rest:
        if obj is None or not hasattr(obj, name):
            raise LookupError(f"{dotted}: no attribute {name!r}")
        obj = getattr(obj, name)
    return obj

problems = []
for check in json.load(sys.stdin):
    where = check["where"]
    try:
        obj, unbound = resolve(check["name"])
        if check["kind"] == "call" and obj is not None:
            sig = inspect.signature(obj)
            # a method reached through a class (for its instance) takes the instance first
            args = [None] * (check["positional"] + (unbound and inspect.isfunction(obj)))
            kwargs = {k: None for k in check["keywords"]}
            (sig.bind_partial if check["open"] else sig.bind)(*args, **kwargs)
        if check["kind"] == "method":
            if not hasattr(obj, check["method"]):
                raise LookupError(f"{check['name']} has no method {check['method']!r} to override")
    except (LookupError, ImportError, TypeError, ValueError) as exc:
        problems.append(f"{where}: {check['name']}: {type(exc).__name__}: {exc}")
print(json.dumps(problems))
"""


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def pack_uses() -> list[dict]:
    """What the pack's ComfyUI-facing code asks of ComfyUI, read from its source."""
    checks = []
    for path in PACK_SOURCES:
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(REPO))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in COMFY_MODULES:
                        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                        checks.append({"kind": "name", "name": a.name, "where": f"{where}:{node.lineno}"})
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in COMFY_MODULES:
                    for a in node.names:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                        checks.append(
                            {"kind": "name", "name": f"{node.module}.{a.name}", "where": f"{where}:{node.lineno}"}
                        )

        def expand(dotted: str | None, aliases: dict[str, str] = aliases) -> str | None:
            if dotted is None:
                return None
            head, _, rest = dotted.partition(".")
            return f"{aliases[head]}.{rest}".rstrip(".") if head in aliases else None

        for node in ast.walk(tree):
            at = f"{where}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and (name := expand(_dotted(node.func))):
                checks.append(
                    {
                        "kind": "call",
                        "name": name,
                        "positional": sum(not isinstance(a, ast.Starred) for a in node.args),
                        "keywords": [k.arg for k in node.keywords if k.arg],
                        "open": any(isinstance(a, ast.Starred) for a in node.args)
                        or any(k.arg is None for k in node.keywords),
                        "where": at,
                    }
                )
            elif isinstance(node, ast.Attribute) and (name := expand(_dotted(node))):
                checks.append({"kind": "name", "name": name, "where": at})
            elif isinstance(node, ast.ClassDef):
                for base in node.bases:
                    if base_name := expand(_dotted(base)):
                        for item in node.body:
                            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith(
                                "_"
                            ):
                                checks.append({"kind": "method", "name": base_name, "method": item.name, "where": at})
    return checks


def test_the_source_reading_finds_what_the_pack_uses():
    """The reader sees the calls a change of ComfyUI would break (so the probe has work to do)."""
    found = {(c["kind"], c["name"]) for c in pack_uses()}
    assert ("call", "comfy_api.latest.io.Schema") in found
    assert ("call", "folder_paths.get_full_path_or_raise") in found
    assert ("call", "server.PromptServer.instance.prompt_queue.set_flag") in found
    assert ("method", "comfy_api.latest.ComfyExtension") in found
    schema = next(
        c
        for c in pack_uses()
        if c["kind"] == "call" and c["name"] == "comfy_api.latest.io.Schema" and "train_lora" in c["where"]
    )
    assert "not_idempotent" in schema["keywords"]


def trees() -> list[tuple[str, Path, str]]:
    first = Path(os.environ.get("SHIELDDIFF_COMFYUI_DIR") or REPO / ".comfyui" / "ComfyUI")
    second = Path(os.environ.get("SHIELDDIFF_SECOND_COMFYUI_DIR") or REPO / ".comfyui" / "ComfyUI-0.30.0")
    second_python = os.environ.get("SHIELDDIFF_SECOND_COMFYUI_PYTHON") or str(
        REPO / ".comfyui" / "venv-0.30.0" / "bin" / "python"
    )
    return [("default", first, comfyui_python()), ("second", second, second_python)]


@pytest.mark.parametrize(("target", "comfyui", "python"), trees(), ids=[t[0] for t in trees()])
def test_every_comfyui_name_the_pack_uses_exists_with_the_signature_it_calls(target, comfyui, python):
    require(
        (comfyui / "main.py").is_file() and Path(python).exists(),
        f"no ComfyUI for the {target} target at {comfyui} (with {python}): run `make setup`",
    )
    checks = pack_uses()
    done = subprocess.run(
        [python, "-c", PROBE],
        input=json.dumps(checks),
        cwd=comfyui,
        env=dict(os.environ, PYTHONPATH=str(comfyui)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    problems = json.loads(done.stdout.strip().splitlines()[-1])
    assert problems == [], "\n".join(problems)
