"""The real ComfyUI frontend with the pack: extension, node library, canvas, example workflows."""

import json

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from support.comfy_harness import REPO

NUDITY = "ShieldDiffNudityScore"
PACK = {NUDITY, "ShieldDiffNudityCensor", "ShieldDiffClipScore", "ShieldDiffReward"}
SHOWN = [NUDITY, "ShieldDiffClipScore", "ShieldDiffReward"]  # nodes whose results the frontend shows
EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))


def test_page_loads_with_the_pack_extension_and_no_uncaught_errors(comfy_page):
    names = comfy_page.eval("() => app.extensions.map(e => e.name)")
    assert "ShieldDiff.Core" in names
    assert comfy_page.eval(f"() => !!LiteGraph.registered_node_types['{NUDITY}']")
    comfy_page.page.wait_for_timeout(1500)  # let late start-up work finish before judging errors
    assert comfy_page.page_errors == []
    assert [e for e in comfy_page.console_errors if "shielddiff" in e.lower()] == []


def test_node_search_finds_the_pack_node_and_adds_it_to_the_canvas(comfy_page):
    page = comfy_page.page
    comfy_page.eval("() => { app.graph.clear(); app.graph.setDirtyCanvas(true, true); }")
    # the node search box: "Search Nodes..." on frontend 1.32, "Add a node..." on 1.5x
    search = page.locator('input[placeholder="Search Nodes..."], input[placeholder="Add a node..."]')
    for _ in range(5):  # the canvas may still be settling right after load: try the double-click again
        page.mouse.dblclick(700, 450)  # double-click on empty canvas opens the node library search
        try:
            search.wait_for(state="visible", timeout=3_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    search.fill("Nudity Score")
    page.locator("[role=option]").filter(has_text="ShieldDiff").first.wait_for(timeout=15_000)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => app.graph.nodes.some(n => n.type === '{NUDITY}')", timeout=15_000)
    comfy_page.screenshot("nudity-score-node-on-canvas.png")


@pytest.mark.parametrize("workflow", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_workflow_runs_from_the_frontend(comfy_page, comfy, demo_checkpoint, workflow):
    """Load the example as a user would, queue it through the frontend, wait for success. Sampling is
    made small on the canvas first (64x64 latents, 2 steps), as a user on a CPU would: the examples are
    512x512 at 20 steps for real checkpoints, which the demo checkpoint on CI's CPUs takes minutes for."""
    graph = json.loads(workflow.read_text())
    response = comfy_page.eval(
        """async (graph) => {
            await app.loadGraphData(graph);
            const set = (node, name, value) => { const w = node.widgets?.find((w) => w.name === name); if (w) w.value = value; };
            for (const node of app.graph.nodes) {
                if (node.type === "EmptyLatentImage") { set(node, "width", 64); set(node, "height", 64); }
                if (node.type === "KSampler") set(node, "steps", 2);
            }
            const prompt = await app.graphToPrompt();
            return await app.api.queuePrompt(0, prompt);
        }""",
        graph,
    )
    assert comfy_page.page.get_by_text("Invalid workflow").count() == 0  # the frontend accepted the file as is
    entry = comfy.run_status(comfy.wait(response["prompt_id"], timeout=600))
    pack_nodes = {nid: node["class_type"] for nid, node in entry["prompt"][2].items() if node["class_type"] in PACK}
    assert pack_nodes, "an example workflow should use the pack"
    assert all(nid in entry["outputs"] for nid, kind in pack_nodes.items() if kind in SHOWN)
    # the pack's frontend shows each scoring node's result on the node once it has run
    comfy_page.page.wait_for_function(
        "(shown) => app.graph.nodes.filter(n => shown.includes(n.type)).every(n => n.shielddiffResult)",
        arg=SHOWN,
        timeout=30_000,
    )
    first = next(iter(pack_nodes.values()))
    comfy_page.eval(f"() => app.canvas.centerOnNode(app.graph.nodes.find(n => n.type === '{first}'))")
    shot = comfy_page.screenshot(f"example-{workflow.stem}.png")
    assert shot.stat().st_size > 10_000
    assert comfy_page.page_errors == []


def test_example_workflows_are_offered_as_templates(comfy):
    offered = comfy.get("/api/workflow_templates").json().get("comfyui-shielddiff", [])
    assert sorted(offered) == [p.stem for p in EXAMPLES]
    for name in offered:
        assert comfy.get(f"/api/workflow_templates/comfyui-shielddiff/{name}.json").json()["nodes"]
