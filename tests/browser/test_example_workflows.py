"""The example workflows (ComfyUI's templates of the pack) in the real frontend: each one loads as it is
shipped, explains itself in a note, has its thumbnail, names where its model files come from, and
queues and runs on tiny stand-in models."""

from __future__ import annotations

import json
import uuid

import pytest
import torch
from safetensors.torch import load_file, save_file

from support.comfy_harness import REPO
from support.tiny_models import TINY_CLIP_CONFIG, demo_lora
from trainer.lora.formats import write_lora

EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))
PACK_PREFIX = "ShieldDiff"
SHOWN = ["ShieldDiffNudityScore", "ShieldDiffClipScore", "ShieldDiffReward"]  # nodes whose results the frontend shows
LORA_USERS = {"ShieldDiffLoraLoader", "ShieldDiffPurifyImage"}  # nodes whose first widget is a LoRA of models/loras
NOTES = {"MarkdownNote", "Note"}
CLIP_FILE = "shielddiff-tiny-clip.safetensors"
ERASED_UNET = "shielddiff-tiny-erased-unet.safetensors"


def load(path):
    return json.loads(path.read_text())


def lora_names() -> set[str]:
    return {n["widgets_values"][0] for p in EXAMPLES for n in load(p)["nodes"] if n["type"] in LORA_USERS}


@pytest.fixture(scope="module")
def stand_ins(comfy, demo_checkpoint) -> dict[str, str]:
    """Tiny files in the server's folders for the models the templates name, by model folder: the demo
    checkpoint, a UNet of it with changed weights (the 'erased' model), tiny CLIP weights; and a tiny LoRA
    under every LoRA name the templates use (those are files a template's first step or another template
    makes)."""
    models = comfy.base_dir / "models"
    for name in lora_names():
        write_lora(demo_lora(rank=4, alpha=2.0, seed=3), models / "loras" / name, "kohya")
    unet = {k: v for k, v in load_file(str(demo_checkpoint)).items() if k.startswith("model.diffusion_model.")}
    gen = torch.Generator().manual_seed(0)
    erased = {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.ndim >= 2 else v for k, v in unet.items()}
    (models / "diffusion_models").mkdir(parents=True, exist_ok=True)
    save_file(erased, str(models / "diffusion_models" / ERASED_UNET))
    import open_clip

    from support.tiny_models import register_tiny_clip

    name = register_tiny_clip(comfy.base_dir)
    torch.manual_seed(0)
    (models / "shielddiff_clip").mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in open_clip.create_model(name).state_dict().items()}
    save_file(state, str(models / "shielddiff_clip" / CLIP_FILE))
    (models / "shielddiff_clip" / CLIP_FILE.replace(".safetensors", ".json")).write_text(json.dumps(TINY_CLIP_CONFIG))
    return {"checkpoints": demo_checkpoint.name, "diffusion_models": ERASED_UNET, "shielddiff_clip": CLIP_FILE}


def with_stand_ins(graph: dict, stand_ins: dict[str, str]) -> dict:
    """The graph with every model file its model entries name replaced by the stand-in of that folder."""
    for node in graph["nodes"]:
        files = {m["name"]: stand_ins[m["directory"]] for m in node.get("properties", {}).get("models", [])}
        node["widgets_values"] = [
            files.get(v, v) if isinstance(v, str) else v for v in node.get("widgets_values") or []
        ]
    return graph


# Made small on the canvas, as a user on a CPU would: the templates are 512x512 at 20 steps for real
# checkpoints, and train for hours. Everything muted (a template's second step) is switched on.
SHRINK = """async ([graph, loraName]) => {
    await app.loadGraphData(graph);
    const set = (node, name, value) => { const w = node.widgets?.find((w) => w.name === name); if (w) w.value = value; };
    for (const node of app.graph.nodes) {
        node.mode = 0;
        if (node.type === "EmptyLatentImage" || node.type === "ImageScale") { set(node, "width", 64); set(node, "height", 64); }
        if (node.type === "KSampler" || node.type === "ShieldDiffPurifyImage") set(node, "steps", 2);
        if (node.type === "LoraSave") set(node, "rank", 2);
        if (node.type === "ShieldDiffRLSettings") set(node, "sample_batch_size", 1);
        if (node.type === "ShieldDiffTrainSafetyLora") {
            for (const [name, value] of [["epochs", 1], ["batches_per_epoch", 1], ["train_batch_size", 1],
                                         ["steps", 2], ["resolution", 64], ["lora_name", loraName]]) set(node, name, value);
        }
        set(node, "clip_architecture", "auto");  // the tiny CLIP's config lies beside its weights
    }
    const prompt = await app.graphToPrompt();
    return await app.api.queuePrompt(0, prompt);
}"""


