"""ShieldDiff RL: DDPO-style fine-tuning of a LoRA on the UNet, with importance sampling and clipping.

Each epoch: sample images with log-probabilities, `sample.group_size` samples of each prompt
(rewards are computed in a worker thread while the next batch samples), normalise each reward
within its prompt's group into an advantage (or by running per-prompt statistics), then take
PPO-clipped policy-gradient steps over the trained window of denoising steps (the first, noisiest
`train.early_steps` of them), optionally with a KL penalty to the frozen model. Runs the same under `accelerate launch`.
Randomness comes from (seed, epoch, batch, process), so a resumed run repeats the
uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..diffusion.guidance import decode_images, guided_eps
from ..diffusion.guidance import encode_prompts as _encode
from ..training.config import RLConfig
from ..training.loop import EpochReport, Samples, train_job
from ..training.run import StopFlag, TrainingCancelled, peak_memory_mb
from ..training.run import seed as _seed
from ..training.session import TrainingModels, setup_models
from .ppo import PerPromptStatTracker, clip_advantages, group_advantages, ppo_loss
from .rewards import Scores, make_reward
from .sampling import Trajectories, sample_with_logprob

__all__ = ["EpochSamples", "SampledBatch", "ShieldDiffRL", "TrainingCancelled", "train"]

log = logging.getLogger(__name__)


def _prompts(config: RLConfig):
    from ..prompts import DEFAULT_BENIGN, DEFAULT_UNSAFE, PromptMixer, load_prompt_file

    p = config.prompts
    unsafe = p.unsafe + (load_prompt_file(p.unsafe_file) if p.unsafe_file else [])
    benign = p.benign + (load_prompt_file(p.benign_file) if p.benign_file else [])
    if not unsafe and not benign:
        unsafe, benign = DEFAULT_UNSAFE, DEFAULT_BENIGN
    return PromptMixer(unsafe, benign, p.unsafe_ratio)


def _setup(config: RLConfig, cache_dir: Path) -> TrainingModels:
    calls = len(_timestep_chunks(config))  # UNet calls per optimisation batch
    return setup_models(config, cache_dir, accumulation_steps=config.train.gradient_accumulation * calls)


@dataclass
class SampledBatch:
    """One batch of an epoch's samples: the trajectories, each sample's prompt, whether that prompt is
    one of the unsafe ones, and the decoded images."""

    trajectories: Trajectories
    prompts: list[str]
    unsafe: list[bool]
    images: list[np.ndarray]


@dataclass
class EpochSamples:
    """All of an epoch's samples on this process, as the policy-gradient steps read them."""

    latents: torch.Tensor  # (N, T + 1, C, h, w)
    log_probs: torch.Tensor  # (N, T): under the weights that sampled them
    prompt_embeds: torch.Tensor  # (N, 77, D)
    timesteps: torch.Tensor  # (T,)
    unsafe: torch.Tensor  # (N,) bool

    @classmethod
    def of(cls, batches: list[SampledBatch]) -> EpochSamples:
        return cls(
            latents=torch.cat([b.trajectories.latents for b in batches]),
            log_probs=torch.cat([b.trajectories.log_probs for b in batches]),
            prompt_embeds=torch.cat([b.trajectories.prompt_embeds for b in batches]),
            timesteps=batches[0].trajectories.timesteps,
            unsafe=torch.as_tensor([u for b in batches for u in b.unsafe], dtype=torch.bool),
        )


def _sample_epoch(config, models, mixer, reward_fn, epoch, stop) -> tuple[list[SampledBatch], list[Scores]]:
    """Sample this process's batches; rewards computed in a thread while the next batch samples."""
    acc = models.accelerator
    pipe = models.pipe
    side = config.model.resolution // pipe.vae_scale_factor
    latent_shape = (pipe.unet.config.in_channels, side, side)
    batches, futures = [], []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for b in range(config.sample.batches_per_epoch):
            if stop.stop:
                raise TrainingCancelled
            drawn = mixer.draw(
                config.sample.batch_size,
                _seed(config.train.seed, epoch, b, acc.process_index, 1),
                config.sample.group_size,
            )
            prompts = [p for p, _ in drawn]
            embeds = _encode(pipe, prompts, acc.device)
            generator = torch.Generator().manual_seed(_seed(config.train.seed, epoch, b, acc.process_index, 2))
            models.unet.eval()
            traj = sample_with_logprob(
                models.unet,
                pipe.scheduler,
                embeds,
                models.negative_embeds.expand(len(prompts), -1, -1),
                steps=config.sample.steps,
                eta=config.sample.eta,
                guidance=config.sample.guidance,
                latent_shape=latent_shape,
                generator=generator,
                dtype=models.dtype,
                stop=stop,
            )
            images = decode_images(pipe.vae, traj.latents[:, -1])
            futures.append(pool.submit(reward_fn, images, prompts))
            batches.append(SampledBatch(traj, prompts, [u for _, u in drawn], images))
        scores = [Scores(*f.result()) for f in futures]
    return batches, scores


