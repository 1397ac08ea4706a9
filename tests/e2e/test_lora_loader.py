"""Load ShieldDiff LoRA in real ComfyUI with the demo checkpoint: exact math, outputs, refusals."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from support.tiny_models import demo_lora
from trainer.lora.formats import write_lora
from trainer.lora.names import LAYOUTS, diffusers_to_ldm

LOADER = "ShieldDiffLoraLoader"
LORA = "shielddiff-test-lora.safetensors"


@pytest.fixture(scope="module")
def lora(comfy):
    made = demo_lora(rank=4, alpha=2.0, seed=1)
    write_lora(made, comfy.base_dir / "models" / "loras" / LORA, "kohya", metadata={"shielddiff.method": "test"})
    return made


def graph(ckpt: str, loader: dict | None, tail: dict) -> dict:
    nodes = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    model, clip = ["1", 0], ["1", 1]
    if loader is not None:
        nodes["2"] = {
            "class_type": loader.get("class_type", LOADER),
            "inputs": {"model": model, "clip": clip, **loader["inputs"]},
        }
        model, clip = ["2", 0], ["2", 1]
    for node in tail.values():
        node["inputs"] = {
            k: {"MODEL": model, "CLIP": clip}.get(v, v) if isinstance(v, str) else v for k, v in node["inputs"].items()
        }
    return nodes | tail


def txt2img(prefix: str) -> dict:
    return {
        "10": {"class_type": "CLIPTextEncode", "inputs": {"text": "a portrait", "clip": "CLIP"}},
        "11": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": "CLIP"}},
        "12": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "13": {
            "class_type": "KSampler",
            "inputs": {
                "model": "MODEL",
                "positive": ["10", 0],
                "negative": ["11", 0],
                "latent_image": ["12", 0],
                "seed": 3,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "14": {"class_type": "SaveLatent", "inputs": {"samples": ["13", 0], "filename_prefix": f"latents/{prefix}"}},
    }


def load_latent(comfy, entry) -> torch.Tensor:
    info = entry["outputs"]["14"]["latents"][0]
    return load_file(str(comfy.base_dir / "output" / info["subfolder"] / info["filename"]))["latent_tensor"]


def loader(strength_model=1.0, strength_clip=1.0, name=LORA) -> dict:
    return {"inputs": {"lora_name": name, "strength_model": strength_model, "strength_clip": strength_clip}}


def test_patched_weights_are_base_plus_strength_times_scaled_up_down(comfy, demo_checkpoint, lora):
    s = 0.7
    tail = {"20": {"class_type": "ModelSave", "inputs": {"model": "MODEL", "filename_prefix": "patched/model"}}}
    entry = comfy.run(graph(demo_checkpoint.name, loader(s, 0.0), tail), timeout=300)
    assert entry["outputs"]["2"]["shielddiff_lora"][0].startswith(f"{LORA}: 34 of 34 LoRA modules applied")
    saved = next((comfy.base_dir / "output" / "patched").glob("model*.safetensors"))
    with safe_open(str(saved), "pt") as patched, safe_open(str(demo_checkpoint), "pt") as base:
        for (component, path), m in lora.modules.items():
            if component != "unet":
                continue
            key = f"model.diffusion_model.{diffusers_to_ldm(path, LAYOUTS['sd15-demo'])}.weight"
            delta = patched.get_tensor(key).float() - base.get_tensor(key).float()
            expected = s * (2.0 / 4) * (m.up.float() @ m.down.float())
            assert torch.allclose(delta, expected, atol=1e-5), key


def test_strength_zero_is_bit_exact_and_a_lora_changes_the_image(comfy, demo_checkpoint, lora):
    base = load_latent(comfy, comfy.run(graph(demo_checkpoint.name, None, txt2img("base")), timeout=300))
    zero = load_latent(comfy, comfy.run(graph(demo_checkpoint.name, loader(0.0, 0.0), txt2img("zero")), timeout=300))
    full = load_latent(comfy, comfy.run(graph(demo_checkpoint.name, loader(1.0, 1.0), txt2img("full")), timeout=300))
    assert torch.equal(base, zero)
    assert not torch.equal(base, full) and torch.isfinite(full).all()


def test_comfyui_builtin_loader_takes_the_same_file_with_every_key(comfy, demo_checkpoint, lora):
    before = len(comfy.log())
    builtin = {"class_type": "LoraLoader", **loader(1.0, 1.0)}
    comfy.run(graph(demo_checkpoint.name, builtin, txt2img("builtin")), timeout=300)
    assert "lora key not loaded" not in comfy.log()[before:]


def test_other_formats_load_too(comfy, demo_checkpoint, lora):
    folder = comfy.base_dir / "models" / "loras"
    write_lora(lora, folder / "as-diffusers.safetensors", "diffusers")
    write_lora(lora, folder / "as-comfy.safetensors", "comfy", layout=LAYOUTS["sd15-demo"])
    for name in ("as-diffusers.safetensors", "as-comfy.safetensors"):
        entry = comfy.run(graph(demo_checkpoint.name, loader(name=name), txt2img(name)), timeout=300)
        summary = entry["outputs"]["2"]["shielddiff_lora"][0]
        assert "34 of 34 LoRA modules applied" in summary, (name, summary)


def test_partial_match_is_reported_on_the_node(comfy, demo_checkpoint, lora):
    extra = demo_lora(seed=2)
    from trainer.lora.formats import LoraModule

    extra.modules[("unet", "down_blocks.3.attentions.0.transformer_blocks.0.attn1.to_q")] = LoraModule(
        torch.zeros(4, 320), torch.zeros(320, 4), torch.tensor(4.0)
    )
    write_lora(extra, comfy.base_dir / "models" / "loras" / "partial.safetensors")
    tail = {"20": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}}}
    entry = comfy.run(graph(demo_checkpoint.name, loader(name="partial.safetensors"), tail), timeout=300)
    info = json.loads(entry["outputs"]["20"]["text"][0])
    assert info["matched_modules"] == 34 and info["modules"] == 35
    assert info["unmatched"] == ["lora_unet_down_blocks_3_attentions_0_transformer_blocks_0_attn1_to_q"]
    assert "WARNING: 1 modules match no weight" in entry["outputs"]["2"]["shielddiff_lora"][0]


def run_error(comfy, prompt) -> str:
    entry = comfy.wait(comfy.queue(prompt), timeout=300)
    assert entry["status"]["status_str"] == "error"
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    return error["exception_message"]


def test_bad_lora_files_are_refused_and_comfyui_keeps_running(comfy, demo_checkpoint, lora, tmp_path):
    folder = comfy.base_dir / "models" / "loras"
    good = (folder / LORA).read_bytes()
    (folder / "truncated.safetensors").write_bytes(good[: len(good) // 3])
    (folder / "empty.safetensors").write_bytes(b"")
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1)}, folder / "pickle.safetensors")
    sdxl = {
        "lora_unet_down_blocks_2_attentions_1_transformer_blocks_9_attn2_to_k.lora_down.weight": torch.zeros(4, 2048),
        "lora_unet_down_blocks_2_attentions_1_transformer_blocks_9_attn2_to_k.lora_up.weight": torch.zeros(1280, 4),
        "lora_te2_text_model_encoder_layers_31_self_attn_q_proj.lora_down.weight": torch.zeros(4, 1280),
        "lora_te2_text_model_encoder_layers_31_self_attn_q_proj.lora_up.weight": torch.zeros(1280, 4),
    }
    save_file(sdxl, str(folder / "sdxl.safetensors"))
    tail = {"20": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}}}
    expectations = {
        "truncated.safetensors": "truncated",
        "empty.safetensors": "0 bytes",
        "pickle.safetensors": "never are",
        "sdxl.safetensors": "It is a LoRA for sdxl; the model is sd15",
    }
    for name, message in expectations.items():
        assert message in run_error(comfy, graph(demo_checkpoint.name, loader(name=name), tail)), name
    assert comfy.alive()


def test_a_name_outside_the_loras_folder_is_refused(comfy, demo_checkpoint):
    tail = {"20": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}}}
    for name in ("../checkpoints/" + demo_checkpoint.name, "../../user/default/comfy.settings.json", "/etc/passwd"):
        r = comfy.post("/prompt", json={"prompt": graph(demo_checkpoint.name, loader(name=name), tail)})
        if r.status_code == 400:  # refused by ComfyUI's validation
            assert "lora_name" in r.text, name
        else:  # or by the node before it opens anything
            entry = comfy.wait(r.json()["prompt_id"])
            (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
            assert "is not in ComfyUI's loras folder" in error["exception_message"], name
    assert comfy.alive()


def shaped_lora(seed: int, context_width: int, width: int = 320):
    """The demo LoRA with other widths: `context_width` for the cross-attention keys and values (SD2
    uses 1024 where SD1.5 has 768), `width` for every UNet projection's output."""
    from trainer.lora.formats import LoraModule

    made = demo_lora(seed=seed, text_encoder=False)
    for (component, path), m in list(made.modules.items()):
        wide = path.endswith(("attn2.to_k", "attn2.to_v"))
        made.modules[(component, path)] = LoraModule(
            torch.randn(4, context_width if wide else m.down.shape[1]) * 0.1, torch.randn(width, 4) * 0.1, m.alpha
        )
    return made


