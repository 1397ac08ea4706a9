"""LoRA files: the three namings, lossless conversion, kohya metadata, and files that must be refused."""

import pytest
import torch
from safetensors.torch import save_file

from trainer.lora.formats import LoraFile, LoraFormatError, LoraModule, read_lora, write_lora

SD15_TARGETS = [
    ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 320, 320),
    ("unet", "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k", 640, 768),
    ("unet", "mid_block.attentions.0.transformer_blocks.0.attn2.to_v", 1280, 768),
    ("unet", "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0", 320, 320),
    ("unet", "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj", 2560, 1280),
    ("unet", "down_blocks.2.resnets.1.conv1", 1280, 1280),
    ("te1", "text_model.encoder.layers.11.self_attn.out_proj", 768, 768),
    ("te1", "text_model.encoder.layers.0.mlp.fc1", 3072, 768),
]


def random_lora(targets=SD15_TARGETS, rank=4, alpha=2.0, dtype=torch.float16, seed=0) -> LoraFile:
    gen = torch.Generator().manual_seed(seed)
    modules = {}
    for component, path, out_dim, in_dim in targets:
        conv = path.endswith("conv1")
        down_shape = (rank, in_dim, 3, 3) if conv else (rank, in_dim)
        up_shape = (out_dim, rank, 1, 1) if conv else (out_dim, rank)
        modules[(component, path)] = LoraModule(
            down=torch.randn(down_shape, generator=gen).to(dtype),
            up=torch.randn(up_shape, generator=gen).to(dtype),
            alpha=torch.tensor(alpha),
        )
    return LoraFile(modules=modules, family="sd15")


def same(a: LoraFile, b: LoraFile) -> bool:
    if a.modules.keys() != b.modules.keys():
        return False
    for key, m in a.modules.items():
        n = b.modules[key]
        if not (torch.equal(m.down, n.down) and torch.equal(m.up, n.up) and m.down.dtype == n.down.dtype):
            return False
        if m.scale() != n.scale():
            return False
    return True


def test_round_trip_kohya_diffusers_comfy_kohya_is_bit_exact(tmp_path):
    original = random_lora()
    write_lora(original, tmp_path / "a.safetensors", "kohya")
    kohya = read_lora(tmp_path / "a.safetensors")
    write_lora(kohya, tmp_path / "b.safetensors", "diffusers")
    diffusers = read_lora(tmp_path / "b.safetensors")
    write_lora(diffusers, tmp_path / "c.safetensors", "comfy")
    comfy = read_lora(tmp_path / "c.safetensors")
    write_lora(comfy, tmp_path / "d.safetensors", "kohya")
    back = read_lora(tmp_path / "d.safetensors")
    assert [f.source_format for f in (kohya, diffusers, comfy, back)] == ["kohya", "diffusers", "comfy", "kohya"]
    for f in (kohya, diffusers, comfy, back):
        assert same(original, f)
        assert f.family == "sd15"


def test_key_names_in_each_format(tmp_path):
    lora = random_lora()
    keys = {}
    for fmt in ("kohya", "diffusers", "comfy"):
        write_lora(lora, tmp_path / f"{fmt}.safetensors", fmt)
        from safetensors import safe_open

        with safe_open(str(tmp_path / f"{fmt}.safetensors"), "pt") as f:
            keys[fmt] = set(f.keys())
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys["kohya"]
    assert "lora_te_text_model_encoder_layers_11_self_attn_out_proj.alpha" in keys["kohya"]
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys["diffusers"]
    assert "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight" in keys["diffusers"]
    assert "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.lora_up.weight" in keys["comfy"]
    assert "diffusion_model.output_blocks.11.1.transformer_blocks.0.attn1.to_out.0.alpha" in keys["comfy"]
    assert "diffusion_model.input_blocks.8.0.in_layers.2.lora_down.weight" in keys["comfy"]
    assert "text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.lora_up.weight" in keys["comfy"]


def test_peft_prefix_and_kohya_metadata(tmp_path):
    lora = random_lora(rank=8, alpha=4.0)
    write_lora(lora, tmp_path / "k.safetensors", "kohya", metadata={"shielddiff.method": "test"})
    read = read_lora(tmp_path / "k.safetensors")
    assert read.metadata["ss_network_dim"] == "8" and read.metadata["ss_network_alpha"] == "4"
    assert read.metadata["ss_base_model_version"] == "sd_v1"
    assert read.metadata["shielddiff.method"] == "test"
    tensors = {}
    for (component, path), m in lora.modules.items():
        if component == "unet":
            tensors[f"base_model.model.{path}.lora_A.weight"] = m.down
            tensors[f"base_model.model.{path}.lora_B.weight"] = m.up
    save_file(tensors, str(tmp_path / "peft.safetensors"))
    peft = read_lora(tmp_path / "peft.safetensors")
    assert {k for k in peft.modules} == {k for k in lora.modules if k[0] == "unet"}
    assert all(m.scale() == 1.0 for m in peft.modules.values())  # no alpha given: alpha = rank