@pytest.mark.parametrize("workflow", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_workflow_runs_from_the_frontend(comfy_page, comfy, stand_ins, workflow):
    """Load the template as a user would, queue it through the frontend, wait for success."""
    graph = with_stand_ins(load(workflow), stand_ins)
    job_lora = f"template-test-{uuid.uuid4().hex[:8]}"
    output_loras = set((comfy.base_dir / "output" / "loras").glob("*.safetensors"))
    response = comfy_page.eval(SHRINK, [graph, job_lora])
    assert comfy_page.page.get_by_text("Invalid workflow").count() == 0  # the frontend accepted the file as is
    assert not response.get("node_errors"), response
    entry = comfy.run_status(comfy.wait(response["prompt_id"], timeout=600))
    ran = {nid: node["class_type"] for nid, node in entry["prompt"][2].items()}
    assert any(kind.startswith(PACK_PREFIX) for kind in ran.values()), "an example workflow should use the pack"
    assert all(nid in entry["outputs"] for nid, kind in ran.items() if kind in SHOWN)
    # the pack's frontend shows each scoring node's result on the node once it has run
    comfy_page.page.wait_for_function(
        "(shown) => app.graph.nodes.filter(n => shown.includes(n.type)).every(n => n.shielddiffResult)",
        arg=SHOWN,
        timeout=30_000,
    )
    if "ShieldDiffTrainSafetyLora" in ran.values():  # the job was queued; stop it, leaving the CPU to the tests
        jobs = [j for j in comfy.get("/shielddiff/jobs").json()["jobs"] if j["lora_name"] == job_lora]
        assert len(jobs) == 1, jobs
        assert comfy.post(f"/shielddiff/jobs/{jobs[0]['id']}/cancel").ok
    if "LoraSave" in ran.values():  # the extracted LoRA is one Load ShieldDiff LoRA applies
        (extracted,) = set((comfy.base_dir / "output" / "loras").glob("*.safetensors")) - output_loras
        name = f"extracted-{uuid.uuid4().hex[:8]}.safetensors"
        extracted.rename(comfy.base_dir / "models" / "loras" / name)
        check = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": stand_ins["checkpoints"]}},
            "2": {
                "class_type": "ShieldDiffLoraLoader",
                "inputs": {
                    "model": ["1", 0],
                    "clip": ["1", 1],
                    "lora_name": name,
                    "strength_model": 1.0,
                    "strength_clip": 1.0,
                },
            },
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
        }
        info = json.loads(comfy.run(check, timeout=300)["outputs"]["3"]["text"][0])
        assert info["matched_modules"] == info["modules"] > 0, info
    first = next(n for n in ran.values() if n.startswith(PACK_PREFIX))
    comfy_page.eval(f"() => app.canvas.centerOnNode(app.graph.nodes.find(n => n.type === '{first}'))")
    shot = comfy_page.screenshot(f"example-{workflow.stem}.png")
    assert shot.stat().st_size > 10_000
    assert comfy_page.page_errors == []


@pytest.mark.parametrize("workflow", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_template_has_its_note_thumbnail_and_model_entries(workflow):
    """What the template browser and a new user see: a thumbnail of the same name, a note at the top of the
    canvas saying what the template does and which file goes in which folder, and for every model file
    a loader names (other than LoRAs that a template makes) a model entry with its download address."""
    graph = load(workflow)
    thumbnail = workflow.with_suffix(".jpg")
    assert thumbnail.is_file() and thumbnail.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    (note,) = [n for n in graph["nodes"] if n["type"] in NOTES]
    text = note["widgets_values"][0]
    assert text.startswith("# ") and "## Files" in text
    assert note["pos"][1] <= min(n["pos"][1] for n in graph["nodes"])  # at the top
    entries = [m for n in graph["nodes"] for m in n.get("properties", {}).get("models", [])]
    for entry in entries:
        assert entry["url"].startswith("https://") and entry["directory"] in text
        assert entry["name"] in text  # the note names the file and its folder too
    for node in graph["nodes"]:
        named = {m["name"] for m in node.get("properties", {}).get("models", [])}
        files = [v for v in node.get("widgets_values") or [] if isinstance(v, str) and v.endswith((".pt", ".ckpt"))]
        files += [v for v in node.get("widgets_values") or [] if isinstance(v, str) and v.endswith(".safetensors")]
        if node["type"] not in LORA_USERS:
            assert set(files) <= named, f"{node['type']} names {files} without a model entry"
        else:
            assert node["widgets_values"][0] in text  # the LoRA: the note says where it comes from


def test_example_workflows_are_offered_as_templates(comfy):
    offered = comfy.get("/api/workflow_templates").json().get("comfyui-shielddiff", [])
    assert sorted(offered) == [p.stem for p in EXAMPLES]
    for name in offered:
        assert comfy.get(f"/api/workflow_templates/comfyui-shielddiff/{name}.json").json()["nodes"]
        assert comfy.get(f"/api/workflow_templates/comfyui-shielddiff/{name}.jpg").content[:3] == b"\xff\xd8\xff"
