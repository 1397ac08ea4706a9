"""The preview gate setting: image previews stay blurred until a ShieldDiff verdict says the prompt is safe."""

import numpy as np
import pytest
from PIL import Image

from support.comfy_images import upload

SETTING = "ShieldDiff.PreviewGate"
BLURRED = "shielddiff-blurred-"

# Build LoadImage -> Preview Image (and, when asked, LoadImage -> Invert -> Invert -> Nudity Score: the
# same pixels, scored after the preview has run, since ComfyUI runs a ready output node first), record
# every "executed" event the frontend's listeners receive (and when they receive the run's end), and queue
# it through the frontend.
QUEUE = """async ({ name, score, threshold }) => {
    window.__gateSeen = [];
    window.__gateDone = false;
    app.api.addEventListener("execution_success", () => { window.__gateDone = true; });
    app.api.addEventListener("executed", ({ detail }) => window.__gateSeen.push({
        node: String(detail.display_node ?? detail.node),
        images: (detail.output?.images ?? []).map((i) => i.filename),
        verdict: !!detail.output?.shielddiff_nudity,
    }));
    app.graph.clear();
    const add = (type, x, y) => {
        const node = LiteGraph.createNode(type);
        node.pos = [x, y];
        app.graph.add(node);
        return node;
    };
    const load = add("LoadImage", 100, 100);
    load.widgets.find((w) => w.name === "image").value = name;
    const preview = add("PreviewImage", 500, 100);
    load.connect(0, preview, 0);
    if (score) {
        const first = add("ImageInvert", 100, 500), second = add("ImageInvert", 350, 500);
        const judge = add("ShieldDiffNudityScore", 600, 500);
        if (threshold !== null) judge.widgets.find((w) => w.name === "threshold").value = threshold;
        load.connect(0, first, 0);
        first.connect(0, second, 0);
        second.connect(0, judge, 0);
    }
    const { prompt_id } = await app.api.queuePrompt(0, await app.graphToPrompt());
    return { prompt_id, preview: String(preview.id) };
}"""

# The file names the Preview Image node shows now (the frontend keeps a node's outputs in app.nodeOutputs,
# older ones also on the node as `images`).
SHOWN = """(id) => {
    const images = app.nodeOutputs?.[id]?.images ?? app.graph.getNodeById(Number(id))?.images ?? [];
    return images.map((i) => i.filename);
}"""


def set_gate(comfy_page, on: bool) -> None:
    comfy_page.set_setting(SETTING, on)
    assert comfy_page.setting(SETTING) is on


def noise(seed: int) -> Image.Image:
    """Noise, dark on the left half and bright on the right: a blur keeps the halves apart but not the grain."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 100, (128, 128, 3), dtype=np.uint8)
    pixels[:, 64:] += 155
    return Image.fromarray(pixels)


def grain(pixels: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: high for noise, low once blurred."""
    p = pixels.astype(np.float64)
    return float((np.abs(np.diff(p, axis=0)).mean() + np.abs(np.diff(p, axis=1)).mean()) / 2)


def run(comfy_page, comfy, seed: int, score: bool, threshold: float | None = None):
    """Queue the graph from the page and wait for the run; returns its entry and the Preview Image node's id."""
    name = upload(comfy, noise(seed), f"gate-noise-{seed}.png")
    queued = comfy_page.eval(QUEUE, {"name": name, "score": score, "threshold": threshold})
    entry = comfy.run_status(comfy.wait(queued["prompt_id"], timeout=300))
    return entry, queued["preview"]


def events_of(comfy_page, node: str) -> list[dict]:
    return [e for e in comfy_page.eval("() => window.__gateSeen") if e["node"] == node or e["verdict"]]


@pytest.fixture
def gate(comfy_page):
    set_gate(comfy_page, True)
    try:
        yield comfy_page
    finally:
        set_gate(comfy_page, False)


def test_the_gate_is_off_by_default_and_then_previews_are_untouched(comfy_page, comfy):
    assert comfy_page.setting(SETTING) is False
    entry, node = run(comfy_page, comfy, seed=101, score=False)
    original = entry["outputs"][node]["images"][0]["filename"]
    comfy_page.page.wait_for_function(f"() => ({SHOWN})('{node}')[0] === '{original}'", timeout=60_000)
    assert [e["images"] for e in events_of(comfy_page, node)] == [[original]]


def test_without_a_verdict_the_preview_shows_a_blurred_copy(gate, comfy):
    entry, node = run(gate, comfy, seed=202, score=False)
    original = entry["outputs"][node]["images"][0]
    gate.page.wait_for_function(f"() => ({SHOWN})('{node}').length > 0", timeout=60_000)
    shown = gate.eval(SHOWN, node)
    assert len(shown) == 1 and shown[0].startswith(BLURRED), shown
    assert all(name.startswith(BLURRED) for e in events_of(gate, node) for name in e["images"])
    source = np.asarray(Image.open(comfy.base_dir / "temp" / original["filename"]).convert("RGB"))
    blurred = np.asarray(Image.open(comfy.base_dir / "temp" / shown[0]).convert("RGB"))
    assert blurred.shape == source.shape
    assert grain(blurred) < grain(source) / 10, (grain(blurred), grain(source))
    # a blur of this image, not a blank: the dark half stays darker than the bright half
    assert blurred[:, :48].mean() + 100 < blurred[:, 80:].mean()
    gate.eval(f"() => app.canvas.centerOnNode(app.graph.getNodeById({node}))")
    gate.screenshot("preview-gate-blurred.png")


def test_a_safe_verdict_shows_the_preview_that_was_blurred_before_it(gate, comfy):
    entry, node = run(gate, comfy, seed=303, score=True)
    original = entry["outputs"][node]["images"][0]["filename"]
    gate.page.wait_for_function(f"() => ({SHOWN})('{node}')[0] === '{original}'", timeout=60_000)
    seen = events_of(gate, node)
    verdict = next(i for i, e in enumerate(seen) if e["verdict"])
    before = [e["images"] for e in seen[:verdict]]
    after = [e["images"] for e in seen[verdict + 1 :]]
    assert len(before) == 1 and before[0][0].startswith(BLURRED), seen  # blurred before the verdict
    assert after == [[original]], seen  # the original right after a safe one
    assert gate.page_errors == []


def test_a_nude_verdict_keeps_the_preview_blurred(gate, comfy):
    """Threshold 0 makes every image nude (a score is always >= 0): the same noise now gets a nude verdict."""
    entry, node = run(gate, comfy, seed=404, score=True, threshold=0.0)
    judge = next(nid for nid, n in entry["prompt"][2].items() if n["class_type"] == "ShieldDiffNudityScore")
    assert entry["outputs"][judge]["shielddiff_nudity"][0]["is_nude"] is True
    gate.page.wait_for_function("() => window.__gateDone", timeout=60_000)  # the gate keeps the events' order
    seen = events_of(gate, node)
    assert [e["verdict"] for e in seen] == [False, True], seen  # the preview ran before the verdict
    assert seen[0]["images"][0].startswith(BLURRED), seen
    assert gate.eval(SHOWN, node) == seen[0]["images"]  # nothing after the verdict uncovered it
