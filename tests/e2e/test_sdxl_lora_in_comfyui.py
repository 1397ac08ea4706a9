"""An SDXL LoRA in kohya naming (lora_unet_, lora_te1_, lora_te2_, ss_base_model_version) applies in
real ComfyUI on the tiny SDXL checkpoint through Load ShieldDiff LoRA and ComfyUI's own LoraLoader,
with no key left unloaded, and changes what the model draws; `trainer lora inspect` names SDXL."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from test_sdxl_in_comfyui import link_checkpoint, sdxl_txt2img

from support.tiny_models import sdxl_lora
from trainer.diffusion.family import checkpoint_shapes
from trainer.diffusion.sdxl import sdxl_unet_config
from trainer.lora.formats import write_lora

LORA = "shielddiff-sdxl-test-lora.safetensors"


@pytest.fixture(scope="module")
def lora_file(comfy, sdxl_checkpoint):
    made = sdxl_lora(sdxl_unet_config(checkpoint_shapes(sdxl_checkpoint)), seed=2)
    path = comfy.base_dir / "models" / "loras" / LORA
    write_lora(made, path, "kohya", metadata={"shielddiff.method": "test"})
    return made, path


def test_the_file_is_kohya_sdxl_and_inspect_names_the_family(lora_file):
    _, path = lora_file
    with safe_open(str(path), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    prefixes = {k.split("_")[0] + "_" + k.split("_")[1] + "_" for k in keys}
    assert prefixes == {"lora_unet_", "lora_te1_", "lora_te2_"}
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "lora", "inspect", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert summary["family"] == "sdxl" and summary["format"] == "kohya"


def with_loader(workflow: dict, loader: dict) -> dict:
    workflow = json.loads(json.dumps(workflow))
    workflow["9"] = {
        "class_type": loader["class_type"],
        "inputs": {"model": ["1", 0], "clip": ["1", 1], **loader["inputs"]},
    }
    workflow["5"]["inputs"]["model"] = ["9", 0]
    for node in ("2", "3"):
        workflow[node]["inputs"]["clip"] = ["9", 1]
    workflow["7"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": loader["prefix"]}}
    del workflow["6"]
    return workflow


def latent_of(comfy, entry) -> torch.Tensor:
    info = entry["outputs"]["7"]["latents"][0]
    return load_file(str(comfy.base_dir / "output" / info["subfolder"] / info["filename"]))["latent_tensor"]


def test_both_loaders_apply_every_key_and_change_the_sample(comfy, sdxl_checkpoint, lora_file):
    made, _ = lora_file
    name = link_checkpoint(comfy, sdxl_checkpoint)
    strengths = {"lora_name": LORA, "strength_model": 1.0, "strength_clip": 1.0}
    runs = {
        "base": {"class_type": "LoraLoader", "inputs": dict(strengths, strength_model=0.0, strength_clip=0.0)},
        "comfy": {"class_type": "LoraLoader", "inputs": strengths},
        "shielddiff": {"class_type": "ShieldDiffLoraLoader", "inputs": strengths},
    }
    latents, start = {}, len(comfy.log())
    for label, loader in runs.items():
        entry = comfy.run(with_loader(sdxl_txt2img(name), dict(loader, prefix=f"sdxl-lora/{label}")), timeout=1800)
        latents[label] = latent_of(comfy, entry)
        if label == "shielddiff":
            text = entry["outputs"]["9"]["shielddiff_lora"][0]
            total = len(made.modules)
            assert text.startswith(f"{LORA}: {total} of {total} LoRA modules applied (kohya, sdxl)"), text
    log = comfy.log()[start:]
    assert "lora key not loaded" not in log, [line for line in log.splitlines() if "lora key not loaded" in line][:5]
    assert not torch.equal(latents["base"], latents["comfy"])
    torch.testing.assert_close(latents["comfy"], latents["shielddiff"], rtol=1e-3, atol=1e-3)


def test_purify_image_runs_on_sdxl_with_its_added_conditioning(comfy, sdxl_checkpoint, lora_file):
    from test_erase_in_comfyui import purify_workflow, saved

    name = link_checkpoint(comfy, sdxl_checkpoint)
    start = len(comfy.log())
    entry = comfy.run(purify_workflow(name, LORA, 0.5, "sdxl-purify"), timeout=1800)
    log = comfy.log()[start:]
    assert "lora key not loaded" not in log
    purified, round_trip = saved(comfy, entry, "4"), saved(comfy, entry, "7")
    assert purified.shape == round_trip.shape == (64, 64, 3)
    assert not (purified == round_trip).all()  # two steps of inversion and regeneration with the LoRA changed it
