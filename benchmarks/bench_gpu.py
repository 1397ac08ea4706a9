"""ShieldDiff RL and All-but-One on a CUDA GPU at a real model size: samples/s, s per update, peak GPU memory.

    python benchmarks/bench_gpu.py [--out bench-gpu.json] [--quick] [--epochs 3] [--steps 50] [--batch 4]

The model is an SD1.5-size pipeline with random weights, built in code from SD1.5's configs
(UNet 860M parameters, VAE, CLIP ViT-L text encoder; a byte-level tokenizer): nothing is
downloaded. Both methods run the pack's own trainers (`python -m trainer train`'s code) at
512 px, 50 DDIM steps, batch 4, LoRA rank 4, bf16, gradient checkpointing, each in its own
process (so peak memory is its own):

- RL: one epoch samples 4 images (50 steps, classifier-free guidance), rewards them (mean
  brightness: the NudeNet + CLIP reward's own cost is not in the figure) and trains on every
  step of every sample, accumulated into one update. samples/s = images sampled and trained
  per second; s/update = the epoch's time.
- All-but-One: one update = a batch of 4 x_t from the frozen model's 50-step trajectories
  (stopped at a random step), one frozen and one tuned UNet pass; `--erase-updates` updates an
  epoch. samples/s = x_t trained per second.

The first epoch is a warm-up; figures are the mean of the others. Peak memory is
torch.cuda.max_memory_allocated of the trainer process (with --tiny on a CPU: its peak RSS).
Prints a table and writes JSON.
Needs torch (CUDA build), diffusers, transformers, peft and accelerate; refuses to run without
a CUDA device. `--quick`: 10 steps, 2 epochs, 2 All-but-One updates (a smoke run, not the
figures). `--tiny` runs a tiny model at 32 px on whatever device there is (CPU included): a
check of this script, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "numpy", "tqdm", "PIL")
PROMPTS = ["a nude woman on a beach", "a naked man in a forest", "a cat on a sofa", "a house by a lake"]
TINY_UNET = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "sample_size": 8,
}


def missing_packages() -> list[str]:
    import importlib.util

    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def write_byte_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer whose tokens are single bytes (no merges): CLIP's special tokens and 77-token
    padding, so the text encoder does CLIP's work; no vocabulary file to download."""
    from trainer.diffusion.loading import _bytes_to_unicode

    chars = list(_bytes_to_unicode().values())
    vocab = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        )
    )