def test_modules_of_other_shapes_are_not_counted_as_applied(comfy, demo_checkpoint, lora):
    """An SD2-style LoRA (1024-wide cross-attention context) on an SD1.5 model: its 8 key/value
    modules cannot be added to the weights; the node says so instead of '32 of 32'."""
    write_lora(shaped_lora(3, context_width=1024), comfy.base_dir / "models" / "loras" / "sd2-style.safetensors")
    before = len(comfy.log())
    entry = comfy.run(graph(demo_checkpoint.name, loader(name="sd2-style.safetensors"), txt2img("sd2")), timeout=300)
    summary = entry["outputs"]["2"]["shielddiff_lora"][0]
    assert summary.startswith("sd2-style.safetensors: 24 of 32 LoRA modules applied"), summary
    assert "WARNING: 8 modules have other shapes than this model's weights" in summary
    assert "ERROR lora" not in comfy.log()[before:]  # only patches that fit reach the sampler


def test_a_lora_of_which_nothing_fits_is_refused(comfy, demo_checkpoint, lora):
    """Named like the model's weights, every tensor of another width: ComfyUI would drop every patch
    and sample the base model's image, so the node refuses it."""
    write_lora(
        shaped_lora(4, context_width=1024, width=640), comfy.base_dir / "models" / "loras" / "misfit.safetensors"
    )
    tail = {"20": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}}}
    message = run_error(comfy, graph(demo_checkpoint.name, loader(name="misfit.safetensors"), tail))
    assert "32 of its 32 LoRA modules are named like this model's weights but have other shapes" in message
    assert "so it would change nothing" in message
    assert comfy.alive()


def test_nan_strength_and_nan_weights_are_refused(comfy, demo_checkpoint, lora):
    """NaN would turn every image black: refused like any other bad input."""
    tail = {"20": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}}}
    for strengths, named in (((float("nan"), 1.0), "strength_model is nan"), ((1.0, float("inf")), "strength_clip")):
        body = json.dumps(
            {"prompt": graph(demo_checkpoint.name, loader(*strengths), tail)}
        )  # NaN as JavaScript sends it
        r = comfy.post("/prompt", data=body, headers={"Content-Type": "application/json"})
        if r.status_code == 400:  # refused by ComfyUI's validation
            assert "strength" in r.text, r.text
        else:
            entry = comfy.wait(r.json()["prompt_id"], timeout=300)
            (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
            assert named in error["exception_message"]
    poisoned = demo_lora(seed=5)
    next(iter(poisoned.modules.values())).up[0, 0] = float("nan")
    write_lora(poisoned, comfy.base_dir / "models" / "loras" / "nan.safetensors")
    message = run_error(comfy, graph(demo_checkpoint.name, loader(name="nan.safetensors"), tail))
    assert "1 of its tensors hold NaN or infinite values" in message
    assert comfy.alive()