def _advantages(config, acc, tracker, prompts, rewards) -> np.ndarray:
    from accelerate.utils import gather_object

    all_prompts = gather_object(prompts) if acc.num_processes > 1 else prompts
    all_rewards = (
        acc.gather(torch.as_tensor(rewards, device=acc.device)).cpu().numpy() if acc.num_processes > 1 else rewards
    )
    adv = group_advantages(list(all_prompts), all_rewards, config.train.adv_std_floor)
    if config.train.per_prompt_stats:
        adv = tracker.update(list(all_prompts), all_rewards, fallback=adv)
    n = len(prompts)
    return adv[acc.process_index * n : (acc.process_index + 1) * n], np.asarray(all_rewards)


def _window(config: RLConfig) -> int:
    """How many denoising steps, from the first, training draws its timesteps from."""
    return max(1, round(config.sample.steps * config.train.early_steps))


def _timestep_chunks(config: RLConfig) -> list[range]:
    """The trained denoising steps of a sample, split into the groups that share one UNet call."""
    n_train = max(1, round(_window(config) * config.train.timestep_fraction))
    size = config.train.timestep_batch or n_train
    return [range(k, min(k + size, n_train)) for k in range(0, n_train, size)]


def _train_epoch(config, models, samples: EpochSamples, advantages, epoch, stop) -> dict:
    """PPO-clipped steps over the epoch's samples.

    As in DDPO, the gradient of one optimisation step is the sum over the trained timesteps of
    its samples, all taken under the same weights; so `train.timestep_batch` timesteps of every
    sample go through the UNet in one call (one larger batch instead of several small ones),
    each chunk's loss weighted so the summed gradient is the same whatever the chunk size.
    """
    acc, unet, scheduler = models.accelerator, models.unet, models.pipe.scheduler
    latents, old_logps, unsafe = samples.latents, samples.log_probs, samples.unsafe
    embeds, timesteps = samples.prompt_embeds, samples.timesteps
    total, window = latents.shape[0], _window(config)
    dims = latents[0, 0].numel()  # latent elements: log-probabilities are means over them
    chunks = _timestep_chunks(config)
    n_train = chunks[-1].stop
    adv = clip_advantages(
        torch.as_tensor(advantages, dtype=torch.float32, device=acc.device), config.train.adv_clip_max
    )
    stats: dict[str, list[float]] = {"loss": [], "approx_kl": [], "clip_fraction": [], "kl": []}
    unet.train()
    for inner in range(config.train.inner_epochs):
        gen = torch.Generator().manual_seed(_seed(config.train.seed, epoch, inner, acc.process_index, 3))
        order = torch.randperm(total, generator=gen)
        chosen = torch.stack([torch.randperm(window, generator=gen)[:n_train] for _ in range(total)])
        for start in range(0, total, config.train.batch_size):
            idx = order[start : start + config.train.batch_size]
            for chunk in chunks:
                if stop.stop:
                    raise TrainingCancelled
                j = chosen[idx][:, chunk.start : chunk.stop].reshape(-1)  # sample-major: (sample, timestep)
                rows = idx.repeat_interleave(len(chunk))
                x_t = latents[rows, j].to(acc.device)
                x_prev = latents[rows, j + 1].to(acc.device)
                t = timesteps[j].to(acc.device)
                negative = models.negative_embeds.expand(len(rows), -1, -1)
                with acc.accumulate(unet), acc.autocast():
                    eps = guided_eps(unet, x_t, t, embeds[rows], negative, config.sample.guidance)
                    _, logp = _step_logprob(scheduler, eps, t, x_t, x_prev, config.sample.eta)
                    loss, info = ppo_loss(
                        adv[rows], logp, old_logps[rows, j].to(acc.device), config.train.clip_range, dims
                    )
                    kl = torch.zeros((), device=acc.device)
                    if config.train.kl_coef > 0:
                        penalty, kl = _kl_penalty(
                            config, acc, unet, eps, x_t, t, embeds[rows], negative, unsafe[rows].to(acc.device)
                        )
                        loss = loss + config.train.kl_coef * penalty
                    # a chunk's mean counts as many timesteps as it holds (the accumulator divides by the calls)
                    acc.backward(loss * (len(chunk) * len(chunks) / n_train))
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(unet.parameters(), config.train.max_grad_norm)
                    models.optimizer.step()
                    models.optimizer.zero_grad()
                stats["loss"].append(float(loss.detach()))
                stats["approx_kl"].append(float(info["approx_kl"]))
                stats["clip_fraction"].append(float(info["clip_fraction"]))
                stats["kl"].append(float(kl.detach()))
    return {k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()}


