"""Write the thumbnail of every example workflow: example_workflows/<name>.jpg beside <name>.json.

ComfyUI's template browser shows a pack's template with the image of the same name. This opens each
template in the real frontend (a ComfyUI on loopback with this pack, headless Chromium), fits the
graph to the view and saves a 512x384 JPEG of the canvas.

    .venv/bin/python tools/template_thumbnails.py [NAME ...]    (default: every template)

Needs ComfyUI (`make setup`, or SHIELDDIFF_COMFYUI_DIR), Chromium (or SHIELDDIFF_CHROMIUM) and
playwright, as the browser tests do.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_workflows"
SIZE = (512, 384)
VIEWPORT = {"width": 1024, "height": 768}

log = logging.getLogger("template_thumbnails")

# Fit every node and group into the view: screen = (graph position + offset) * scale.
FIT = """() => {
    const canvas = app.canvas, el = canvas.canvas;
    const boxes = [...app.graph.nodes.map((n) => [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT,
                                                 n.size[0], n.size[1] + LiteGraph.NODE_TITLE_HEIGHT]),
                   ...(app.graph.groups || []).map((g) => [g.pos[0], g.pos[1], g.size[0], g.size[1]])];
    const x0 = Math.min(...boxes.map((b) => b[0])), y0 = Math.min(...boxes.map((b) => b[1]));
    const x1 = Math.max(...boxes.map((b) => b[0] + b[2])), y1 = Math.max(...boxes.map((b) => b[1] + b[3]));
    const width = el.clientWidth, height = el.clientHeight, margin = 20;
    const scale = Math.min((width - 2 * margin) / (x1 - x0), (height - 2 * margin) / (y1 - y0));
    canvas.ds.scale = scale;
    canvas.ds.offset[0] = (width / scale - (x1 - x0)) / 2 - x0;
    canvas.ds.offset[1] = (height / scale - (y1 - y0)) / 2 - y0;
    canvas.setDirty(true, true);
    canvas.draw(true, true);
}"""

# The frontend's menus, side bar, banners and toasts lie over the canvas: hide all that is neither inside
# the canvas's container (the canvas, node text boxes and notes) nor one of its ancestors.
HIDE_CHROME = """() => {
    const canvas = document.querySelector("#graph-canvas");
    const widgets = document.querySelector(".graph-canvas-container") || canvas.parentElement;
    const keep = (el) => el.contains(canvas) || el.contains(widgets);
    for (const el of document.querySelectorAll("body *"))
        if (!keep(el) && !widgets.contains(el)) el.style.visibility = "hidden";
    for (const el of widgets.querySelectorAll("*"))
        if (!keep(el) && !el.closest(".dom-widget") && !el.querySelector(".dom-widget")) el.style.visibility = "hidden";
    app.canvas.show_info = false;
}"""


def chromium() -> str:
    given = os.environ.get("SHIELDDIFF_CHROMIUM")
    found = given if given and Path(given).exists() else shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("Chromium is not installed: `apt-get install chromium`, or set SHIELDDIFF_CHROMIUM")
    return found


def comfyui_dir() -> Path:
    path = Path(os.environ.get("SHIELDDIFF_COMFYUI_DIR") or REPO / ".comfyui" / "ComfyUI")
    if not (path / "main.py").is_file():
        raise SystemExit(f"no ComfyUI at {path}: run `make setup` or set SHIELDDIFF_COMFYUI_DIR")
    return path


def thumbnail(png: bytes, out: Path) -> None:
    """The screenshot scaled to SIZE, written as JPEG (atomically)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").resize(SIZE, Image.LANCZOS)
    tmp = out.with_suffix(".jpg.tmp")
    image.save(tmp, "JPEG", quality=82, optimize=True)
    tmp.replace(out)


def render(page, workflow: Path) -> bytes:
    graph = json.loads(workflow.read_text())
    page.evaluate("async (graph) => { await app.loadGraphData(graph); }", graph)
    page.wait_for_timeout(500)
    page.evaluate(HIDE_CHROME)
    page.evaluate(FIT)
    page.wait_for_timeout(800)  # let the DOM widgets (text boxes, notes) follow the new view
    box = page.evaluate(
        "() => { const r = document.querySelector('#graph-canvas').getBoundingClientRect(); "
        "return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
    )
    return page.screenshot(type="png", clip=box)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="template names (default: all in example_workflows/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workflows = [EXAMPLES / f"{n}.json" for n in args.names] or sorted(EXAMPLES.glob("*.json"))
    missing = [str(w) for w in workflows if not w.is_file()]
    if missing:
        raise SystemExit(f"no such template: {', '.join(missing)}")

    sys.path.insert(0, str(REPO / "tests"))
    from playwright.sync_api import sync_playwright

    from support.comfy_harness import ComfyServer

    with tempfile.TemporaryDirectory(prefix="shielddiff-thumbnails-") as base:
        server = ComfyServer(comfyui_dir(), Path(base))
        server.prepare()
        # no missing-model dialog over the canvas: the templates name models this server does not have
        # and text boxes and notes drawn at the thumbnail's zoom too
        settings = {
            "Comfy.TutorialCompleted": True,
            "Comfy.Workflow.ShowMissingModelsWarning": False,
            "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.1,  # frontends before 1.2x
            "LiteGraph.Canvas.MinFontSizeForLOD": 0,
            "Comfy.Minimap.Visible": False,
        }
        (Path(base) / "user" / "default" / "comfy.settings.json").write_text(json.dumps(settings))
        with server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=["--headless", "--no-sandbox"])
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(server.url, wait_until="load")
                page.wait_for_function("() => window.app?.graph && app.extensions?.length > 0", timeout=120_000)
                for workflow in workflows:
                    out = workflow.with_suffix(".jpg")
                    thumbnail(render(page, workflow), out)
                    log.info("%s (%d bytes)", out.relative_to(REPO), out.stat().st_size)
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
