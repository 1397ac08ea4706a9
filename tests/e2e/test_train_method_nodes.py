"""Train Safety LoRA with its method settings nodes in a real ComfyUI: each settings node puts its
method into the job's config, a graph without one is refused, and API prompts saved with the single
node of earlier versions (every method's inputs on the train node) still queue the job they did."""

from __future__ import annotations

import json

import pytest
import tomllib

from support.comfy_harness import REPO
from support.training_jobs import ERASE_SETTINGS, RL_SETTINGS, SHARED, train_workflow

LEGACY = REPO / "tests" / "support" / "legacy_train_node"


def queue_job(comfy, workflow: dict) -> tuple[str, str]:
    """Queue a train graph; the job's id and its config.toml as written. The job is then cancelled:
    only its config is under test here."""
    entry = comfy.run(workflow, timeout=60)
    job_id = entry["outputs"]["2"]["text"][0]
    config = (comfy.base_dir / "user" / "shielddiff" / "jobs" / job_id / "config.toml").read_text()
    assert comfy.post(f"/shielddiff/jobs/{job_id}/cancel").ok  # leave the CPU to the other tests
    return job_id, config


def single_node_config(comfy, method: str, job_id: str) -> str:
    """The config the single node wrote for the saved prompt, placed in this ComfyUI and job."""
    saved = (LEGACY / f"single_node_{method}.config.toml").read_text()
    return saved.replace("{base}", str(comfy.base_dir)).replace("{job}", job_id)


def test_the_rl_settings_node_gives_the_config_the_single_node_gave_for_the_same_values(comfy, demo_checkpoint):
    old = json.loads((LEGACY / "single_node_rl.api.json").read_text())["1"]["inputs"]
    rl = {k: old[k] for k in RL_SETTINGS}
    shared = {k: old[k] for k in SHARED}
    job_id, config = queue_job(comfy, train_workflow(demo_checkpoint.name, "rl-settings-node", **rl, **shared))
    assert config == single_node_config(comfy, "rl", job_id)
    written = tomllib.loads(config)
    assert written["train"]["method"] == "shielddiff-rl"
    assert written["prompts"]["unsafe"] == ["a nude woman on a beach", "naked man in a forest"]
    assert (written["reward"]["w_clip"], written["reward"]["w_nude"], written["sample"]["batch_size"]) == (1.5, 2, 2)


def test_the_all_but_one_settings_node_puts_the_erasure_into_the_config(comfy, demo_checkpoint):
    erase = {
        "erase_concept": "nudity\nnaked person\n# a comment",
        "erase_alternative": "a person wearing clothes\na clothed person",
        "erase_eta": 1.5,
        "erase_lambda": 0.25,
    }
    workflow = train_workflow(
        demo_checkpoint.name,
        "erase-settings-node",
        method="All-but-One erasure",
        steps=3,
        batches_per_epoch=2,
        train_batch_size=1,
        **erase,
    )
    _, config = queue_job(comfy, workflow)
    written = tomllib.loads(config)
    assert written["train"]["method"] == "all-but-one"
    assert written["erase"]["concepts"] == ["nudity", "naked person"]
    assert written["erase"]["alternatives"] == ["a person wearing clothes", "a clothed person"]
    assert (written["erase"]["eta"], written["erase"]["lambda_uncond"]) == (1.5, 0.25)
    assert (written["erase"]["steps"], written["erase"]["iterations"], written["train"]["batch_size"]) == (3, 2, 1)
    assert written["prompts"]["unsafe"] == [] and written["prompts"]["benign"] == []  # no RL prompts asked for
    listed = comfy.get("/shielddiff/jobs").json()["jobs"]
    assert any(j["lora_name"] == "erase-settings-node" and j["method"] == "All-but-One erasure" for j in listed)


@pytest.mark.parametrize("method", ["rl", "erase"])
def test_an_api_prompt_saved_with_the_single_node_queues_the_job_it_queued_before(comfy, demo_checkpoint, method):
    prompt = json.loads((LEGACY / f"single_node_{method}.api.json").read_text())
    assert "settings" not in prompt["1"]["inputs"] and "method" in prompt["1"]["inputs"]
    job_id, config = queue_job(comfy, prompt)
    assert config == single_node_config(comfy, method, job_id)


def test_a_train_node_without_a_method_is_refused_with_what_to_connect(comfy, demo_checkpoint):
    workflow = train_workflow(demo_checkpoint.name, "no-method")
    del workflow["1"]["inputs"]["settings"], workflow["9"]
    response = comfy.post("/prompt", json={"prompt": workflow, "client_id": comfy.client_id})
    assert response.ok, response.text
    entry = comfy.wait(response.json()["prompt_id"], timeout=60)
    message = str(entry["status"]["messages"])
    assert "connect a 'ShieldDiff RL settings' or 'All-but-One settings' node" in message, message


def test_the_settings_socket_joins_only_the_settings_nodes_to_the_train_node(comfy):
    info = comfy.get("/object_info").json()
    train = info["ShieldDiffTrainSafetyLora"]["input"]
    assert train["optional"]["settings"][0] == "SHIELDDIFF_METHOD"
    assert info["ShieldDiffRLSettings"]["output"] == ["SHIELDDIFF_METHOD"]
    assert info["ShieldDiffAllButOneSettings"]["output"] == ["SHIELDDIFF_METHOD"]
    on_train = set(train["required"]) | set(train["optional"])
    method_inputs = set(RL_SETTINGS) | set(ERASE_SETTINGS) | {"method"}
    assert not on_train & method_inputs  # no input of the train node is unused by a method
    assert set(info["ShieldDiffRLSettings"]["input"]["required"]) == set(RL_SETTINGS)
    assert set(info["ShieldDiffAllButOneSettings"]["input"]["required"]) == set(ERASE_SETTINGS)