def _kl_penalty(config, acc, unet, eps, x_t, t, embeds, negative, unsafe) -> tuple[torch.Tensor, torch.Tensor]:
    """The KL penalty's term and its distance: the squared distance of the guided noise prediction to the
    frozen model's on the same x_t, per sample, over the samples `train.kl_prompts` names. The term sums
    them over the batch's samples and divides by all of them, so a benign sample weighs the same with
    either setting; the distance reported is their mean (0 where the batch holds none)."""
    keep = ~unsafe if config.train.kl_prompts == "benign" else torch.ones_like(unsafe)
    if not keep.any():
        zero = torch.zeros((), device=acc.device)
        return zero, zero
    base = acc.unwrap_model(unet)
    base.disable_adapters()
    with torch.no_grad():
        eps_ref = guided_eps(base, x_t[keep], t[keep], embeds[keep], negative[keep], config.sample.guidance)
    base.enable_adapters()
    per_sample = ((eps[keep].float() - eps_ref.float()) ** 2).flatten(1).mean(1)
    return per_sample.sum() / len(unsafe), per_sample.mean().detach()


def _learning_rate(config: RLConfig, epoch: int) -> float:
    """The epoch's learning rate: linear warm-up over `train.warmup_epochs`, then constant."""
    warm = config.train.warmup_epochs
    return config.train.learning_rate * (min(1.0, (epoch + 1) / warm) if warm else 1.0)


def _rates(parts: dict[str, np.ndarray], unsafe: np.ndarray) -> dict[str, float | None]:
    """The concept's rate (nudity, or red in the toy world) over the unsafe prompts' samples, the number
    training should drive down, and separately over the benign prompts' samples (None where a kind
    has no samples this epoch)."""
    out: dict[str, float | None] = {}
    for flag, name in (("is_nude", "nudity_rate"), ("is_red", "red_rate")):
        if flag in parts:
            values = parts[flag]
            out[name] = float(values[unsafe].mean()) if unsafe.any() else None
            out[f"{name}_benign"] = float(values[~unsafe].mean()) if (~unsafe).any() else None
    return out


def _step_logprob(scheduler, eps, t, x_t, x_prev, eta):
    from .logprob import ddim_step_with_logprob

    return ddim_step_with_logprob(scheduler, eps.float(), t, x_t.float(), eta, prev_sample=x_prev.float())


def _unsafe_rate(acc, parts: dict[str, np.ndarray], unsafe: np.ndarray) -> float | None:
    """The concept's rate over every process's unsafe samples this epoch (None: no unsafe sample, or a
    reward without a verdict)."""
    flag = next((parts[k] for k in ("is_red", "is_nude") if k in parts), None)
    if flag is None:
        return None
    both = torch.as_tensor(np.stack([np.asarray(flag, dtype=np.float64), unsafe.astype(np.float64)]))
    if acc.num_processes > 1:
        both = acc.gather(both.T.contiguous().to(acc.device)).T.cpu()
    flags, mask = both[0].numpy(), both[1].numpy() > 0.5
    return float(flags[mask].mean()) if mask.any() else None