def test_sdxl_names_and_family(tmp_path):
    targets = [
        ("unet", "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k", 1280, 2048),
        ("te1", "text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
        ("te2", "text_model.encoder.layers.31.self_attn.q_proj", 1280, 1280),
    ]
    lora = random_lora(targets)
    lora.family = "sdxl"
    for fmt in ("kohya", "diffusers", "comfy"):
        write_lora(lora, tmp_path / f"{fmt}.safetensors", fmt)
        back = read_lora(tmp_path / f"{fmt}.safetensors")
        assert back.family == "sdxl" and same(lora, back), fmt
    from safetensors import safe_open

    with safe_open(str(tmp_path / "kohya.safetensors"), "pt") as f:
        assert any(k.startswith("lora_te1_") for k in f.keys()) and any(k.startswith("lora_te2_") for k in f.keys())


def test_writes_are_atomic(tmp_path):
    write_lora(random_lora(), tmp_path / "x.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]


def test_bad_files_are_refused_with_the_reason(tmp_path):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(LoraFormatError, match="0 bytes"):
        read_lora(empty)
    good = write_lora(random_lora(), tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(LoraFormatError, match="truncated"):
        read_lora(truncated)
    pickled = tmp_path / "pickled.safetensors"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1)}, pickled)
    with pytest.raises(LoraFormatError, match="never are"):
        read_lora(pickled)
    other = tmp_path / "checkpoint.safetensors"
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(LoraFormatError, match="no LoRA weights"):
        read_lora(other)
    half = tmp_path / "half.safetensors"
    save_file({"lora_unet_a_b.lora_down.weight": torch.zeros(2, 2)}, str(half))
    with pytest.raises(LoraFormatError, match="miss their up or down"):
        read_lora(half)
    with pytest.raises(LoraFormatError, match="does not exist"):
        read_lora(tmp_path / "nowhere.safetensors")


def test_diffusers_loads_the_diffusers_form_into_an_sd15_layout_unet(tmp_path):
    """diffusers' own loader (load_lora_weights on a pipeline) takes the file; the weights it applies match."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
        sample_size=16,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=1000,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        )
    )
    vae = AutoencoderKL(block_out_channels=(32,), norm_num_groups=8, latent_channels=4)
    pipe = StableDiffusionPipeline(vae, text, None, unet, DDIMScheduler(), None, None, requires_safety_checker=False)
    modules = {n: m for n, m in unet.named_modules() if n.endswith(("attn1.to_q", "attn2.to_k", "attn2.to_v"))}
    targets = [("unet", n, m.out_features, m.in_features) for n, m in modules.items()]
    lora = random_lora(targets, rank=4, alpha=2.0, dtype=torch.float32)
    write_lora(lora, tmp_path / "d.safetensors", "diffusers")
    before = {n: m.weight.detach().clone() for n, m in modules.items()}
    pipe.load_lora_weights(str(tmp_path), weight_name="d.safetensors", adapter_name="shield")
    pipe.fuse_lora(lora_scale=1.0)
    for (_, path), m in lora.modules.items():
        layer = unet.get_submodule(path)
        weight = layer.base_layer.weight if hasattr(layer, "base_layer") else layer.weight
        expected = before[path] + 0.5 * (m.up @ m.down)  # alpha / rank = 2 / 4
        assert torch.allclose(weight, expected, atol=1e-5), path


def test_adapters_this_pack_does_not_convert_are_refused_not_dropped(tmp_path):
    tensors = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4),
        "lora_unet_down_blocks_0_attentions_0_proj_in.dora_scale": torch.zeros(1, 320),
    }
    save_file(tensors, str(tmp_path / "dora.safetensors"))
    with pytest.raises(LoraFormatError, match="dora_scale"):
        read_lora(tmp_path / "dora.safetensors")


def test_comfy_names_of_another_layout_are_an_error_not_a_merge(tmp_path):
    from support.tiny_models import demo_lora
    from trainer.lora.names import LAYOUTS

    write_lora(demo_lora(), tmp_path / "demo-comfy.safetensors", "comfy", layout=LAYOUTS["sd15-demo"])
    with pytest.raises(LoraFormatError, match="layout"):
        read_lora(tmp_path / "demo-comfy.safetensors")  # read as full SD1.5 it would not fit
    assert len(read_lora(tmp_path / "demo-comfy.safetensors", LAYOUTS["sd15-demo"]).modules) == 34


def test_a_header_that_is_not_a_table_of_tensors_is_refused(tmp_path):
    import struct

    body = b'["not", "a", "table"]'
    (tmp_path / "odd.safetensors").write_bytes(struct.pack("<Q", len(body)) + body)
    with pytest.raises(LoraFormatError, match="damaged"):
        read_lora(tmp_path / "odd.safetensors")
