"""The demo checkpoint's layout: what ComfyUI's SD1.5 detection and diffusers' loader need."""

import json

import pytest
import torch
from safetensors import safe_open

from trainer.diffusion.demo_checkpoint import build_state_dict, checkpoint_shapes, write_demo_checkpoint

UNET = "model.diffusion_model."


def test_layout_matches_sd15_detection():
    shapes = checkpoint_shapes()
    assert shapes[UNET + "input_blocks.0.0.weight"] == (320, 4, 3, 3)  # model_channels 320
    assert shapes[UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)  # context 768
    assert len(shapes[UNET + "input_blocks.1.1.proj_in.weight"]) == 4  # convolutional proj_in
    assert not any(k.startswith(UNET + "label_emb") for k in shapes)  # no adm
    assert shapes["first_stage_model.decoder.conv_in.weight"] == (512, 4, 3, 3)  # KL-f8 VAE
    layers = {k.split(".")[5] for k in shapes if ".encoder.layers." in k}
    assert layers == {str(i) for i in range(12)}  # the whole CLIP-L text tower
    assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)


def test_parameter_count():
    total = sum(torch.Size(s).numel() for s in checkpoint_shapes().values())
    assert 225e6 < total < 240e6


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return write_demo_checkpoint(folder / "demo.safetensors", seed=0)


def test_written_file_is_labelled_finite_and_leaves_no_temp_file(written):
    assert [p.name for p in written.parent.iterdir()] == ["demo.safetensors"]
    with safe_open(str(written), "pt") as f:
        meta = f.metadata()
        assert meta["shielddiff.kind"] == "demo-checkpoint"
        assert json.loads(meta["shielddiff.parameters"]) > 2e8
        assert set(f.keys()) == set(checkpoint_shapes())
        for key in ("model.diffusion_model.out.2.weight", "first_stage_model.decoder.conv_out.weight"):
            t = f.get_tensor(key)
            assert t.dtype == torch.float16 and torch.isfinite(t).all() and t.std() > 0


def test_same_seed_same_weights_other_seed_other_weights(written):
    again, other = build_state_dict(0), build_state_dict(1)
    with safe_open(str(written), "pt") as f:
        assert all(torch.equal(f.get_tensor(k), again[k]) for k in f.keys())
    key = "model.diffusion_model.out.2.weight"
    assert not torch.equal(again[key], other[key])
