"""What every training method shares about the model: the frozen SD pipeline with a trainable
peft LoRA on the UNet, text encoding, the LoRA's state, and the final kohya LoRA file.

Only the LoRA trains (in fp32); the VAE, the text encoder and the UNet's own weights stay
frozen, so `unet.disable_adapters()` gives back the frozen model exactly.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..diffusion.guidance import encode_prompts
from .run import TrainingCancelled, seed

__all__ = [
    "TrainingModels",
    "begin_run",
    "finish_training",
    "frozen",
    "lora_file_from_state",
    "lora_fingerprint",
    "lora_state",
    "set_lora_state",
    "setup_models",
    "write_trained_lora",
]

log = logging.getLogger(__name__)


@dataclass
class TrainingModels:
    pipe: object
    unet: torch.nn.Module  # with the LoRA; prepared by accelerate
    optimizer: torch.optim.Optimizer
    accelerator: object
    negative_embeds: torch.Tensor  # the empty prompt's embedding, (1, 77, D)
    dtype: torch.dtype


def setup_models(config, cache_dir: Path, accumulation_steps: int = 1) -> TrainingModels:
    """Load `config.model.checkpoint` (frozen, DDIM scheduler), add the LoRA `config.lora`, an AdamW over it."""
    from accelerate import Accelerator
    from diffusers import DDIMScheduler
    from peft import LoraConfig

    from ..diffusion.loading import load_pipeline
    from ..diffusion.sdxl import is_sdxl, unpack_conditioning_in

    accelerator = Accelerator(
        mixed_precision=config.model.mixed_precision, gradient_accumulation_steps=accumulation_steps
    )
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.model.mixed_precision, torch.float32)
    pipe = load_pipeline(config.model.checkpoint, cache_dir=cache_dir)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None), pipe.unet):
        if module is not None:
            module.requires_grad_(False)
            module.to(accelerator.device, dtype)
    unet = pipe.unet
    if is_sdxl(pipe):  # the trainers pass SDXL's pooled conditioning packed into the embeddings
        unpack_conditioning_in(unet, pipe.text_encoder_2.config.projection_dim, pipe.vae_scale_factor)
    torch.manual_seed(seed(config.train.seed, 0))  # the LoRA's random init: the same for every process and run
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
    negative = encode_prompts(pipe, [""], accelerator.device)
    return TrainingModels(pipe, unet, optimizer, accelerator, negative, dtype)


class frozen:  # noqa: N801 - used as a context manager, reads as a phrase
    """`with frozen(models) as unet:` the UNet with its LoRA switched off (the frozen base model)."""

    def __init__(self, models: TrainingModels):
        self.unet = models.accelerator.unwrap_model(models.unet)

    def __enter__(self):
        self.unet.disable_adapters()
        return self.unet

    def __exit__(self, *exc):
        self.unet.enable_adapters()


def lora_state(models: TrainingModels) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    unet = models.accelerator.unwrap_model(models.unet)
    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(unet).items()}


def set_lora_state(models: TrainingModels, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    set_peft_model_state_dict(models.accelerator.unwrap_model(models.unet), state)


def lora_file_from_state(state: dict[str, torch.Tensor], alpha: float, family: str = "sd15"):
    from ..lora.formats import LoraFile, LoraModule

    modules: dict = {}
    for key, tensor in state.items():
        for tag, slot in ((".lora_A.weight", "down"), (".lora_B.weight", "up")):
            if key.endswith(tag):
                path = key[: -len(tag)]
                module = modules.setdefault(("unet", path), LoraModule(None, None, torch.tensor(float(alpha))))
                setattr(module, slot, tensor.float().contiguous())
    return LoraFile(modules=modules, family=family)


def lora_fingerprint(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].float().numpy().tobytes())
    return digest.hexdigest()[:16]


def write_trained_lora(
    state: dict[str, torch.Tensor], config, method: str, config_dict: dict, summary: dict, path: Path
) -> Path:
    """The kohya LoRA with `shielddiff.*` metadata (and a diffusers copy when `output.diffusers_copy`)."""
    from ..diffusion.loading import file_hash
    from ..lora.formats import shielddiff_metadata, write_lora

    checkpoint = Path(config.model.checkpoint)
    meta = shielddiff_metadata(
        method,
        checkpoint.name,
        file_hash(checkpoint) if checkpoint.is_file() else "folder",
        config_dict,
        summary,
    )
    from ..diffusion.family import checkpoint_family

    family = checkpoint_family(checkpoint).key  # sdxl: lora_te1_/lora_te2_ naming, ss_base_model_version
    lora = lora_file_from_state(state, config.lora.alpha, family if family == "sdxl" else "sd15")
    write_lora(lora, path, "kohya", metadata=meta)
    if config.output.diffusers_copy:
        write_lora(lora, path.with_name(path.stem + ".diffusers.safetensors"), "diffusers", metadata=meta)
    return path


def finish_training(models: TrainingModels, config, job, method: str, stop=None) -> Path:
    """The end of a run: every process logs its LoRA's fingerprint (they must agree); the main process
    writes the LoRA with the run's summary and marks the job done. A stop request (`stop`, a StopFlag)
    that came in before the LoRA is written raises TrainingCancelled instead: a cancelled job writes
    no LoRA."""
    from .config import config_to_dict

    acc = models.accelerator
    path = Path(config.output.lora_path) if config.output.lora_path else job.lora_path
    state = lora_state(models)
    log.info("process %d of %d: LoRA sha256 %s", acc.process_index, acc.num_processes, lora_fingerprint(state))
    _stop_requested(stop)
    if acc.is_main_process:
        history = job.read_metrics()
        total = config.train.epochs
        summary = {"epochs": total, "final": history[-1] if history else {}, "first": history[0] if history else {}}
        write_trained_lora(state, config, method, config_to_dict(config), summary, path)
        if stop is not None and stop.stop:  # came in while the file was written: take it back
            path.unlink(missing_ok=True)
            path.with_name(path.stem + ".diffusers.safetensors").unlink(missing_ok=True)
            _stop_requested(stop)
        job.write_trained(epoch=total, total=total, message=f"wrote {path.name}", lora=str(path))
    acc.wait_for_everyone()
    return path


def _stop_requested(stop) -> None:
    if stop is not None and stop.stop:
        log.warning("stop requested at the end of the run: the LoRA is not written")
        raise TrainingCancelled


def begin_run(models: TrainingModels, config, job, resume: bool) -> tuple[int, dict]:
    """The start of a run: the resolved config and the "loading" status in the job directory, and with
    `resume` the last checkpoint's LoRA and optimizer state loaded. Returns (epochs already done, the
    method's own saved state, empty when starting fresh)."""
    from ..files import atomic_write_text
    from .config import to_toml
    from .run import load_checkpoint

    main = models.accelerator.is_main_process
    if main:
        atomic_write_text(job.config_path, to_toml(config))
        job.write_status("running", epoch=0, total=config.train.epochs, message="loading")
    latest = job.latest_checkpoint() if resume else None
    if latest is None:
        return 0, {}
    state = load_checkpoint(latest)
    set_lora_state(models, state["lora"])
    models.optimizer.load_state_dict(state["optimizer"])
    if main:
        job.truncate_metrics(state["epochs_done"])
    log.info("resuming after epoch %d from %s", state["epochs_done"], latest)
    return state["epochs_done"], state["state"]
