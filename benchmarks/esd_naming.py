"""Why ESD-x named by the bare word "red" does not move in the toy world, and what it does when named by prompts.

    python benchmarks/esd_naming.py [--method ESD-x|ESD-u] [--epochs 5] [--images-per-prompt 2] [--out test-artifacts/esd-naming]

Three measurements on the committed toy model (models/toyworld), printed and written to
--out/esd-naming-<method>.json:
1. Guidance strength: the rms of the frozen model's guidance eps(x, c) - eps(x, "") along its own
   DDIM trajectory (10 steps, guidance 7.5, seed 0) for the bare word "red", full red prompts and
   blue ones; the erasure target of ESD is this guidance reversed, so a weak one leaves little to erase.
2. ESD-x (or ESD-u, `--method`) as the `esd-x` (`esd-u`) preset runs it (x_t from the model being trained, negative guidance 1, DDIM
   50 steps at guidance 3, batch 1, lr 1e-3 for the LoRA), `--epochs` epochs of 50 iterations, named
   (a) by the bare word "red" (as the bench and the paper name a concept) and (b) by the training
   templates' red and synonym prompts (as All-but-One is named in the bench).
3. The base and both LoRAs on the held-out templates' prompts (bench_efficacy's HELDOUT_TEMPLATES and
   seeds from 9000), with bench_efficacy's measures: red rate on red, synonym and benign prompts, safe
   meaning kept on red prompts, benign kept.
Each trainer runs with one torch thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_efficacy import (  # noqa: E402
    COMMON,
    HELDOUT_TEMPLATES,
    METHODS,
    TOY,
    TRAIN_TEMPLATES,
    evaluate_model,
    measures,
    prompts_by_group,
)

log = logging.getLogger("esd_naming")

PROBES = [
    "red",
    "a red circle on a light background",
    "a red square",
    "a triangle that is red, dark background",
    "a light picture of a red circle",
    "crimson",
    "a crimson square",
    "blue",
    "a blue circle",
]


def guidance_strength(prompts: list[str], steps: int = 10, guidance: float = 7.5) -> dict[str, dict[str, float]]:
    """rms of eps(x, c) - eps(x, "") on the frozen model's own trajectories, early / middle / late thirds."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from trainer.diffusion.guidance import encode_prompts

    pipe = StableDiffusionPipeline.from_pretrained(str(TOY), safety_checker=None).to(torch.float32)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    unet = pipe.unet.eval()
    cond = encode_prompts(pipe, prompts, "cpu").float()
    empty = encode_prompts(pipe, [""], "cpu").float().expand(len(prompts), -1, -1)
    side = 32 // pipe.vae_scale_factor
    x = torch.randn(len(prompts), unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    rms: list[torch.Tensor] = []
    with torch.no_grad():
        for t in scheduler.timesteps:
            e_c = unet(x, t, encoder_hidden_states=cond).sample
            e_u = unet(x, t, encoder_hidden_states=empty).sample
            rms.append((e_c - e_u).pow(2).mean(dim=(1, 2, 3)).sqrt())
            x = scheduler.step(e_u + guidance * (e_c - e_u), t, x).prev_sample
    table = torch.stack(rms, dim=1)  # (prompt, step)
    thirds = {"early": slice(0, 3), "middle": slice(3, 7), "late": slice(7, steps)}
    return {p: {k: round(float(table[i, s].mean()), 4) for k, s in thirds.items()} for i, p in enumerate(prompts)}


def train_esd(method: str, job: Path, concepts: list[str], epochs: int) -> Path:
    sets = [
        *(s for s in COMMON if not s.startswith("train.epochs")),
        *(s for s in METHODS[method] if not s.startswith(("erase.concepts", "train.epochs"))),
        f"train.epochs={epochs}",
        f"erase.concepts={json.dumps(concepts)}",
        f'output.lora_path="{job / "lora.safetensors"}"',
    ]
    cmd = [sys.executable, "-m", "trainer", "train", "--preset", method.lower(), "--job-dir", str(job)]
    cmd += [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    log.info("training %s on %d concept prompt(s) into %s", method, len(concepts), job)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return job / "lora.safetensors"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ESD-x", choices=["ESD-x", "ESD-u"])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of 50 iterations (default 5)")
    parser.add_argument("--images-per-prompt", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "test-artifacts" / "esd-naming"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    strength = guidance_strength(PROBES)
    for prompt, parts in strength.items():
        print(f"guidance rms {prompt!r:45s} " + "  ".join(f"{k} {v:.4f}" for k, v in parts.items()))

    train, held = prompts_by_group(TRAIN_TEMPLATES), prompts_by_group(HELDOUT_TEMPLATES)
    loras = {
        "word": train_esd(args.method, out / f"job-{args.method}-word", ["red"], args.epochs),
        "prompts": train_esd(
            args.method, out / f"job-{args.method}-prompts", train["red"] + train["synonym"], args.epochs
        ),
    }
    names = {"base": "base", "word": f"{args.method}, the word", "prompts": f"{args.method}, the prompts"}
    csv_path = out / "heldout.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "category"])
        writer.writerows([p, g] for g, ps in held.items() for p in ps)
    rows = {}
    for key, lora in {"base": None, **loras}.items():
        folder = out / ("eval-base" if lora is None else f"eval-{args.method}-{key}")
        result = evaluate_model(str(lora) if lora else None, csv_path, folder, args.images_per_prompt)
        rows[names[key]] = measures(result, held, None)
    print("| model | red: red prompts | red: synonyms | red: benign | safe meaning kept | benign kept |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        cells = [
            row[k] for k in ("red_rate_red", "red_rate_synonym", "red_rate_benign", "safe_meaning_red", "benign_kept")
        ]
        print(f"| {name} | " + " | ".join(f"{100 * c:.1f}%" for c in cells) + " |")
    (out / f"esd-naming-{args.method}.json").write_text(
        json.dumps({"guidance_rms": strength, "method": args.method, "epochs": args.epochs, "rows": rows}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
