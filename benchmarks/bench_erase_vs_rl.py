"""All-but-One erasure against ShieldDiff RL, per optimisation step, side by side on the CPU.

    python benchmarks/bench_erase_vs_rl.py [--epochs 3] [--steps 10] [--batch 4] [--erase-steps-per-epoch 4]

Both train the same LoRA (rank 4, UNet attention projections) on the same tiny random pipeline
at the same batch: RL's optimisation step is one batch of `--batch` trajectories of `--steps`
DDIM steps (sampled, rewarded with mean brightness, then every step trained, accumulated into
one update); All-but-One's is one batch of `--batch` x_t from the frozen model's trajectories
of `--steps` DDIM steps (stopped at a random step), one frozen and one tuned UNet pass. Each
runs in its own process so that peak memory (max RSS) is its own. The first epoch is a
warm-up; the figure is the mean wall time of the others divided by the updates per epoch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a nude woman", "a naked man", "a cat", "a house"]


def child(args) -> int:
    sys.path[:0] = [str(ROOT)]
    from trainer.training.config import load_config

    out = Path(args.out)
    common = [
        f'model.checkpoint="{args.folder}"',
        f"model.resolution={args.resolution}",
        f"train.batch_size={args.batch}",
        f"train.epochs={args.epochs}",
        "train.learning_rate=3e-4",
        "lora.rank=4",
        "train.samples_to_save=0",
    ]
    if args.child == "rl":
        from trainer.rl.trainer import train

        updates = 1
        settings = [
            f"sample.steps={args.steps}",
            f"sample.batch_size={args.batch}",
            "sample.batches_per_epoch=1",
            f"sample.guidance={args.guidance}",
            "reward.kind=brightness",
            "train.per_prompt_stats=false",
            f"prompts.unsafe={json.dumps(PROMPTS)}",
            "prompts.unsafe_ratio=1.0",
        ]
    else:
        from trainer.erase.trainer import train

        updates = args.erase_steps_per_epoch
        settings = [
            'train.method="all-but-one"',
            'erase.concepts=["nudity", "naked person"]',
            'erase.alternatives=["a person wearing clothes"]',
            f"erase.steps={args.steps}",
            f"erase.guidance={args.guidance}",
            f"erase.iterations={updates}",
        ]
    train(load_config(None, [*common, *settings]), out / "job")
    epochs = [json.loads(line)["epoch_seconds"] for line in (out / "job" / "metrics.jsonl").read_text().splitlines()]
    result = {"epoch_seconds": epochs, "updates_per_epoch": updates}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / "result.json").write_text(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--erase-steps-per-epoch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--child", choices=["rl", "all-but-one"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sys.path[:0] = [str(ROOT)]
    from trainer.diffusion.tiny import tiny_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-erase-"))
    folder = tiny_pipeline(work / "pipeline")
    passed = ["--epochs", str(args.epochs), "--steps", str(args.steps), "--batch", str(args.batch)]
    passed += ["--erase-steps-per-epoch", str(args.erase_steps_per_epoch), "--resolution", str(args.resolution)]
    passed += ["--guidance", str(args.guidance), "--folder", str(folder)]
    results = {}
    for name in ("rl", "all-but-one"):
        out = work / name
        out.mkdir()
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, "--out", str(out), *passed], capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-3000:])
            return 1
        results[name] = json.loads((out / "result.json").read_text())
    sys.stdout.write(
        f"tiny SD pipeline, {args.resolution}px, {args.steps} DDIM steps, batch {args.batch}, "
        f"{args.epochs} epochs (first is warm-up), CPU\n"
        f"{'method':12s} {'s/update':>9s} {'updates/epoch':>14s} {'peak RSS MB':>12s}\n"
    )
    per_step = {}
    for name, r in results.items():
        steady = r["epoch_seconds"][1:] or r["epoch_seconds"]
        per_step[name] = sum(steady) / len(steady) / r["updates_per_epoch"]
        sys.stdout.write(f"{name:12s} {per_step[name]:9.3f} {r['updates_per_epoch']:14d} {r['peak_rss_mb']:12.0f}\n")
    sys.stdout.write(
        f"all-but-one / rl: {per_step['all-but-one'] / per_step['rl']:.2f}x the time per update, "
        f"{results['all-but-one']['peak_rss_mb'] / results['rl']['peak_rss_mb']:.2f}x the peak memory\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
