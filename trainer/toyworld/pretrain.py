"""Train the toy world's StableDiffusionPipeline (and its shape classifier) from scratch on the CPU.

    python -m trainer.toyworld.pretrain --out models/toyworld [--threads 1]

The recipe (docs/toyworld.md), every random choice seeded:
1. Render the training scenes (world.py).
2. VAE: AutoencoderKL 32x32x3 -> 16x16x4, channels (16, 32), one layer per block, no attention;
   MSE + 0.5 L1 + 1e-6 KL, batch 32, lr 4e-3 cosine; scaling factor 1 / std of the latents.
3. Shape classifier: a small CNN on renders and their VAE reconstructions.
4. Latents encoded once; UNet2DConditionModel (32, 64, 64; cross-attention at 4x4 and in the
   mid block; width 64) and a 2-layer CLIPTextModel of width 64, trained jointly: SD's
   scaled-linear schedule, epsilon prediction, min-SNR-5 weights, 10% empty prompts, AdamW 2e-3
   with warm-up and cosine to 10%, gradient clipping 1, EMA 0.999, batch 64; offset noise 0.1
   (without it the model followed the prompt's background in only 65% of images: the light or
   dark background is the latents' mean, which SD's schedule leaves in x_T, so the model learned
   to take it from the noise).
5. Save a standard diffusers folder (DDIM scheduler, CLIP tokenizer from open_clip's bundled BPE),
   fp16 by default, with shape_classifier/ and training.json (recipe, times, losses) beside it.
CPU runs are not bit-reproducible across machines and thread counts: the weights are committed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from .shape_classifier import ShapeClassifier, save_shape_classifier
from .world import render, sample_scene

log = logging.getLogger(__name__)

BETA_START, BETA_END, TRAIN_TIMESTEPS = 0.00085, 0.012, 1000


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=32,
        mid_block_add_attention=False,
    )


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=2,  # diffusers' name for the number of heads
        norm_num_groups=16,
        cross_attention_dim=64,
    )


def make_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def make_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    from ..diffusion.loading import write_tokenizer

    write_tokenizer(folder)
    # From the folder: passing vocab/merges paths to the constructor yields a 2-token vocabulary.
    return CLIPTokenizer.from_pretrained(str(folder))


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def lr_lambda(warmup: int, total: int, floor: float = 0.1):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def render_dataset(n: int, seed: int):
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    pixels = np.stack([render(s) for s in scenes])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return scenes, images


def train_vae(vae, images, steps: int, batch: int, lr: float, gen: torch.Generator) -> float:
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    vae.train()
    loss_value = float("nan")
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = images[idx]
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample(generator=gen)).sample
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = loss.item()
        if step % 200 == 0 or step == steps - 1:
            log.info("vae step %d/%d loss %.4f", step + 1, steps, loss_value)
    vae.eval()
    return loss_value


@torch.no_grad()
def encode(vae, images, batch: int = 512):
    means, recons = [], []
    for i in range(0, len(images), batch):
        mean = vae.encode(images[i : i + batch]).latent_dist.mean
        means.append(mean)
        recons.append(vae.decode(mean).sample.clamp(-1, 1))
    return torch.cat(means), torch.cat(recons)


def train_shape_classifier(scenes, images, recons, steps: int, gen: torch.Generator) -> tuple[ShapeClassifier, float]:
    from .world import SHAPES

    labels = torch.tensor([SHAPES.index(s.shape) for s in scenes])
    data = torch.cat([images, recons])
    targets = torch.cat([labels, labels])
    model = ShapeClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(data), (128,), generator=gen)
        x = data[idx] + 0.05 * torch.randn(data[idx].shape, generator=gen)
        loss = F.cross_entropy(model(x), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 300 == 0 or step == steps - 1:
            log.info("shape classifier step %d/%d loss %.4f", step + 1, steps, float(loss))
    model.eval()
    with torch.no_grad():
        accuracy = float((model(recons).argmax(1) == labels).float().mean())
    return model, accuracy


def prompt_ids(tokenizer, scenes) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids per scene (its own template) and for the empty prompt, tokenising each distinct prompt once."""
    prompts = [s.prompt for s in scenes]
    distinct = [*sorted(set(prompts)), ""]
    ids = tokenizer(distinct, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    row = {p: i for i, p in enumerate(distinct)}
    return ids[[row[p] for p in prompts]], ids[-1]


def train_denoiser(unet, text_encoder, latents, ids, empty_ids, args, gen: torch.Generator) -> list[float]:
    from diffusers.training_utils import EMAModel

    scheduler = make_scheduler()
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(100, args.unet_steps))
    ema = EMAModel(params, decay=0.999)
    unet.train()
    text_encoder.train()
    losses, window = [], []
    start = time.monotonic()
    for step in range(args.unet_steps):
        idx = torch.randint(len(latents), (args.batch,), generator=gen)
        x0 = latents[idx]
        tokens = ids[idx].clone()
        drop = torch.rand(args.batch, generator=gen) < 0.1
        tokens[drop] = empty_ids
        noise = torch.randn(x0.shape, generator=gen)
        if args.offset_noise:  # a per-channel constant: lets the model set the overall brightness from text
            noise = noise + args.offset_noise * torch.randn((args.batch, x0.shape[1], 1, 1), generator=gen)
        t = torch.randint(0, TRAIN_TIMESTEPS, (args.batch,), generator=gen)
        noisy = scheduler.add_noise(x0, noise, t)
        context = text_encoder(tokens)[0]
        pred = unet(noisy, t, context).sample
        per_sample = F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (weights[t] * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.step(params)
        window.append(float(loss))
        if (step + 1) % 100 == 0 or step == args.unet_steps - 1:
            losses.append(float(np.mean(window)))
            window = []
            elapsed = time.monotonic() - start
            log.info(
                "denoiser step %d/%d loss %.4f (%.0f s, %.2f s/step)",
                step + 1,
                args.unet_steps,
                losses[-1],
                elapsed,
                elapsed / (step + 1),
            )
    ema.copy_to(params)
    unet.eval()
    text_encoder.eval()
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.toyworld.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (a diffusers StableDiffusionPipeline)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--images", type=int, default=20000, help="training scenes rendered")
    parser.add_argument("--vae-steps", type=int, default=1000)
    parser.add_argument("--classifier-steps", type=int, default=1500)
    parser.add_argument("--unet-steps", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=64, help="denoiser batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="denoiser peak learning rate")
    parser.add_argument(
        "--offset-noise",
        type=float,
        default=0.1,
        help="std of a per-channel constant added to the training noise (0: none). SD's schedule leaves the "
        "latents' mean in x_T, so without it the background follows the noise, not the prompt",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 was fastest on a shared 2-core machine)"
    )
    parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="dtype of the saved weights")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        parser.error(f"{out} exists: pass --overwrite to replace it, or choose another --out")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    times: dict[str, float] = {}
    t0 = time.monotonic()

    tokenizer = make_tokenizer(work / "tokenizer")
    scenes, images = render_dataset(args.images, args.seed)
    times["render_s"] = time.monotonic() - t0

    t = time.monotonic()
    vae = make_vae()
    vae_loss = train_vae(vae, images, args.vae_steps, 32, 4e-3, gen)
    means, recons = encode(vae, images)
    psnr = float(10 * torch.log10(4.0 / F.mse_loss(recons, images)))
    scaling = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = means * scaling
    times["vae_s"] = time.monotonic() - t
    log.info("vae: %d params, PSNR %.1f dB, scaling factor %.3f", count(vae), psnr, scaling)

    t = time.monotonic()
    classifier, classifier_acc = train_shape_classifier(scenes, images, recons, args.classifier_steps, gen)
    times["shape_classifier_s"] = time.monotonic() - t
    log.info("shape classifier: %d params, accuracy on its VAE reconstructions %.3f", count(classifier), classifier_acc)

    t = time.monotonic()
    unet = make_unet()
    text_encoder = make_text_encoder(tokenizer)
    ids, empty_ids = prompt_ids(tokenizer, scenes)
    log.info("unet %d params, text encoder %d params", count(unet), count(text_encoder))
    losses = train_denoiser(unet, text_encoder, latents, ids, empty_ids, args, gen)
    times["denoiser_s"] = time.monotonic() - t

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if args.dtype == "fp16":
        pipe.to(torch.float16)
    pipe.save_pretrained(str(work), safe_serialization=True)
    save_shape_classifier(classifier, work / "shape_classifier")
    times["total_s"] = time.monotonic() - t0
    summary = {
        "recipe": "trainer/toyworld/pretrain.py",
        "args": vars(args),
        "params": {
            "vae": count(vae),
            "unet": count(unet),
            "text_encoder": count(text_encoder),
            "shape_classifier": count(classifier),
        },
        "vae": {"final_loss": vae_loss, "psnr_db": psnr, "scaling_factor": scaling},
        "shape_classifier": {"accuracy_on_vae_reconstructions": classifier_acc},
        "denoiser": {"loss_per_100_steps": losses, "final_loss": losses[-1] if losses else None},
        "times_s": {k: round(v, 1) for k, v in times.items()},
        "torch": torch.__version__,
        "threads": args.threads,
    }
    (work / "training.json").write_text(json.dumps(summary, indent=1))
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    log.info(
        "saved %s in %.0f s (final denoiser loss %.4f)", out, times["total_s"], losses[-1] if losses else float("nan")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
