"""All-but-One concept erasure: fine-tune a LoRA so the concept's guidance becomes the alternative's.

Each optimisation step draws a batch of x_t from the frozen model's own trajectories for the
concept (deterministic DDIM with classifier-free guidance on a concept prompt, stopped at a
random step, as ESD does), builds the target from the frozen model (objective.py) and
takes one AdamW step on the LoRA. The job directory, checkpoints, SIGTERM and `--resume`
behave as for the RL trainer (the same code, training/run.py and training/session.py).
Randomness comes from (seed, epoch, step, process), so a resumed run repeats the
uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..diffusion.guidance import decode_images, encode_prompts, guided_eps
from ..training.config import RLConfig
from ..training.job_dir import JobDir
from ..training.run import (
    StopFlag,
    TrainingCancelled,
    end_epoch,
    job_log,
    mark_cancelled,
    peak_memory_mb,
    save_samples,
    seed,
)
from ..training.session import (
    TrainingModels,
    begin_run,
    finish_training,
    frozen,
    lora_state,
    setup_models,
)
from .objective import erase_loss, erase_target

__all__ = ["ErasePrompts", "draw_latents", "erase_prompts", "erase_step_loss", "frozen_latents", "train"]

log = logging.getLogger(__name__)


@dataclass
class ErasePrompts:
    concepts: list[str]
    alternatives: list[str] | None  # paired with concepts (one alternative is repeated); None: no alternative
    concept_embeds: torch.Tensor  # (n, 77, D)
    alternative_embeds: torch.Tensor | None  # (n, 77, D)


def erase_prompts(models: TrainingModels, config: RLConfig) -> ErasePrompts:
    concepts = list(config.erase.concepts)
    alternatives = list(config.erase.alternatives)
    if len(alternatives) == 1:
        alternatives = alternatives * len(concepts)
    device = models.accelerator.device
    return ErasePrompts(
        concepts,
        alternatives or None,
        encode_prompts(models.pipe, concepts, device),
        encode_prompts(models.pipe, alternatives, device) if alternatives else None,
    )


def _latent_shape(models: TrainingModels, resolution: int) -> tuple[int, int, int]:
    side = resolution // models.pipe.vae_scale_factor
    return (models.pipe.unet.config.in_channels, side, side)


@torch.no_grad()
def frozen_latents(
    models: TrainingModels,
    concept_embeds: torch.Tensor,
    *,
    stop_at: int,
    steps: int,
    guidance: float,
    latent_shape: tuple[int, int, int],
    generator: torch.Generator,
    stop: StopFlag | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t after `stop_at` of `steps` deterministic DDIM steps of the frozen model on the concept, and t."""
    scheduler = models.pipe.scheduler
    device = concept_embeds.device
    scheduler.set_timesteps(steps, device=device)
    b = concept_embeds.shape[0]
    x = torch.randn((b, *latent_shape), generator=generator, dtype=torch.float32).to(device, models.dtype)
    x = x * scheduler.init_noise_sigma
    negative = models.negative_embeds.expand(b, -1, -1)
    with frozen(models) as unet:
        for t in scheduler.timesteps[:stop_at]:
            if stop is not None and stop.stop:
                raise TrainingCancelled
            eps = guided_eps(unet, x, t, concept_embeds, negative, guidance)
            x = scheduler.step(eps.to(x.dtype), t, x, eta=0.0).prev_sample
    return x, scheduler.timesteps[stop_at].clone()


def draw_latents(
    models: TrainingModels, config: RLConfig, prompts: ErasePrompts, *parts: int, stop: StopFlag | None = None
):
    """A batch of (x_t, t, concept index) for seed parts (epoch, step): concepts and the stop step drawn at random."""
    e = config.erase
    generator = torch.Generator().manual_seed(seed(config.train.seed, *parts, models.accelerator.process_index, 5))
    index = torch.randint(len(prompts.concepts), (config.train.batch_size,), generator=generator)
    stop_at = int(torch.randint(e.steps, (1,), generator=generator))
    x_t, t = frozen_latents(
        models,
        prompts.concept_embeds[index],
        stop_at=stop_at,
        steps=e.steps,
        guidance=e.guidance,
        latent_shape=_latent_shape(models, config.model.resolution),
        generator=generator,
        stop=stop,
    )
    return x_t, t, index


def erase_step_loss(
    models: TrainingModels, config: RLConfig, prompts: ErasePrompts, x_t: torch.Tensor, t, index: torch.Tensor
):
    """The objective on one batch: (loss with gradients into the LoRA, detached parts)."""
    e = config.erase
    b = x_t.shape[0]
    concept = prompts.concept_embeds[index]
    alternative = prompts.alternative_embeds[index] if prompts.alternative_embeds is not None else None
    negative = models.negative_embeds.expand(b, -1, -1)
    conds = [negative]
    if alternative is not None:
        conds.append(alternative)
    elif e.eta < 0:
        conds.append(concept)
    with torch.no_grad(), frozen(models) as base:
        out = base(torch.cat([x_t] * len(conds)), t, encoder_hidden_states=torch.cat(conds)).sample.chunk(len(conds))
    eps_empty = out[0]
    eps_alternative = out[1] if alternative is not None else None
    eps_concept = out[1] if alternative is None and e.eta < 0 else None
    target = erase_target(eps_empty, eps_alternative, eps_concept, e.eta)
    tuned = models.unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat([concept, negative])).sample
    tuned_concept, tuned_empty = tuned.chunk(2)
    return erase_loss(tuned_concept, target, tuned_empty, eps_empty, e.lambda_uncond)


