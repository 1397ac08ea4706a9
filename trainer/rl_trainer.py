"""ShieldDiff RL: DDPO-style fine-tuning of a LoRA on the UNet, with importance sampling and clipping.

Each epoch: sample images with log-probabilities (rewards are computed in a worker thread
while the next batch samples), normalise rewards into advantages (per prompt, with a batch
fallback), then take PPO-clipped policy-gradient steps over the recorded denoising steps,
optionally with a KL penalty to the frozen model. Runs the same under `accelerate launch`.
Randomness comes from (seed, epoch, batch, process), so a resumed run repeats the
uninterrupted one.
"""

from __future__ import annotations

import logging
import resource
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic_files import atomic_write_bytes, atomic_write_text
from .job import JobDir
from .ppo import PerPromptStatTracker, clip_advantages, ppo_loss
from .rl_config import RLConfig, config_to_dict, to_toml
from .rl_rewards import make_reward
from .rl_sampling import decode_images, guided_eps, sample_with_logprob

__all__ = ["TrainingCancelled", "train"]

log = logging.getLogger(__name__)


class TrainingCancelled(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM arrived; the last complete state was checkpointed and the job marked cancelled."""


def _seed(*parts: int) -> int:
    value = 0x5EED
    for p in parts:
        value = (value * 1_000_003 + int(p)) % (2**63 - 1)
    return value


@dataclass
class _Models:
    pipe: object
    unet: torch.nn.Module
    optimizer: torch.optim.Optimizer
    accelerator: object
    negative_embeds: torch.Tensor
    dtype: torch.dtype


class _StopFlag:
    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handle(self, *_):
        log.warning("SIGTERM received: stopping at the next safe point")
        self.stop = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _prompts(config: RLConfig):
    from .prompts import DEFAULT_BENIGN, DEFAULT_UNSAFE, PromptMixer, load_prompt_file

    p = config.prompts
    unsafe = p.unsafe + (load_prompt_file(p.unsafe_file) if p.unsafe_file else [])
    benign = p.benign + (load_prompt_file(p.benign_file) if p.benign_file else [])
    if not unsafe and not benign:
        unsafe, benign = DEFAULT_UNSAFE, DEFAULT_BENIGN
    return PromptMixer(unsafe, benign, p.unsafe_ratio)


def _setup(config: RLConfig, cache_dir: Path) -> _Models:
    from accelerate import Accelerator
    from diffusers import DDIMScheduler
    from peft import LoraConfig

    from .models import load_pipeline

    steps = max(1, round(config.sample.steps * config.train.timestep_fraction))
    accelerator = Accelerator(
        mixed_precision=config.model.mixed_precision,
        gradient_accumulation_steps=config.train.gradient_accumulation * steps,
    )
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.model.mixed_precision, torch.float32)
    pipe = load_pipeline(config.model.checkpoint, cache_dir=cache_dir)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.requires_grad_(False)
        module.to(accelerator.device, dtype)
    unet = pipe.unet
    torch.manual_seed(_seed(config.train.seed, 0))  # the LoRA's random init: the same for every process and run
    unet.add_adapter(
        LoraConfig(
            r=config.lora.rank,
            lora_alpha=config.lora.alpha,
            init_lora_weights="gaussian",
            target_modules=list(config.lora.targets),
        )
    )
    trainable = [p for p in unet.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()  # LoRA parameters train in fp32
    if config.model.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(trainable, lr=config.train.learning_rate)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    negative = _encode(pipe, [""], accelerator.device)
    return _Models(pipe, unet, optimizer, accelerator, negative, dtype)


@torch.no_grad()
def _encode(pipe, prompts: list[str], device) -> torch.Tensor:
    ids = pipe.tokenizer(
        prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
    return pipe.text_encoder(ids)[0]


def _lora_state(models: _Models) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    unet = models.accelerator.unwrap_model(models.unet)
    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(unet).items()}


def _load_lora_state(models: _Models, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    set_peft_model_state_dict(models.accelerator.unwrap_model(models.unet), state)


def _to_lora_file(state: dict[str, torch.Tensor], config: RLConfig):
    from .lora_formats import LoraFile, LoraModule

    modules: dict = {}
    for key, tensor in state.items():
        for tag, slot in ((".lora_A.weight", "down"), (".lora_B.weight", "up")):
            if key.endswith(tag):
                path = key[: -len(tag)]
                module = modules.setdefault(
                    ("unet", path), LoraModule(None, None, torch.tensor(float(config.lora.alpha)))
                )
                setattr(module, slot, tensor.float().contiguous())
    return LoraFile(modules=modules, family="sd15")


def _fingerprint(state: dict[str, torch.Tensor]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _save_checkpoint(job: JobDir, snapshot: dict, epochs_done: int) -> Path:
    from safetensors.torch import save_file

    staging = job.begin_checkpoint()
    save_file(snapshot["lora"], str(staging / "lora.safetensors"))
    torch.save(snapshot["optimizer"], staging / "optimizer.pt")
    torch.save({"tracker": snapshot["tracker"], "epochs_done": epochs_done}, staging / "trainer_state.pt")
    return job.commit_checkpoint(staging, epochs_done)


def _load_checkpoint(path: Path) -> dict:
    from safetensors.torch import load_file

    state = torch.load(path / "trainer_state.pt", weights_only=True)
    return {
        "lora": load_file(str(path / "lora.safetensors")),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True),
        "tracker": state["tracker"],
        "epochs_done": int(state["epochs_done"]),
    }


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save_samples(job: JobDir, epoch: int, images: list[np.ndarray], prompts: list[str], count: int) -> None:
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    for i, (image, prompt) in enumerate(zip(images[:count], prompts, strict=False)):
        buf = io.BytesIO()
        info = PngInfo()
        info.add_text("prompt", prompt)
        Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
        atomic_write_bytes(job.path / "samples" / f"epoch-{epoch:04d}-{i:02d}.png", buf.getvalue())


def _sample_epoch(config, models, mixer, reward_fn, epoch, stop):
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
            drawn = mixer.draw(config.sample.batch_size, _seed(config.train.seed, epoch, b, acc.process_index, 1))
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
            )
            images = decode_images(pipe.vae, traj.latents[:, -1])
            futures.append(pool.submit(reward_fn, images, prompts))
            batches.append((traj, prompts, [u for _, u in drawn], images))
        results = [f.result() for f in futures]
    return batches, results


def _advantages(config, acc, tracker, prompts, rewards) -> np.ndarray:
    from accelerate.utils import gather_object

    all_prompts = gather_object(prompts) if acc.num_processes > 1 else prompts
    all_rewards = (
        acc.gather(torch.as_tensor(rewards, device=acc.device)).cpu().numpy() if acc.num_processes > 1 else rewards
    )
    if config.train.per_prompt_stats:
        adv = tracker.update(list(all_prompts), all_rewards)
    else:
        adv = (all_rewards - all_rewards.mean()) / (all_rewards.std() + 1e-6)
    n = len(prompts)
    return adv[acc.process_index * n : (acc.process_index + 1) * n], np.asarray(all_rewards)


def _train_epoch(config, models, samples, advantages, epoch, stop) -> dict:
    acc, unet, scheduler = models.accelerator, models.unet, models.pipe.scheduler
    latents, old_logps = samples["latents"], samples["log_probs"]
    embeds, timesteps = samples["prompt_embeds"], samples["timesteps"]
    total, steps = latents.shape[0], timesteps.shape[0]
    n_train = max(1, round(steps * config.train.timestep_fraction))
    adv = clip_advantages(
        torch.as_tensor(advantages, dtype=torch.float32, device=acc.device), config.train.adv_clip_max
    )
    stats: dict[str, list[float]] = {"loss": [], "approx_kl": [], "clip_fraction": [], "kl": []}
    unet.train()
    for inner in range(config.train.inner_epochs):
        gen = torch.Generator().manual_seed(_seed(config.train.seed, epoch, inner, acc.process_index, 3))
        order = torch.randperm(total, generator=gen)
        chosen = torch.stack([torch.randperm(steps, generator=gen)[:n_train] for _ in range(total)])
        for start in range(0, total, config.train.batch_size):
            idx = order[start : start + config.train.batch_size]
            negative = models.negative_embeds.expand(len(idx), -1, -1)
            for k in range(n_train):
                if stop.stop:
                    raise TrainingCancelled
                j = chosen[idx, k]
                x_t = latents[idx, j].to(acc.device)
                x_prev = latents[idx, j + 1].to(acc.device)
                t = timesteps[j].to(acc.device)
                with acc.accumulate(unet), acc.autocast():
                    eps = guided_eps(unet, x_t, t, embeds[idx], negative, config.sample.guidance)
                    _, logp = _step_logprob(scheduler, eps, t, x_t, x_prev, config.sample.eta)
                    loss, info = ppo_loss(adv[idx], logp, old_logps[idx, j].to(acc.device), config.train.clip_range)
                    kl = torch.zeros((), device=acc.device)
                    if config.train.kl_coef > 0:
                        base = acc.unwrap_model(unet)
                        base.disable_adapters()
                        with torch.no_grad():
                            eps_ref = guided_eps(base, x_t, t, embeds[idx], negative, config.sample.guidance)
                        base.enable_adapters()
                        kl = ((eps.float() - eps_ref.float()) ** 2).mean()
                        loss = loss + config.train.kl_coef * kl
                    acc.backward(loss)
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(unet.parameters(), config.train.max_grad_norm)
                    models.optimizer.step()
                    models.optimizer.zero_grad()
                stats["loss"].append(float(loss.detach()))
                stats["approx_kl"].append(float(info["approx_kl"]))
                stats["clip_fraction"].append(float(info["clip_fraction"]))
                stats["kl"].append(float(kl.detach()))
    return {k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()}


def _step_logprob(scheduler, eps, t, x_t, x_prev, eta):
    from .ddim_logprob import ddim_step_with_logprob

    return ddim_step_with_logprob(scheduler, eps.float(), t, x_t.float(), eta, prev_sample=x_prev.float())


def _snapshot(models: _Models, tracker: PerPromptStatTracker) -> dict:
    import copy

    return {
        "lora": _lora_state(models),
        "optimizer": copy.deepcopy(models.optimizer.state_dict()),
        "tracker": tracker.state_dict(),
    }


def train(config: RLConfig, job_dir: str | Path, resume: bool = False, cache_dir: str | Path | None = None) -> Path:
    """Run (or resume) a training job in `job_dir`; returns the path of the final LoRA."""
    config.validate()
    job = JobDir(job_dir)
    handler = logging.FileHandler(job.path / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        return _run(config, job, resume, Path(cache_dir or job.path / ".configs"))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run(config: RLConfig, job: JobDir, resume: bool, cache_dir: Path) -> Path:
    from tqdm.auto import tqdm

    from .lora_formats import shielddiff_metadata, write_lora
    from .models import file_hash

    total = config.train.epochs
    models = _setup(config, cache_dir)
    acc = models.accelerator
    main = acc.is_main_process
    if main:
        atomic_write_text(job.path / "config.toml", to_toml(config))
        job.write_status("running", epoch=0, total=total, message="loading")
    tracker = PerPromptStatTracker(config.train.stat_buffer, config.train.stat_min_count)
    start = 0
    if resume and job.latest_checkpoint() is not None:
        state = _load_checkpoint(job.latest_checkpoint())
        _load_lora_state(models, state["lora"])
        models.optimizer.load_state_dict(state["optimizer"])
        tracker.load_state_dict(state["tracker"])
        start = state["epochs_done"]
        if main:
            job.truncate_metrics(start)
        log.info("resuming after epoch %d from %s", start, job.latest_checkpoint())
    mixer = _prompts(config)
    reward_fn = make_reward(config.reward)
    with _StopFlag() as stop:
        snapshot, done = _snapshot(models, tracker), start
        try:
            for epoch in tqdm(range(start, total), initial=start, total=total, disable=not main, desc="epochs"):
                began = time.perf_counter()
                batches, results = _sample_epoch(config, models, mixer, reward_fn, epoch, stop)
                rewards = np.concatenate([r for r, _ in results])
                parts = {k: np.concatenate([p[k] for _, p in results]) for k in results[0][1]}
                prompts = [p for _, ps, _, _ in batches for p in ps]
                unsafe = np.array([u for _, _, us, _ in batches for u in us])
                samples = {
                    "latents": torch.cat([b[0].latents for b in batches]),
                    "log_probs": torch.cat([b[0].log_probs for b in batches]),
                    "prompt_embeds": torch.cat([b[0].prompt_embeds for b in batches]),
                    "timesteps": batches[0][0].timesteps,
                }
                advantages, all_rewards = _advantages(config, acc, tracker, prompts, rewards)
                train_stats = _train_epoch(config, models, samples, advantages, epoch, stop)
                seconds = time.perf_counter() - began
                snapshot, done = _snapshot(models, tracker), epoch + 1
                if main:
                    metrics = {
                        "epoch": epoch,
                        "reward_mean": float(all_rewards.mean()),  # over every process's samples
                        "reward_std": float(all_rewards.std()),
                        **{f"{k}_mean": float(v.mean()) for k, v in parts.items()},
                        **{f"{k}_std": float(v.std()) for k, v in parts.items()},
                        "unsafe_reward_mean": float(rewards[unsafe].mean()) if unsafe.any() else None,
                        "benign_reward_mean": float(rewards[~unsafe].mean()) if (~unsafe).any() else None,
                        **train_stats,
                        "samples_per_s": len(rewards) * acc.num_processes / seconds,
                        "epoch_seconds": seconds,
                        "peak_memory_mb": _peak_memory_mb(acc.device),
                    }
                    if "is_nude" in parts:
                        metrics["nudity_rate"] = float(parts["is_nude"].mean())
                    if "is_red" in parts:  # the toy world's stand-in for the nudity rate
                        metrics["red_rate"] = float(parts["is_red"].mean())
                    job.append_metrics(metrics)
                    _save_samples(job, epoch, batches[0][3], batches[0][1], config.train.samples_to_save)
                    if (epoch + 1) % config.train.checkpoint_every == 0 or epoch + 1 == total:
                        _save_checkpoint(job, snapshot, epoch + 1)
                    job.write_status("running", epoch=epoch + 1, total=total, message=f"epoch {epoch + 1} of {total}")
                acc.wait_for_everyone()
        except TrainingCancelled:
            if main:
                _save_checkpoint(job, snapshot, done)
                job.write_status("cancelled", epoch=done, total=total, message=f"cancelled after epoch {done}")
            raise
    lora_path = Path(config.output.lora_path) if config.output.lora_path else job.path / "lora.safetensors"
    final_state = _lora_state(models)
    log.info("process %d of %d: LoRA sha256 %s", acc.process_index, acc.num_processes, _fingerprint(final_state))
    if main:
        history = job.read_metrics()
        summary = {"epochs": total, "final": history[-1] if history else {}, "first": history[0] if history else {}}
        checkpoint = Path(config.model.checkpoint)
        meta = shielddiff_metadata(
            "shielddiff-rl",
            checkpoint.name,
            file_hash(checkpoint) if checkpoint.is_file() else "folder",
            config_to_dict(config),
            summary,
        )
        lora = _to_lora_file(final_state, config)
        write_lora(lora, lora_path, "kohya", metadata=meta)
        if config.output.diffusers_copy:
            write_lora(lora, lora_path.with_name(lora_path.stem + ".diffusers.safetensors"), "diffusers", metadata=meta)
        job.write_status("done", epoch=total, total=total, message=f"wrote {lora_path.name}", lora=str(lora_path))
    acc.wait_for_everyone()
    return lora_path