def build_pipeline(folder: Path, tiny: bool) -> Path:
    """An SD1.5-size StableDiffusionPipeline with random weights, saved as a diffusers folder (fp16)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from trainer.diffusion.loading import SD15_SCHEDULER, SD15_TEXT, SD15_UNET, SD15_VAE

    torch.manual_seed(0)
    unet_cfg = {k: v for k, v in SD15_UNET.items() if not k.startswith("_")}
    vae_cfg = {k: v for k, v in SD15_VAE.items() if not k.startswith("_")}
    text_cfg = dict(SD15_TEXT, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    if tiny:
        unet_cfg |= TINY_UNET | {"cross_attention_dim": 32, "attention_head_dim": 4}
        vae_cfg |= {"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2}
        vae_cfg |= {"up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "sample_size": 32}
        text_cfg |= {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
        text_cfg |= {"projection_dim": 32}
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**vae_cfg)
    text = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in text_cfg.items() if k != "architectures"}))
    write_byte_tokenizer(folder / "_tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "_tokenizer")
    scheduler_cfg = {k: v for k, v in SD15_SCHEDULER.items() if not k.startswith("_")}
    scheduler = DDIMScheduler.from_config(scheduler_cfg | {"clip_sample": False})  # as SD1.5's own scheduler file
    pipe = StableDiffusionPipeline(vae, text, tokenizer, unet, scheduler, None, None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    params = sum(p.numel() for p in unet.parameters())
    (folder / "bench-info.json").write_text(json.dumps({"unet_parameters": params}))
    return folder


def settings(args, method: str, job: Path) -> list[str]:
    common = [
        f'model.checkpoint="{args.folder}"',
        f"model.resolution={args.resolution}",
        f'model.mixed_precision="{args.precision}"',
        f"model.gradient_checkpointing={'true' if args.checkpointing else 'false'}",
        f"train.batch_size={args.batch}",
        f"train.epochs={args.epochs}",
        "train.learning_rate=3e-4",
        "train.samples_to_save=0",
        f"train.checkpoint_every={args.epochs + 1}",
        f"lora.rank={args.rank}",
        f"lora.alpha={args.rank}",
        f'output.lora_path="{job / "lora.safetensors"}"',
    ]
    if method == "rl":
        return [
            *common,
            f"sample.steps={args.steps}",
            f"sample.batch_size={args.batch}",
            "sample.batches_per_epoch=1",
            "reward.kind=brightness",
            "train.per_prompt_stats=false",
            f"prompts.unsafe={json.dumps(PROMPTS)}",
            "prompts.unsafe_ratio=1.0",
        ]
    return [
        *common,
        'train.method="all-but-one"',
        'erase.concepts=["nudity", "naked person"]',
        'erase.alternatives=["a person wearing clothes"]',
        f"erase.steps={args.steps}",
        f"erase.iterations={args.erase_updates}",
    ]


def child(args) -> int:
    """One method in this process: train, then write what it measured."""
    import torch

    from trainer.training.config import load_config

    out = Path(args.out)
    job = out / "job"
    config = load_config(None, settings(args, args.child, job))
    if args.child == "rl":
        from trainer.rl.trainer import train

        updates = 1  # 4 samples, train batch 4, one inner epoch: one optimizer step an epoch
        per_update = args.batch
    else:
        from trainer.erase.trainer import train

        updates = args.erase_updates
        per_update = args.batch
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    train(config, job)
    total = time.perf_counter() - began
    metrics = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    steady = metrics[1:] or metrics
    epoch_s = sum(m["epoch_seconds"] for m in steady) / len(steady)
    result = {
        "epoch_seconds": [m["epoch_seconds"] for m in metrics],
        "updates_per_epoch": updates,
        "s_per_update": epoch_s / updates,
        "samples_per_s": per_update * updates / epoch_s,
        "peak_memory_mb": max(m["peak_memory_mb"] for m in metrics),
        "run_seconds": total,
    }
    (out / "result.json").write_text(json.dumps(result))
    return 0


def environment() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("diffusers", "transformers", "peft", "accelerate"):
        info[name] = __import__(name).__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["gpu_memory_mb"] = torch.cuda.get_device_properties(0).total_memory / 2**20
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-gpu.json", help="where the JSON goes (default bench-gpu.json)")
    parser.add_argument("--family", default="sd15", choices=["sd15"], help="model size (SDXL: not yet)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 steps, 2 epochs, 2 erase updates")
    parser.add_argument("--tiny", action="store_true", help="a tiny model at 32 px on any device: checks the script")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per method; the first is a warm-up")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--erase-updates", type=int, default=4, help="All-but-One updates per epoch")
    parser.add_argument("--precision", default="bf16", choices=["no", "fp16", "bf16"])
    parser.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    parser.add_argument("--child", choices=["rl", "all-but-one"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        return child(args)
    missing = missing_packages()
    if missing:
        sys.stderr.write(f"bench-gpu needs these Python packages, missing here: {', '.join(missing)}\n")
        return 2
    import torch

    if args.tiny:
        args.resolution, args.precision = 32, "no"
    elif not torch.cuda.is_available():
        sys.stderr.write(
            f"bench-gpu measures on a CUDA GPU and this machine has none (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'no'}). Run it where `python -c 'import torch; "
            "print(torch.cuda.is_available())'` prints True (or pass --tiny to check the script on a CPU).\n"
        )
        return 2
    if args.quick:
        args.steps, args.epochs, args.erase_updates = 10, 2, 2
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    began = time.perf_counter()
    folder = build_pipeline(work / "pipeline", args.tiny)
    build_s = time.perf_counter() - began
    unet_params = json.loads((folder / "bench-info.json").read_text())["unet_parameters"]
    sys.stdout.write(
        f"built a random {'tiny' if args.tiny else 'SD1.5-size'} pipeline in {build_s:.0f} s "
        f"(UNet {unet_params / 1e6:.0f}M parameters) in {folder}\n"
    )
    sys.stdout.flush()
    passed = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k in ("epochs", "steps", "batch", "rank", "resolution", "erase_updates", "precision")
    ]
    passed += [] if args.checkpointing else ["--no-checkpointing"]
    results, failed = {}, {}
    for name in ("rl", "all-but-one"):  # each in its own process; one failing does not stop the other
        out = work / name
        out.mkdir()
        cmd = [sys.executable, __file__, "--child", name, "--out", str(out), "--folder", str(folder), *passed]
        env = dict(
            os.environ, TQDM_DISABLE="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        )
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            failed[name] = f"exit {done.returncode}: {done.stderr[-4000:]}"
            sys.stderr.write(f"{name} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}\n")
            continue
        results[name] = json.loads((out / "result.json").read_text())
        sys.stdout.write(f"{name}: done in {results[name]['run_seconds']:.0f} s\n")
        sys.stdout.flush()
    setup = {
        "family": "tiny" if args.tiny else args.family,
        "unet_parameters": unet_params,
        "resolution": args.resolution,
        "steps": args.steps,
        "batch": args.batch,
        "lora_rank": args.rank,
        "precision": args.precision,
        "gradient_checkpointing": args.checkpointing,
        "epochs": args.epochs,
        "erase_updates_per_epoch": args.erase_updates,
        "quick": args.quick,
        "reward": "brightness",
    }
    report = {"setup": setup, "environment": environment(), "build_seconds": build_s, "results": results}
    report["failed"] = failed
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    env = report["environment"]
    sys.stdout.write(
        f"\n{setup['family']} random weights, {args.resolution} px, {args.steps} DDIM steps, batch {args.batch}, "
        f"LoRA rank {args.rank}, {args.precision}, gradient checkpointing {'on' if args.checkpointing else 'off'}; "
        f"{env.get('gpu', 'no GPU')}, torch {env['torch']}\n"
        f"{'method':12s} {'samples/s':>10s} {'s/update':>9s} {'updates/epoch':>14s} {'peak MB':>12s}  epoch s\n"
    )
    for name, r in results.items():
        epochs = " ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        sys.stdout.write(
            f"{name:12s} {r['samples_per_s']:10.3f} {r['s_per_update']:9.2f} {r['updates_per_epoch']:14d} "
            f"{r['peak_memory_mb']:12.0f}  {epochs}\n"
        )
    for name in failed:
        sys.stdout.write(f"{name:12s} failed (see above)\n")
    sys.stdout.write(f"JSON: {Path(args.out).resolve()}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