@torch.no_grad()
def _sample_images(models: TrainingModels, config: RLConfig, prompts: ErasePrompts) -> tuple[list, list[str]]:
    """Images of the concept prompts with the current LoRA, from the same noise every epoch."""
    count = config.train.samples_to_save
    if count < 1:
        return [], []
    chosen = [i % len(prompts.concepts) for i in range(count)]
    e, scheduler = config.erase, models.pipe.scheduler
    scheduler.set_timesteps(e.steps, device=models.accelerator.device)
    generator = torch.Generator().manual_seed(seed(config.train.seed, 7))
    shape = (count, *_latent_shape(models, config.model.resolution))
    x = torch.randn(shape, generator=generator).to(models.accelerator.device, models.dtype) * scheduler.init_noise_sigma
    embeds = prompts.concept_embeds[chosen]
    negative = models.negative_embeds.expand(count, -1, -1)
    models.unet.eval()
    for t in scheduler.timesteps:
        eps = guided_eps(models.unet, x, t, embeds, negative, e.guidance)
        x = scheduler.step(eps.to(x.dtype), t, x, eta=0.0).prev_sample
    return decode_images(models.pipe.vae, x), [prompts.concepts[i] for i in chosen]


def _train_epoch(config, models, prompts, epoch, stop) -> dict:
    acc, unet = models.accelerator, models.unet
    stats: dict[str, list[float]] = {"loss": [], "loss_erase": [], "loss_uncond": []}
    for step in range(config.erase.iterations):
        if stop.stop:
            raise TrainingCancelled
        x_t, t, index = draw_latents(models, config, prompts, epoch, step, stop=stop)
        unet.train()
        with acc.accumulate(unet), acc.autocast():
            loss, parts = erase_step_loss(models, config, prompts, x_t, t, index)
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(unet.parameters(), config.train.max_grad_norm)
            models.optimizer.step()
            models.optimizer.zero_grad()
        stats["loss"].append(float(loss.detach()))
        for key, value in parts.items():
            stats[key].append(float(value))
    return {k: float(np.mean(v)) for k, v in stats.items()}


def train(config: RLConfig, job_dir: str | Path, resume: bool = False, cache_dir: str | Path | None = None) -> Path:
    """Run (or resume) an All-but-One erasure job in `job_dir`; returns the path of the final LoRA."""
    config.validate()
    if config.train.method != "all-but-one":
        raise ValueError(f"the erase trainer runs train.method 'all-but-one', not {config.train.method!r}")
    job = JobDir(job_dir)
    with job_log(job):
        return _run(config, job, resume, Path(cache_dir or job.path / ".configs"))


def _run(config: RLConfig, job: JobDir, resume: bool, cache_dir: Path) -> Path:
    from tqdm.auto import tqdm

    total = config.train.epochs
    models = setup_models(config, cache_dir)
    acc = models.accelerator
    main = acc.is_main_process
    start, _ = begin_run(models, config, job, resume)
    prompts = erase_prompts(models, config)
    log.info(
        "erasing %s -> %s (eta %g, lambda %g)",
        prompts.concepts,
        prompts.alternatives or "no alternative",
        config.erase.eta,
        config.erase.lambda_uncond,
    )
    with StopFlag() as stop:
        snapshot = {"lora": lora_state(models), "optimizer": copy.deepcopy(models.optimizer.state_dict())}
        done = start
        try:
            for epoch in tqdm(range(start, total), initial=start, total=total, disable=not main, desc="epochs"):
                began = time.perf_counter()
                train_stats = _train_epoch(config, models, prompts, epoch, stop)
                seconds = time.perf_counter() - began
                snapshot = {"lora": lora_state(models), "optimizer": copy.deepcopy(models.optimizer.state_dict())}
                done = epoch + 1
                if main:
                    job.append_metrics(
                        {
                            "epoch": epoch,
                            **train_stats,
                            "steps_per_s": config.erase.iterations / seconds,
                            "epoch_seconds": seconds,
                            "peak_memory_mb": peak_memory_mb(acc.device),
                        }
                    )
                    save_samples(job, epoch, *_sample_images(models, config, prompts), config.train.samples_to_save)
                    end_epoch(job, snapshot, epoch, total, config.train.checkpoint_every)
                acc.wait_for_everyone()
            return finish_training(models, config, job, "all-but-one", stop)
        except TrainingCancelled:
            if main:
                mark_cancelled(job, snapshot, done, total)
            raise
