"""The real ComfyUI frontend with the pack: extension, node library, canvas (the example workflows are in
test_example_workflows.py)."""

from playwright.sync_api import TimeoutError as PlaywrightTimeout

NUDITY = "ShieldDiffNudityScore"


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
