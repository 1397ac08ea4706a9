"""`python -m trainer lora inspect|convert` on files the core writes."""

import json
import subprocess
import sys

import torch

from support.comfy_harness import REPO
from support.tiny_models import demo_lora
from trainer.lora.formats import read_lora, shielddiff_metadata, write_lora


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "trainer", "lora", *map(str, args)], cwd=REPO, capture_output=True, text=True
    )


def test_inspect_reports_format_family_layers_rank_and_metadata(tmp_path):
    meta = shielddiff_metadata("shielddiff-rl", "sd15-demo.safetensors", "abc123", {"lr": 3e-4}, {"nudity_rate": 0.1})
    write_lora(demo_lora(rank=4, alpha=2.0), tmp_path / "l.safetensors", metadata=meta)
    done = cli("inspect", tmp_path / "l.safetensors", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["format"] == "kohya" and info["family"] == "sd15"
    assert info["modules"] == {"unet": 32, "te1": 2} and info["ranks"] == [4] and info["alphas"] == [2.0]
    assert info["metadata"]["ss_network_dim"] == "4" and info["metadata"]["shielddiff.method"] == "shielddiff-rl"
    assert json.loads(info["metadata"]["shielddiff.config"]) == {"lr": 3e-4}
    assert "family" in cli("inspect", tmp_path / "l.safetensors").stdout


def test_convert_keeps_every_tensor(tmp_path):
    write_lora(demo_lora(), tmp_path / "k.safetensors")
    for fmt in ("diffusers", "comfy"):
        done = cli(
            "convert", tmp_path / "k.safetensors", tmp_path / f"{fmt}.safetensors", "--to", fmt, "--layout", "sd15-demo"
        )
        assert done.returncode == 0, done.stderr
    back = cli(
        "convert",
        tmp_path / "comfy.safetensors",
        tmp_path / "back.safetensors",
        "--to",
        "kohya",
        "--layout",
        "sd15-demo",
    )
    assert back.returncode == 0, back.stderr
    a, b = read_lora(tmp_path / "k.safetensors"), read_lora(tmp_path / "back.safetensors")
    assert a.modules.keys() == b.modules.keys()
    assert all(
        torch.equal(a.modules[k].up, b.modules[k].up) and torch.equal(a.modules[k].down, b.modules[k].down)
        for k in a.modules
    )


def test_a_file_that_is_not_a_lora_is_named(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x80\x04not safetensors at all")
    done = cli("inspect", tmp_path / "x.safetensors")
    assert done.returncode == 2 and "x.safetensors is not a safetensors file" in done.stderr
