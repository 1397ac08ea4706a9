"""The preview gate on sampler previews: a ComfyUI that sends them, the txt2img example queued from the frontend."""

import json

import pytest

from support.comfy_harness import REPO, ComfyServer

SETTING = "ShieldDiff.PreviewGate"

EXAMPLE = REPO / "example_workflows" / "txt2img_with_nudity_score.json"

# Watch the sampler previews as they arrive from the websocket (before the gate: the frontend's own
# dispatch, shadowed by the gate, is shadowed once more here) and as the frontend's listeners get them,
# then queue the example, small (256x256 latents, 3 steps), with or without its Nudity Score node, with a
# seed of its own (a repeated run would come from ComfyUI's cache, without previews).
QUEUE = """async ({ graph, score, seed, checkpoint }) => {
    Object.assign(window, { __raw: [], __seen: [], __done: false });
    const gated = app.api.dispatchCustomEvent;
    app.api.dispatchCustomEvent = function (type, detail) {
        if (type === "b_preview_with_metadata") window.__raw.push(detail.blob);
        return gated.call(this, type, detail);
    };
    app.api.addEventListener("b_preview_with_metadata", ({ detail }) => window.__seen.push({ blob: detail.blob }));
    app.api.addEventListener("executed", ({ detail }) => {
        if (detail.output?.shielddiff_nudity) window.__seen.push({ verdict: true });
    });
    app.api.addEventListener("execution_success", () => { window.__done = true; });
    await app.loadGraphData(graph);
    const set = (node, name, value) => { node.widgets.find((w) => w.name === name).value = value; };
    for (const node of [...app.graph.nodes]) {
        if (node.type === "EmptyLatentImage") { set(node, "width", 256); set(node, "height", 256); }
        if (node.type === "KSampler") { set(node, "steps", 3); set(node, "seed", seed); }
        if (node.type === "CheckpointLoaderSimple") set(node, "ckpt_name", checkpoint);  // the example names SD1.5
        if (node.type === "ShieldDiffNudityScore" && !score) app.graph.remove(node);
    }
    const { prompt_id } = await app.api.queuePrompt(0, await app.graphToPrompt());
    return prompt_id;
}"""

# What the listeners got, in order: "verdict", or for a preview whether it is one of the raw ones (and
# the last) and its grain (mean absolute difference of neighbouring pixels' RGB).
SEEN = """async () => {
    const grain = async (blob) => {
        const bitmap = await createImageBitmap(blob);
        const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
        const ctx = canvas.getContext("2d");
        ctx.drawImage(bitmap, 0, 0);
        const { data, width, height } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
        let sum = 0, count = 0;
        for (let y = 0; y < height; y++) for (let x = 0; x + 1 < width; x++)
            for (let c = 0; c < 3; c++) { sum += Math.abs(data[(y * width + x) * 4 + c] - data[(y * width + x + 1) * 4 + c]); count++; }
        return sum / count;
    };
    const last = window.__raw.at(-1);
    const out = [];
    for (const e of window.__seen)
        out.push(e.verdict ? "verdict" : { raw: window.__raw.includes(e.blob), last: e.blob === last, grain: await grain(e.blob) });
    return { seen: out, raw: await Promise.all(window.__raw.map(grain)) };
}"""


@pytest.fixture(scope="module")
def comfy(comfyui_dir, demo_checkpoint, tmp_path_factory):
    """A ComfyUI that sends sampler previews (latent2rgb); the session's server sends none."""
    server = ComfyServer(
        comfyui_dir, tmp_path_factory.mktemp("comfyui-previews"), extra_args=["--preview-method", "latent2rgb"]
    )
    server.prepare(checkpoint=demo_checkpoint)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run(comfy_page, comfy, score: bool, seed: int, checkpoint: str) -> dict:
    graph = json.loads(EXAMPLE.read_text())
    prompt_id = comfy_page.eval(QUEUE, {"graph": graph, "score": score, "seed": seed, "checkpoint": checkpoint})
    comfy.run_status(comfy.wait(prompt_id, timeout=600))
    comfy_page.page.wait_for_function("() => window.__done", timeout=60_000)
    got = comfy_page.eval(SEEN)
    assert got["raw"], "the server sent no sampler preview"
    return got


def test_sampler_previews_are_untouched_with_the_gate_off(comfy_page, comfy, demo_checkpoint):
    got = run(comfy_page, comfy, score=True, seed=1, checkpoint=demo_checkpoint.name)
    previews = [e for e in got["seen"] if e != "verdict"]
    assert len(previews) == len(got["raw"]) and all(e["raw"] for e in previews), got


@pytest.mark.parametrize("score", [False, True], ids=["no-verdict", "safe-verdict"])
def test_sampler_previews_are_blurred_until_a_safe_verdict(comfy_page, comfy, score, demo_checkpoint):
    comfy_page.set_setting(SETTING, True)
    try:
        got = run(comfy_page, comfy, score=score, seed=2 + score, checkpoint=demo_checkpoint.name)
    finally:
        comfy_page.set_setting(SETTING, False)
    seen = got["seen"]
    verdict = seen.index("verdict") if score else len(seen)
    before, after = seen[:verdict], seen[verdict + 1 :]
    assert before and not any(e["raw"] for e in before), seen  # every preview before the verdict is a blurred copy
    assert max(e["grain"] for e in before) < min(got["raw"]) / 3, got
    # after a safe verdict the sampler shows its last preview as it came
    assert after == ([{"raw": True, "last": True, "grain": got["raw"][-1]}] if score else []), seen
