"""SDXL offline: the tiny SDXL checkpoint's layout, the family read from a file, the UNet config read
from its keys, and a diffusers SDXL folder loaded with the conditioning SDXL needs."""

import pytest
import torch
from safetensors.torch import save_file

from trainer.diffusion.demo_checkpoint import checkpoint_shapes as sd15_shapes
from trainer.diffusion.family import UnsupportedFamilyError, checkpoint_family, family_of, require_trainable
from trainer.diffusion.loading import ModelLoadError, load_pipeline
from trainer.diffusion.sdxl import encode_sdxl_prompts, sdxl_time_ids, sdxl_unet_config
from trainer.diffusion.sdxl_checkpoint import checkpoint_shapes
from trainer.diffusion.tiny import tiny_sdxl_pipeline

UNET = "model.diffusion_model."


def test_tiny_checkpoint_has_the_keys_comfyui_tells_sdxl_by():
    shapes = checkpoint_shapes()
    assert shapes[UNET + "input_blocks.0.0.weight"] == (320, 4, 3, 3)  # model_channels 320
    assert shapes[UNET + "label_emb.0.0.weight"] == (1280, 2816)  # pooled + size conditioning
    assert shapes[UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 2048)
    assert len(shapes[UNET + "input_blocks.4.1.proj_in.weight"]) == 2  # linear projections
    depth = [
        sum(1 for k in shapes if k.startswith(UNET + f"input_blocks.{b}.1.") and k.endswith("attn1.to_q.weight"))
        for b in (1, 2, 4, 5, 7, 8)
    ]
    assert depth == [0, 0, 2, 2, 10, 10]
    assert shapes["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"] == (3840, 1280)
    assert shapes["conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc1.weight"] == (3072, 768)


def test_family_of_sd15_sdxl_and_the_ones_the_trainer_refuses():
    sdxl = checkpoint_shapes()
    assert family_of(sdxl).key == "sdxl" and family_of(sd15_shapes()).key == "sd15"
    assert family_of(sdxl | {"v_pred": ()}).key == "sdxl-vpred"
    sd2 = {k: (v[0], 1024) if k.endswith("attn2.to_k.weight") else v for k, v in sd15_shapes().items()}
    assert family_of(sd2).key == "sd2"
    assert family_of({UNET + "joint_blocks.0.context_block.attn.qkv.weight": (3, 3)}).key == "sd3"
    assert family_of({UNET + "double_blocks.0.img_attn.qkv.weight": (3, 3)}).key == "flux"


def test_unet_config_read_from_the_keys():
    config = sdxl_unet_config(checkpoint_shapes())
    assert config["block_out_channels"] == [320, 320, 320]
    assert config["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert config["transformer_layers_per_block"] == [1, 2, 10]
    assert config["cross_attention_dim"] == 2048 and config["projection_class_embeddings_input_dim"] == 2816
    assert config["attention_head_dim"] == [5, 5, 5] and config["use_linear_projection"]


def test_refusal_names_the_family_found(tmp_path):
    path = tmp_path / "sd2-like.safetensors"
    save_file({UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 1024)}, str(path))
    with pytest.raises(UnsupportedFamilyError, match=r"sd2-like.safetensors is SD2\.x"):
        require_trainable(path)
    with pytest.raises(ModelLoadError, match=r"SD2\.x"):
        load_pipeline(path)


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory):
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "model")


def test_diffusers_sdxl_folder_loads_offline_with_pooled_and_size_conditioning(sdxl_folder):
    assert checkpoint_family(sdxl_folder).key == "sdxl"
    pipe = load_pipeline(sdxl_folder)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline" and pipe.vae.config.scaling_factor == 0.13025
    with torch.no_grad():
        embeds, pooled = encode_sdxl_prompts(pipe, ["a red bicycle", "a tall tree"])
        ref, _, ref_pooled, _ = pipe.encode_prompt(["a red bicycle", "a tall tree"], do_classifier_free_guidance=False)
        ids = sdxl_time_ids(64, 48, 2)
        x = torch.randn(2, 4, 8, 6, generator=torch.Generator().manual_seed(0))
        cond = {"text_embeds": pooled, "time_ids": ids}
        eps = pipe.unet(x, 500, encoder_hidden_states=embeds, added_cond_kwargs=cond).sample
        other = pipe.unet(x, 500, encoder_hidden_states=embeds, added_cond_kwargs=cond | {"time_ids": ids * 2}).sample
    assert embeds.shape == (2, 77, 64) and pooled.shape == (2, 32)
    torch.testing.assert_close(embeds, ref)  # the same conditioning diffusers' own pipeline computes
    torch.testing.assert_close(pooled, ref_pooled)
    assert ids.tolist()[0] == [64, 48, 0, 0, 64, 48]
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    assert not torch.allclose(eps, other)  # the size conditioning reaches the UNet
