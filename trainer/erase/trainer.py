"""All-but-One concept erasure: fine-tune a LoRA so the concept's guidance becomes the alternative's.

Each optimisation step draws a batch of x_t from trajectories for the concept (deterministic DDIM
with classifier-free guidance on a concept prompt, stopped at a random step, as ESD does), drawn
by the frozen model or, with `erase.trajectory = "tuned"`, by the model being trained (ESD's
reference code does the latter), builds the target from the frozen model (objective.py) and
takes one AdamW step on the LoRA. With `erase.preserve` prompts, the same draw also makes x_t on
their trajectories, and a preservation term holds the tuned model's prediction for them to the
frozen model's. With `erase.early_stop_drift`, each epoch measures how far the prediction for
held-out preservation prompts has moved (relative to their guidance) on fixed x_t, and the run
stops with the last epoch's LoRA under the limit. The job directory, checkpoints, SIGTERM and `--resume`
behave as for the RL trainer (the same code: training/loop.py, run.py and session.py).
Randomness comes from (seed, epoch, step, process), so a resumed run repeats the
uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..diffusion.guidance import decode_images, encode_prompts, guided_eps
from ..training.config import RLConfig
from ..training.loop import EpochReport, Samples, train_job
from ..training.run import StopFlag, TrainingCancelled, peak_memory_mb, seed
from ..training.session import TrainingModels, frozen, setup_models
from .objective import erase_loss, erase_target

__all__ = [
    "AllButOne",
    "EraseBatch",
    "ErasePrompts",
    "draw_batch",
    "draw_latents",
    "erase_prompts",
    "erase_step_loss",
    "frozen_latents",
    "preservation_drift",
    "train",
    "trajectory_latents",
]

log = logging.getLogger(__name__)


@dataclass
class ErasePrompts:
    concepts: list[str]
    alternatives: list[str] | None  # paired with concepts (one alternative is repeated); None: no alternative
    concept_embeds: torch.Tensor  # (n, 77, D)
    alternative_embeds: torch.Tensor | None  # (n, 77, D)
    preserve_embeds: torch.Tensor | None = None  # (m, 77, D): erase.preserve
    heldout_embeds: torch.Tensor | None = None  # (k, 77, D): erase.preserve_heldout, or erase.preserve


def erase_prompts(models: TrainingModels, config: RLConfig) -> ErasePrompts:
    e = config.erase
    concepts = list(e.concepts)
    alternatives = list(e.alternatives)
    if len(alternatives) == 1:
        alternatives = alternatives * len(concepts)
    device = models.accelerator.device
    heldout = list(e.preserve_heldout or e.preserve)
    return ErasePrompts(
        concepts,
        alternatives or None,
        encode_prompts(models.pipe, concepts, device),
        encode_prompts(models.pipe, alternatives, device) if alternatives else None,
        encode_prompts(models.pipe, list(e.preserve), device) if e.preserve else None,
        encode_prompts(models.pipe, heldout, device) if heldout else None,
    )


@dataclass
class EraseBatch:
    x_t: torch.Tensor  # (b, C, H, W) on trajectories of the concept prompts `index`
    t: torch.Tensor
    index: torch.Tensor
    x_p: torch.Tensor | None = None  # on trajectories of the preservation prompts `p_index`
    p_index: torch.Tensor | None = None


def _latent_shape(models: TrainingModels, resolution: int) -> tuple[int, int, int]:
    side = resolution // models.pipe.vae_scale_factor
    return (models.pipe.unet.config.in_channels, side, side)


@torch.no_grad()
def trajectory_latents(
    models: TrainingModels,
    embeds: torch.Tensor,
    *,
    stop_at: int,
    steps: int,
    guidance: float,
    latent_shape: tuple[int, int, int],
    generator: torch.Generator,
    stop: StopFlag | None = None,
    tuned: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t after `stop_at` of `steps` deterministic DDIM steps on `embeds`, and t: drawn by the frozen
    model, or with `tuned` by the model being trained (its LoRA on, as ESD samples)."""
    scheduler = models.pipe.scheduler
    device = embeds.device
    scheduler.set_timesteps(steps, device=device)
    b = embeds.shape[0]
    x = torch.randn((b, *latent_shape), generator=generator, dtype=torch.float32).to(device, models.dtype)
    x = x * scheduler.init_noise_sigma
    negative = models.negative_embeds.expand(b, -1, -1)

    def walk(unet):
        nonlocal x
        for t in scheduler.timesteps[:stop_at]:
            if stop is not None and stop.stop:
                raise TrainingCancelled
            eps = guided_eps(unet, x, t, embeds, negative, guidance)
            x = scheduler.step(eps.to(x.dtype), t, x, eta=0.0).prev_sample

    if tuned:
        models.unet.eval()
        walk(models.unet)
    else:
        with frozen(models) as unet:
            walk(unet)
    return x, scheduler.timesteps[stop_at].clone()


