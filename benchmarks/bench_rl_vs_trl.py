"""ShieldDiff RL against trl 0.23.1's DDPOTrainer (the last trl with it), side by side on the CPU.

    python benchmarks/bench_rl_vs_trl.py [--epochs 3] [--steps 10] [--batch 8]

Both train a LoRA on the same tiny random pipeline (saved once to a folder), with the same
prompts, reward (mean brightness), DDIM steps, eta, guidance, sample and train batch sizes,
LoRA rank and learning rate. Each runs in its own process so that peak memory (max RSS) is
its own. The first epoch is a warm-up; the figures are the mean wall time and the mean CPU time
(all of the process's threads) of the others: on a machine with other load, the CPU time is the
steadier comparison. ShieldDiff runs twice: with DDPO's one UNet call per trained timestep
(`train.timestep_batch=1`, the default) and with all of a sample's trained timesteps in one call
(`train.timestep_batch=0`, the same gradient).
trl is a benchmark-only install (`make bench-rl` sets up .venv-bench); the pack never needs it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a cat", "a dog", "a house", "a tree"]


def run_ours(args, folder: Path, out: Path) -> dict:
    from trainer.rl.trainer import train
    from trainer.training.config import load_config

    config = load_config(
        None,
        [
            f'model.checkpoint="{folder}"',
            f"model.resolution={args.resolution}",
            f"sample.steps={args.steps}",
            f"sample.batch_size={args.batch}",
            "sample.batches_per_epoch=1",
            f"train.batch_size={args.batch}",
            f"train.epochs={args.epochs}",
            "train.learning_rate=3e-4",
            "reward.kind=brightness",
            "lora.rank=4",
            "train.per_prompt_stats=false",
            f"prompts.unsafe={json.dumps(PROMPTS)}",
            "prompts.unsafe_ratio=1.0",
            f"sample.guidance={args.guidance}",
            "train.samples_to_save=0",
            f"train.timestep_batch={args.timestep_batch}",
        ],
    )
    train(config, out / "job")
    lines = [json.loads(line) for line in (out / "job" / "metrics.jsonl").read_text().splitlines()]
    return {"epoch_seconds": [m["epoch_seconds"] for m in lines], "cpu_seconds": [m["cpu_seconds"] for m in lines]}


def run_trl(args, folder: Path, out: Path) -> dict:
    import numpy as np
    from accelerate import PartialState

    PartialState()
    from trl import DDPOConfig, DDPOTrainer, DefaultDDPOStableDiffusionPipeline

    def reward_fn(images, prompts, metadata):
        return images.float().mean(dim=(1, 2, 3)), {}

    def prompt_fn():
        return str(np.random.choice(PROMPTS)), {}

    config = DDPOConfig(
        num_epochs=args.epochs,
        sample_num_steps=args.steps,
        sample_batch_size=args.batch,
        sample_num_batches_per_epoch=1,
        train_batch_size=args.batch,
        train_learning_rate=3e-4,
        sample_eta=1.0,
        sample_guidance_scale=args.guidance,
        mixed_precision="no",
        train_use_8bit_adam=False,
        log_with=None,
        per_prompt_stat_tracking=False,
        project_kwargs={"project_dir": str(out)},
        save_freq=10_000,
    )
    pipeline = DefaultDDPOStableDiffusionPipeline(str(folder), use_lora=True)
    pipeline.sd_pipeline.set_progress_bar_config(disable=True)
    trainer = DDPOTrainer(config, reward_fn, prompt_fn, pipeline)
    times, cpu = [], []
    for epoch in range(args.epochs):
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer.step(epoch, epoch)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"epoch_seconds": times, "cpu_seconds": cpu}


def child(args) -> int:
    sys.path[:0] = [str(ROOT)]
    folder, out = Path(args.folder), Path(args.out)
    result = (run_trl if args.child == "trl" else run_ours)(args, folder, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / "result.json").write_text(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    # trl samples at the pipeline's native size (UNet sample_size x VAE scale): 16 x 2 = 32 px here
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--trl-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--child", choices=["shielddiff", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--timestep-batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sys.path[:0] = [str(ROOT)]
    from trainer.diffusion.tiny import tiny_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-rl-"))
    folder = tiny_pipeline(work / "pipeline")
    common = [
        "--epochs",
        str(args.epochs),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--resolution",
        str(args.resolution),
        "--guidance",
        str(args.guidance),
        "--folder",
        str(folder),
    ]
    runs = {
        "trl": (args.trl_python, "trl", 1),
        "shielddiff": (sys.executable, "shielddiff", 1),
        "shielddiff-tb0": (sys.executable, "shielddiff", 0),
    }
    results = {}
    for name, (python, child_kind, timestep_batch) in runs.items():
        out = work / name
        out.mkdir()
        done = subprocess.run(
            [
                python,
                __file__,
                "--child",
                child_kind,
                "--out",
                str(out),
                "--timestep-batch",
                str(timestep_batch),
                *common,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-3000:])
            return 1
        results[name] = json.loads((out / "result.json").read_text())
    sys.stdout.write(
        f"tiny SD pipeline, {args.resolution}px, {args.steps} DDIM steps, batch {args.batch} (sample and train), "
        f"{args.epochs} epochs, CPU\n"
        f"{'trainer':16s} {'s/epoch':>9s} {'CPU s/epoch':>12s} {'peak RSS MB':>12s} {'speed-up':>9s} {'CPU ratio':>10s}\n"
    )
    steady = {}
    for name, r in results.items():
        keep = slice(1, None) if len(r["epoch_seconds"]) > 1 else slice(None)
        steady[name] = [sum(r[k][keep]) / len(r[k][keep]) for k in ("epoch_seconds", "cpu_seconds")]
    for name, r in results.items():
        wall, cpu = steady[name]
        sys.stdout.write(
            f"{name:16s} {wall:9.2f} {cpu:12.2f} {r['peak_rss_mb']:12.0f} "
            f"{steady['trl'][0] / wall:8.2f}x {steady['trl'][1] / cpu:9.2f}x\n"
        )
    mem = results["shielddiff"]["peak_rss_mb"] / results["trl"]["peak_rss_mb"]
    sys.stdout.write(
        f"goal: >= 1.3x trl's speed per epoch at <= 1.0x its peak memory; "
        f"ShieldDiff (default) peak memory {mem:.2f}x of trl's\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
