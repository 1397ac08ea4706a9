"""Train Safety LoRA workflows in the real frontend: one saved with the single node of earlier
versions (every method's input on the train node, widget values by position) loads with its values
moved onto a settings node joined to the train node, and queues the job that node queued."""

from __future__ import annotations

import json

from support.comfy_harness import REPO

LEGACY = REPO / "tests" / "support" / "legacy_train_node"
SHARED = ["checkpoint", "epochs", "batches_per_epoch", "train_batch_size", "steps", "resolution"]
SHARED += ["lora_rank", "learning_rate", "seed", "lora_name"]
RL = ["unsafe_prompts", "benign_prompts", "unsafe_file", "benign_file", "w_clip", "w_nude", "clip_weights"]
RL += ["clip_architecture", "sample_batch_size"]

LOADED = """() => {
    const train = app.graph.nodes.find((n) => n.type === "ShieldDiffTrainSafetyLora");
    const settings = app.graph.nodes.filter((n) => n.type === "ShieldDiffRLSettings");
    const slot = train.inputs.find((i) => i.name === "settings");
    const link = slot?.link != null ? (app.graph.links.get?.(slot.link) ?? app.graph.links[slot.link]) : null;
    const values = (node) => Object.fromEntries((node?.widgets ?? []).map((w) => [w.name, w.value]));
    return {
        train: values(train), settings: values(settings[0]), count: settings.length,
        socket: slot?.type, linked_from: link ? app.graph.getNodeById(link.origin_id)?.type : null,
        inputs: train.inputs.map((i) => i.name),
    };
}"""


def test_a_workflow_saved_with_the_single_node_loads_onto_a_settings_node_and_queues_the_same_job(
    comfy_page, comfy, demo_checkpoint
):
    workflow = json.loads((LEGACY / "single_node_rl.workflow.json").read_text())
    saved = json.loads((LEGACY / "single_node_rl.api.json").read_text())["1"]["inputs"]
    comfy_page.eval("async (graph) => { await app.loadGraphData(graph); }", workflow)
    comfy_page.page.wait_for_timeout(200)  # the upgrade also runs after a paste, on the next task
    loaded = comfy_page.eval(LOADED)
    assert loaded["count"] == 1 and loaded["linked_from"] == "ShieldDiffRLSettings"
    assert loaded["socket"] == "SHIELDDIFF_METHOD"
    assert {k: loaded["train"][k] for k in SHARED} == {k: saved[k] for k in SHARED}
    assert {k: loaded["settings"][k] for k in RL} == {k: saved[k] for k in RL}
    assert "method" not in loaded["inputs"] and "w_clip" not in loaded["inputs"]
    assert comfy_page.page.get_by_text("Invalid workflow").count() == 0  # the frontend accepted the file as is
    comfy_page.eval("() => app.canvas.centerOnNode(app.graph.nodes.find((n) => n.type === 'ShieldDiffRLSettings'))")
    comfy_page.screenshot("train-single-node-workflow-upgraded.png")

    # saved again and reloaded, it is today's graph: no second settings node
    again = comfy_page.eval("async () => { const g = app.graph.serialize(); await app.loadGraphData(g); }")
    assert again is None and comfy_page.eval(LOADED)["count"] == 1

    response = comfy_page.eval(
        """async () => {
            const train = app.graph.nodes.find((n) => n.type === "ShieldDiffTrainSafetyLora");
            train.widgets.find((w) => w.name === "lora_name").value = "single-node-in-browser";  // its own job
            const prompt = await app.graphToPrompt();
            return await app.api.queuePrompt(0, prompt);
        }"""
    )
    entry = comfy.run_status(comfy.wait(response["prompt_id"], timeout=120))
    train_id = next(k for k, n in entry["prompt"][2].items() if n["class_type"] == "ShieldDiffTrainSafetyLora")
    job_id = entry["outputs"][train_id]["shielddiff_job"][0].split()[1]
    config = (comfy.base_dir / "user" / "shielddiff" / "jobs" / job_id / "config.toml").read_text()
    assert comfy.post(f"/shielddiff/jobs/{job_id}/cancel").ok  # only its config is under test
    expected = (LEGACY / "single_node_rl.config.toml").read_text()
    assert config == expected.replace("{base}", str(comfy.base_dir)).replace("{job}", job_id)
    assert comfy_page.page_errors == []
