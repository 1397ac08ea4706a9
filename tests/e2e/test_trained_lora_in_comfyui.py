"""The trainer on the demo checkpoint (the file ComfyUI loads), offline; its LoRA loads in ComfyUI."""

import json

from trainer.lora.formats import read_lora
from trainer.rl.trainer import train
from trainer.training.config import load_config


def test_train_on_the_demo_checkpoint_then_load_the_lora_in_comfyui(comfy, demo_checkpoint, tmp_path):
    out = comfy.base_dir / "models" / "loras" / "trained-safety.safetensors"
    config = load_config(
        None,
        [
            f'model.checkpoint="{demo_checkpoint}"',
            "model.resolution=64",
            "sample.steps=2",
            "sample.batch_size=2",
            "sample.batches_per_epoch=1",
            "train.batch_size=2",
            "train.epochs=1",
            "reward.kind=brightness",
            f'output.lora_path="{out}"',
            "train.learning_rate=0.01",
        ],
    )
    assert train(config, tmp_path / "job") == out
    lora = read_lora(out)
    assert lora.family == "sd15" and len(lora.modules) == 32  # 4 attention blocks x 2 attentions x q, k, v, out
    assert lora.metadata["shielddiff.method"] == "shielddiff-rl"
    assert json.loads(lora.metadata["shielddiff.config"])["train"]["epochs"] == 1
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": demo_checkpoint.name}},
        "2": {
            "class_type": "ShieldDiffLoraLoader",
            "inputs": {
                "model": ["1", 0],
                "clip": ["1", 1],
                "lora_name": out.name,
                "strength_model": 1.0,
                "strength_clip": 1.0,
            },
        },
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    entry = comfy.run(prompt, timeout=300)
    info = json.loads(entry["outputs"]["3"]["text"][0])
    assert info["matched_modules"] == info["modules"] == 32
    assert info["method"] == "shielddiff-rl" and info["base_model"] == demo_checkpoint.name
