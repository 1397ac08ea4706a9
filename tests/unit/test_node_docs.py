"""Every node has a help page (web/docs/<node id>.md) and an English locale entry, and neither drifts.

Read from the nodes' source without importing ComfyUI: the node ids, display names, descriptions
and categories are literals in each `io.Schema(...)`. The full comparison of the locale with the
running nodes (every input and output, every tooltip) is tests/e2e/test_node_locale.py.
"""

import ast
import json
import re

import pytest

from support.comfy_harness import REPO

NODES_DIR = REPO / "nodes"
DOCS = REPO / "web" / "docs"
LOCALE = REPO / "locales" / "en"


def _literal(call: ast.Call, name: str) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _schemas() -> dict[str, dict]:
    """Class name -> the literal fields of the io.Schema(...) its define_schema returns."""
    found = {}
    for path in NODES_DIR.glob("*.py"):
        for cls in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)):
            for call in (n for n in ast.walk(cls) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Attribute) and call.func.attr == "Schema":
                    found[cls.name] = {
                        k: _literal(call, k) for k in ("node_id", "display_name", "description", "category")
                    }
    return found


def _registered() -> dict[str, dict]:
    """Node id -> schema fields, for the classes nodes/__init__.py registers in NODES."""
    tree = ast.parse((NODES_DIR / "__init__.py").read_text())
    (nodes,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "NODES"]
    schemas = _schemas()
    return {schemas[e.id]["node_id"]: schemas[e.id] for e in nodes.elts}


REGISTERED = _registered()
NODE_DEFS = json.loads((LOCALE / "nodeDefs.json").read_text(encoding="utf-8"))


def test_every_registered_node_has_a_help_page_and_a_locale_entry_and_nothing_else():
    assert len(REGISTERED) == 12 and all(i.startswith("ShieldDiff") for i in REGISTERED)
    assert {p.stem for p in DOCS.glob("*.md")} == set(REGISTERED)
    assert set(NODE_DEFS) == set(REGISTERED)


@pytest.mark.parametrize("node_id", sorted(REGISTERED))
def test_locale_entry_is_the_node_s_own_text(node_id):
    schema, entry = REGISTERED[node_id], NODE_DEFS[node_id]
    assert entry["display_name"] == schema["display_name"]
    assert entry["description"] == schema["description"]
    assert entry["inputs"] and all(v["name"] == k for k, v in entry["inputs"].items())
    assert list(entry["outputs"]) == [str(i) for i in range(len(entry["outputs"]))]  # by index, as the frontend reads


@pytest.mark.parametrize("node_id", sorted(REGISTERED))
def test_help_page_names_the_node_and_each_of_its_inputs_and_outputs(node_id):
    page = (DOCS / f"{node_id}.md").read_text(encoding="utf-8")
    assert page.startswith(f"# {REGISTERED[node_id]['display_name']}\n")
    named = set(re.findall(r"`([^`]+)`", page))
    entry = NODE_DEFS[node_id]
    missing = [n for n in [*entry["inputs"], *(o["name"] for o in entry["outputs"].values())] if n not in named]
    assert not missing, f"web/docs/{node_id}.md does not name {missing}"


def test_category_segments_are_in_main_json():
    categories = json.loads((LOCALE / "main.json").read_text(encoding="utf-8"))["nodeCategories"]
    segments = {s for schema in REGISTERED.values() for s in schema["category"].split("/")}
    assert set(categories) == segments
