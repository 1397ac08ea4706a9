"""The single Train Safety LoRA node's widget order, as the frontend saved it, is the order both the
frontend's upgrade (web/js/shielddiff_train.js) and the train node (nodes/legacy_train_inputs.py) read."""

import ast
import json
import re

from support.comfy_harness import REPO


def python_order() -> list[str]:
    tree = ast.parse((REPO / "nodes" / "legacy_train_inputs.py").read_text())
    (value,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "LEGACY_WIDGETS"]
    return list(ast.literal_eval(value))


def js_order() -> list[str]:
    script = (REPO / "web" / "js" / "shielddiff_train.js").read_text()
    body = re.search(r"const LEGACY_WIDGETS = \[(.*?)\];", script, re.S).group(1)
    return re.findall(r'"([^"]+)"', body)


def test_the_saved_workflow_s_widget_order_is_the_one_read_back():
    saved = json.loads((REPO / "tests" / "support" / "legacy_train_node" / "single_node_rl.workflow.json").read_text())
    (node,) = [n for n in saved["nodes"] if n["type"] == "ShieldDiffTrainSafetyLora"]
    widgets = [i["name"] for i in node["inputs"] if "widget" in i]
    assert len(widgets) == len(node["widgets_values"]) == 24
    assert python_order() == widgets
    assert js_order() == widgets
