"""Train Safety LoRA refuses, in real ComfyUI and before a job exists, a checkpoint of a family the
trainer cannot train, naming the family; here a tiny model ComfyUI itself detects as SD2 v-prediction."""

import subprocess
import sys

import pytest

from support.tiny_models import sd2_v_unet_checkpoint
from support.training_jobs import train_workflow

DETECT = """
import sys
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, ".")
import comfy.options
comfy.options.enable_args_parsing()
import comfy.model_detection, comfy.utils
sd = comfy.utils.load_torch_file(PATH)
config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
print(type(config).__name__, config.model_type(sd, "model.diffusion_model.").name)
"""


@pytest.fixture(scope="module")
def sd2_checkpoint(comfy, tmp_path_factory):
    path = sd2_v_unet_checkpoint(tmp_path_factory.mktemp("sd2") / "tiny-sd2-v.safetensors")
    (comfy.base_dir / "models" / "checkpoints" / path.name).symlink_to(path)
    return path


def test_comfyui_detects_the_test_model_as_sd2_v_prediction(comfyui_dir, sd2_checkpoint):
    code = DETECT.replace("PATH", repr(str(sd2_checkpoint)))
    out = subprocess.run([sys.executable, "-c", code], cwd=comfyui_dir, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["SD20", "V_PREDICTION"], out.stdout + out.stderr


def test_train_node_refuses_an_sd2_checkpoint_before_a_job_exists(comfy, sd2_checkpoint):
    jobs = comfy.base_dir / "user" / "shielddiff" / "jobs"
    before = set(jobs.iterdir()) if jobs.exists() else set()
    for method in ("ShieldDiff RL", "All-but-One erasure"):
        workflow = train_workflow(sd2_checkpoint.name, "never-written", method=method)
        response = comfy.post("/prompt", json={"prompt": workflow, "client_id": comfy.client_id})
        assert response.ok, response.text
        entry = comfy.wait(response.json()["prompt_id"], timeout=60)
        assert entry["status"]["status_str"] == "error"
        message = str(entry["status"]["messages"])
        assert "tiny-sd2-v.safetensors is SD2.x" in message and "SD1.x and SDXL" in message, message
    assert (set(jobs.iterdir()) if jobs.exists() else set()) == before
    assert not (comfy.base_dir / "models" / "loras" / "never-written.safetensors").exists()