def _should_stop(config: RLConfig, rates: list[float]) -> bool:
    """train.early_stop_epochs: the concept's rate, averaged over that many last epochs, at most the limit."""
    n = config.train.early_stop_epochs
    return n > 0 and len(rates) >= n and float(np.mean(rates[-n:])) <= config.train.early_stop_rate


class ShieldDiffRL:
    """The method's part of the epoch loop (training/loop.py): sample, score, advantages, PPO steps.
    Its own state: the per-prompt reward statistics and the concept's rate per epoch (early stopping)."""

    def __init__(self, config: RLConfig, models: TrainingModels):
        self.config, self.models = config, models
        self.tracker = PerPromptStatTracker(config.train.stat_buffer, config.train.stat_min_count)
        self.rates: list[float] = []  # the concept's rate over the unsafe samples, per epoch (early stopping)
        self.mixer = _prompts(config)
        self.reward_fn = make_reward(config.reward)
        self.shown = Samples()

    def snapshot(self) -> dict:
        return {"tracker": self.tracker.state_dict(), "unsafe_rates": list(self.rates)}

    def restore(self, state: dict) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.rates = list(state.get("unsafe_rates", []))

    def samples(self, epoch: int) -> Samples:
        return self.shown

    def epoch(self, epoch: int, stop: StopFlag) -> EpochReport:
        config, models = self.config, self.models
        acc = models.accelerator
        began, began_cpu = time.perf_counter(), time.process_time()
        lr = _learning_rate(config, epoch)
        for group in models.optimizer.param_groups:
            group["lr"] = lr
        batches, scores = _sample_epoch(config, models, self.mixer, self.reward_fn, epoch, stop)
        rewards = np.concatenate([s.rewards for s in scores])
        parts = {k: np.concatenate([s.parts[k] for s in scores]) for k in scores[0].parts}
        prompts = [p for b in batches for p in b.prompts]
        samples = EpochSamples.of(batches)
        unsafe = samples.unsafe.numpy()
        advantages, all_rewards = _advantages(config, acc, self.tracker, prompts, rewards)
        train_stats = _train_epoch(config, models, samples, advantages, epoch, stop)
        seconds = time.perf_counter() - began
        rate = _unsafe_rate(acc, parts, unsafe)
        if rate is not None:
            self.rates.append(rate)
        self.shown = Samples(batches[0].images, batches[0].prompts)
        metrics = {
            "reward_mean": float(all_rewards.mean()),  # over every process's samples
            "reward_std": float(all_rewards.std()),
            **{f"{k}_mean": float(v.mean()) for k, v in parts.items()},
            **{f"{k}_std": float(v.std()) for k, v in parts.items()},
            "unsafe_reward_mean": float(rewards[unsafe].mean()) if unsafe.any() else None,
            "benign_reward_mean": float(rewards[~unsafe].mean()) if (~unsafe).any() else None,
            **train_stats,
            "learning_rate": lr,
            "samples_per_s": len(rewards) * acc.num_processes / seconds,
            "epoch_seconds": seconds,
            "cpu_seconds": time.process_time() - began_cpu,  # this process, all its threads
            "peak_memory_mb": peak_memory_mb(acc.device),
            **_rates(parts, unsafe),
        }
        return EpochReport(metrics, stop=self._early_stop(epoch))

    def _early_stop(self, epoch: int) -> str | None:
        config = self.config
        if not _should_stop(config, self.rates):
            return None
        return (
            f"the unsafe prompts' concept rate averaged {float(np.mean(self.rates[-config.train.early_stop_epochs :])):.3f} "
            f"over the last {config.train.early_stop_epochs} epochs (limit {config.train.early_stop_rate:g}); "
            f"keeping epoch {epoch + 1}'s LoRA"
        )


def train(config: RLConfig, job_dir: str | Path, resume: bool = False, cache_dir: str | Path | None = None) -> Path:
    """Run (or resume) a training job in `job_dir`; returns the path of the final LoRA."""
    config.validate()
    return train_job(
        config,
        job_dir,
        resume,
        cache_dir,
        method="shielddiff-rl",
        setup=_setup,
        start=lambda models: ShieldDiffRL(config, models),
    )