def frozen_latents(models: TrainingModels, concept_embeds: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t on the frozen model's trajectory (trajectory_latents with tuned=False)."""
    return trajectory_latents(models, concept_embeds, tuned=False, **kwargs)


def _preserve_batch(config: RLConfig) -> int:
    return config.erase.preserve_batch or config.train.batch_size


def draw_batch(
    models: TrainingModels, config: RLConfig, prompts: ErasePrompts, *parts: int, stop: StopFlag | None = None
) -> EraseBatch:
    """x_t for seed parts (epoch, step): concept prompts (and preservation prompts) and the stop step drawn
    at random; one DDIM walk of the model `erase.trajectory` names makes both."""
    e = config.erase
    generator = torch.Generator().manual_seed(seed(config.train.seed, *parts, models.accelerator.process_index, 5))
    index = torch.randint(len(prompts.concepts), (config.train.batch_size,), generator=generator)
    stop_at = int(torch.randint(e.steps, (1,), generator=generator))
    embeds = prompts.concept_embeds[index]
    p_index = None
    if prompts.preserve_embeds is not None and e.preserve_weight > 0:
        p_index = torch.randint(len(prompts.preserve_embeds), (_preserve_batch(config),), generator=generator)
        embeds = torch.cat([embeds, prompts.preserve_embeds[p_index]])
    x, t = trajectory_latents(
        models,
        embeds,
        stop_at=stop_at,
        steps=e.steps,
        guidance=e.guidance,
        latent_shape=_latent_shape(models, config.model.resolution),
        generator=generator,
        stop=stop,
        tuned=e.trajectory == "tuned",
    )
    b = len(index)
    if p_index is None:
        return EraseBatch(x, t, index)
    return EraseBatch(x[:b], t, index, x[b:], p_index)


def draw_latents(
    models: TrainingModels, config: RLConfig, prompts: ErasePrompts, *parts: int, stop: StopFlag | None = None
):
    """(x_t, t, concept index) of draw_batch: the concept's part of the batch."""
    batch = draw_batch(models, config, prompts, *parts, stop=stop)
    return batch.x_t, batch.t, batch.index


def erase_step_loss(
    models: TrainingModels,
    config: RLConfig,
    prompts: ErasePrompts,
    x_t: torch.Tensor,
    t,
    index: torch.Tensor,
    preserve: tuple[torch.Tensor, torch.Tensor] | None = None,
):
    """The objective on one batch: (loss with gradients into the LoRA, detached parts). `preserve`:
    (x_p, preservation prompt index) for the preservation term, weighted by erase.preserve_weight."""
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
    latents = [x_t] * len(conds)
    keep = preserve is not None and e.preserve_weight > 0
    if keep:
        x_p, p_index = preserve
        kept = prompts.preserve_embeds[p_index]
        latents.append(x_p)
        conds.append(kept)
    with torch.no_grad(), frozen(models) as base:
        out = base(torch.cat(latents), t, encoder_hidden_states=torch.cat(conds)).sample
    eps_empty = out[:b]
    eps_alternative = out[b : 2 * b] if alternative is not None else None
    eps_concept = out[b : 2 * b] if alternative is None and e.eta < 0 else None
    target = erase_target(eps_empty, eps_alternative, eps_concept, e.eta)
    tuned_in, tuned_conds = [x_t, x_t], [concept, negative]
    if keep:
        tuned_in.append(x_p)
        tuned_conds.append(kept)
    tuned = models.unet(torch.cat(tuned_in), t, encoder_hidden_states=torch.cat(tuned_conds)).sample
    tuned_concept, tuned_empty = tuned[:b], tuned[b : 2 * b]
    loss, parts = erase_loss(tuned_concept, target, tuned_empty, eps_empty, e.lambda_uncond)
    if keep:
        held = ((tuned[2 * b :].float() - out[-x_p.shape[0] :].float()) ** 2).mean()
        loss = loss + e.preserve_weight * held
        parts["loss_preserve"] = held.detach()
    return loss, parts


class HeldoutProbe:
    """Fixed x_t on the frozen model's trajectories of the held-out preservation prompts (halfway down),
    and the frozen model's predictions there: `drift(models)` is the rms of eps(x, p) - eps*(x, p) over
    the rms of the frozen guidance eps*(x, p) - eps*(x, '')."""

    def __init__(self, models: TrainingModels, config: RLConfig, embeds: torch.Tensor):
        e = config.erase
        self.embeds = embeds[:64]
        generator = torch.Generator().manual_seed(seed(config.train.seed, 11))
        self.x, self.t = trajectory_latents(
            models,
            self.embeds,
            stop_at=e.steps // 2,
            steps=e.steps,
            guidance=e.guidance,
            latent_shape=_latent_shape(models, config.model.resolution),
            generator=generator,
        )
        b = self.x.shape[0]
        with torch.no_grad(), frozen(models) as base:
            out = base(
                torch.cat([self.x, self.x]),
                self.t,
                encoder_hidden_states=torch.cat([self.embeds, models.negative_embeds.expand(b, -1, -1)]),
            ).sample.float()
        self.frozen = out[:b]
        self.scale = float(((out[:b] - out[b:]) ** 2).mean().sqrt())

    @torch.no_grad()
    def drift(self, models: TrainingModels) -> float:
        models.unet.eval()
        tuned = models.unet(self.x, self.t, encoder_hidden_states=self.embeds).sample.float()
        return float(((tuned - self.frozen) ** 2).mean().sqrt()) / max(self.scale, 1e-12)


def preservation_drift(models: TrainingModels, config: RLConfig, prompts: ErasePrompts) -> float | None:
    """The held-out preservation measure of early stopping for the LoRA as it is now (None without prompts)."""
    if prompts.heldout_embeds is None:
        return None
    return HeldoutProbe(models, config, prompts.heldout_embeds).drift(models)


@torch.no_grad()
def _sample_images(models: TrainingModels, config: RLConfig, prompts: ErasePrompts) -> Samples:
    """Images of the concept prompts with the current LoRA, from the same noise every epoch."""
    count = config.train.samples_to_save
    if count < 1:
        return Samples()
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
    return Samples(decode_images(models.pipe.vae, x), [prompts.concepts[i] for i in chosen])


def _train_epoch(config, models, prompts, epoch, stop) -> dict:
    acc, unet = models.accelerator, models.unet
    stats: dict[str, list[float]] = {"loss": [], "loss_erase": [], "loss_uncond": []}
    for step in range(config.erase.iterations):
        if stop.stop:
            raise TrainingCancelled
        batch = draw_batch(models, config, prompts, epoch, step, stop=stop)
        preserve = (batch.x_p, batch.p_index) if batch.x_p is not None else None
        unet.train()
        with acc.accumulate(unet), acc.autocast():
            loss, parts = erase_step_loss(models, config, prompts, batch.x_t, batch.t, batch.index, preserve)
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(unet.parameters(), config.train.max_grad_norm)
            models.optimizer.step()
            models.optimizer.zero_grad()
        stats["loss"].append(float(loss.detach()))
        for key, value in parts.items():
            stats.setdefault(key, []).append(float(value))
    return {k: float(np.mean(v)) for k, v in stats.items()}


class AllButOne:
    """The method's part of the epoch loop (training/loop.py): `erase.iterations` steps on drawn x_t, then
    the held-out preservation drift (early stopping). It keeps no state of its own between epochs."""

    def __init__(self, config: RLConfig, models: TrainingModels):
        self.config, self.models = config, models
        self.prompts = erase_prompts(models, config)
        e = config.erase
        log.info(
            "erasing %d concept prompt(s) -> %s (eta %g, lambda %g, %d preservation prompt(s) at weight %g, "
            "x_t from the %s model)",
            len(self.prompts.concepts),
            f"{len(self.prompts.alternatives)} alternative(s)" if self.prompts.alternatives else "no alternative",
            e.eta,
            e.lambda_uncond,
            len(e.preserve),
            e.preserve_weight,
            e.trajectory,
        )
        heldout = self.prompts.heldout_embeds
        self.probe = HeldoutProbe(models, config, heldout) if heldout is not None else None

    def snapshot(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def samples(self, epoch: int) -> Samples:
        return _sample_images(self.models, self.config, self.prompts)

    def epoch(self, epoch: int, stop: StopFlag) -> EpochReport:
        config, models, e = self.config, self.models, self.config.erase
        began = time.perf_counter()
        train_stats = _train_epoch(config, models, self.prompts, epoch, stop)
        seconds = time.perf_counter() - began
        drift = self.probe.drift(models) if self.probe is not None else None
        if e.early_stop_drift and drift is not None and drift > e.early_stop_drift:
            return EpochReport(
                {**train_stats, "preserve_drift": drift, "early_stop": True},
                undo=f"held-out preservation drift {drift:.4f} > {e.early_stop_drift:g} after epoch {epoch + 1}; "
                f"keeping epoch {epoch}'s LoRA",
            )
        return EpochReport(
            {
                **train_stats,
                **({"preserve_drift": drift} if drift is not None else {}),
                "steps_per_s": e.iterations / seconds,
                "epoch_seconds": seconds,
                "peak_memory_mb": peak_memory_mb(models.accelerator.device),
            }
        )


def train(config: RLConfig, job_dir: str | Path, resume: bool = False, cache_dir: str | Path | None = None) -> Path:
    """Run (or resume) an All-but-One erasure job in `job_dir`; returns the path of the final LoRA."""
    config.validate()
    if config.train.method != "all-but-one":
        raise ValueError(f"the erase trainer runs train.method 'all-but-one', not {config.train.method!r}")
    return train_job(
        config,
        job_dir,
        resume,
        cache_dir,
        method="all-but-one",
        setup=setup_models,
        start=lambda models: AllButOne(config, models),
    )
