"""SDXL in real ComfyUI: the tiny SDXL checkpoint is detected as SDXL and draws, and the trainer's
offline loader holds exactly the tensors and conditioning ComfyUI computes from the same file."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

PROBE = Path(__file__).resolve().parents[1] / "support" / "comfy_model_probe.py"
PROMPT = "a watercolour lighthouse at dusk"


def link_checkpoint(comfy, checkpoint: Path) -> str:
    dest = comfy.base_dir / "models" / "checkpoints" / checkpoint.name
    if not dest.exists():
        dest.symlink_to(checkpoint)
    return checkpoint.name


def sdxl_txt2img(ckpt: str, size: int = 64) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": 3,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "sdxl/txt2img"}},
    }


def test_comfyui_detects_the_tiny_checkpoint_as_sdxl_and_runs_txt2img(comfy, sdxl_checkpoint):
    name = link_checkpoint(comfy, sdxl_checkpoint)
    info = comfy.get("/object_info/CheckpointLoaderSimple").json()
    assert name in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    start = len(comfy.log())
    entry = comfy.run(sdxl_txt2img(name), timeout=1800)
    log = comfy.log()[start:]
    assert "Requested to load SDXLClipModel" in log and "Requested to load SDXL\n" in log, log[-3000:]
    assert "model_type EPS" in log
    for complaint in ("unet missing", "clip missing", "vae missing", "Could not detect model type", "left over keys"):
        assert complaint not in log, log[-3000:]
    image = entry["outputs"]["7"]["images"][0]
    from PIL import Image

    with Image.open(comfy.base_dir / "output" / image["subfolder"] / image["filename"]) as saved:
        assert saved.size == (64, 64)


@pytest.fixture(scope="module")
def comfy_view(comfyui_dir, sdxl_checkpoint, tmp_path_factory):
    """What ComfyUI's own loader makes of the tiny SDXL file (run in a separate process)."""
    out = tmp_path_factory.mktemp("sdxl-probe") / "comfy"
    subprocess.run(
        [sys.executable, str(PROBE), str(sdxl_checkpoint), str(out), PROMPT], cwd=comfyui_dir, check=True, timeout=3600
    )
    return json.loads(out.with_suffix(".json").read_text()), load_file(str(out.with_suffix(".safetensors")))


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().to(torch.float16).contiguous().numpy().tobytes()).hexdigest()


def test_trainer_loads_the_tensors_and_conditioning_comfyui_sees(comfy_view, sdxl_checkpoint, tmp_path):
    from trainer.diffusion.loading import load_pipeline
    from trainer.diffusion.sdxl import encode_sdxl_prompts

    facts, tensors = comfy_view
    assert (facts["family"], facts["model_type"]) == ("SDXL", "EPS")
    pipe = load_pipeline(sdxl_checkpoint, cache_dir=tmp_path / "configs")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.vae.config.scaling_factor == facts["scale_factor"] == 0.13025

    ours = {"unet." + k: v for k, v in pipe.unet.state_dict().items()}
    for name, encoder in (("clip_l", pipe.text_encoder), ("clip_g", pipe.text_encoder_2)):
        for k, v in encoder.state_dict().items():
            k = k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k
            ours[f"{name}.transformer.{k}"] = v
    # ComfyUI names SDXL's added-conditioning MLP (label_emb) by diffusers' generic class_embedding
    theirs = {k.replace("unet.class_embedding.", "unet.add_embedding."): v for k, v in facts["hashes"].items()}
    unet_keys = {k for k in theirs if k.startswith("unet.")}
    assert unet_keys == {k for k in ours if k.startswith("unet.")}  # every UNet tensor, no more, no fewer
    assert set(ours) <= set(theirs)  # and every text-encoder tensor the trainer holds
    assert all(theirs[k] == _digest(v) for k, v in ours.items()), [
        k for k, v in ours.items() if theirs[k] != _digest(v)
    ]

    with torch.no_grad():
        embeds, pooled = encode_sdxl_prompts(pipe, [PROMPT])
        decoded = pipe.vae.decode(tensors["latent"]).sample
    assert embeds.shape == (1, 77, 2048) and pooled.shape == (1, 1280)
    torch.testing.assert_close(embeds, tensors["cond"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pooled, tensors["pooled"], rtol=1e-4, atol=1e-4)
    image = ((decoded + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(image, tensors["decoded"], rtol=1e-3, atol=1e-3)
