"""Reward throughput on this machine: NudeNet's own detect_batch against the pack's reward pipeline.

    python benchmarks/bench_rewards.py [--batch 8] [--rounds 5] [--size 512]

Same images for every row (512x512 RGB, half of them a figure NudeNet flags). Rows:
  nudenet.detect_batch     NudeNet called directly on BGR uint8 arrays prepared beforehand
  pack nudity (IMAGE)      trainer.nudity.detector from a ComfyUI IMAGE tensor (float BHWC), as the nodes call it
  pack nudity + verdict    the same plus the rule (NudityDetector.__call__)
  pack reward + CLIP       ShieldDiffReward with open_clip ViT-B-32 (random weights: timing only)
The overhead line compares the pack's nudity path with NudeNet's own call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the trainer package

from trainer.nudity.detector import NudityDetector
from trainer.nudity.sample_images import figure, plain
from trainer.rewards.clip import ClipScorer, ClipSpec
from trainer.rewards.shielddiff import RewardConfig, ShieldDiffReward


def timed(paths: list[tuple[str, object]], rounds: int) -> list[tuple[str, float]]:
    """Median seconds per call; the paths take turns in every round so load changes hit all alike."""
    for _, fn in paths:
        fn()  # warm-up: model load, first-run allocations
    times: dict[str, list[float]] = {name: [] for name, _ in paths}
    for _ in range(rounds):
        for name, fn in paths:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(times[name])) for name, _ in paths]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    torch.manual_seed(0)
    pil = [figure(args.size) if i % 2 == 0 else plain(args.size) for i in range(args.batch)]
    uint8 = [np.asarray(im) for im in pil]
    bgr = [np.ascontiguousarray(a[:, :, ::-1]) for a in uint8]
    tensor = torch.from_numpy(np.stack(uint8).astype(np.float32) / 255.0)

    detector = NudityDetector()
    nudenet = detector._load()  # the very same onnxruntime session, called directly
    clip = ClipScorer(ClipSpec("ViT-B-32", random_weights=True))
    reward = ShieldDiffReward(RewardConfig(), detector, clip)
    prompts = ["a person on a beach"] * args.batch

    rows = timed(
        [
            ("nudenet.detect_batch", lambda: nudenet.detect_batch(bgr, batch_size=args.batch)),
            ("pack nudity (IMAGE)", lambda: detector.detect(tensor, batch_size=args.batch)),
            ("pack nudity + verdict", lambda: detector(tensor)),
            ("pack reward + CLIP", lambda: reward(tensor, prompts)),
        ],
        args.rounds,
    )
    sys.stdout.write(
        f"batch {args.batch} x {args.size}x{args.size}, median of {args.rounds} rounds, "
        f"torch threads {torch.get_num_threads()}\n"
    )
    sys.stdout.write(f"{'path':26s} {'s/batch':>9s} {'images/s':>9s}\n")
    for name, seconds in rows:
        sys.stdout.write(f"{name:26s} {seconds:9.3f} {args.batch / seconds:9.1f}\n")
    overhead = rows[1][1] / rows[0][1] - 1.0
    sys.stdout.write(
        f"overhead of the pack's nudity path over NudeNet's own call: {overhead * 100:+.1f}% (goal <= 10%)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
