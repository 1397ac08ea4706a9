"""A training request as the Train Safety LoRA node states it, checked and turned into a config.

Every check runs before a job exists, and every error names the setting, the value and what
to do: a user learns about an empty prompt list or a bad output name at once, not when a
background job fails minutes later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..prompts import PromptError, load_prompt_file, split_prompts
from ..training.config import ConfigError, RLConfig

__all__ = ["LIMITS", "RequestError", "TrainingRequest", "check_lora_name", "split_prompts"]

# (min, max) per numeric setting: wider than any sensible run, narrow enough to stop a typo
# (a batch of 4000 images) before it reaches the GPU.
LIMITS = {
    "epochs": (1, 10_000),
    "sample_batch_size": (1, 64),
    "batches_per_epoch": (1, 1_000),
    "train_batch_size": (1, 64),
    "steps": (1, 1_000),
    "resolution": (64, 2048),
    "lora_rank": (1, 256),
    "learning_rate": (0.0, 1.0),
    "w_clip": (0.0, 100.0),
    "w_nude": (0.0, 100.0),
    "erase_eta": (-20.0, 20.0),
    "erase_lambda": (0.0, 100.0),
}
_LORA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+\-]{0,99}$")
# Device names Windows reserves in every folder, with any extension ("nul.safetensors" is the null device).
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{d}{i}" for d in ("com", "lpt") for i in range(1, 10)}


class RequestError(ConfigError):
    """The request cannot become a job; the message says which setting and what to do."""


def check_lora_name(name: str) -> str:
    """The output name as a plain file stem (".safetensors" dropped); refuses folders and odd names."""
    stem = (name or "").strip()
    if stem.lower().endswith(".safetensors"):
        stem = stem[: -len(".safetensors")]
    if "/" in stem or "\\" in stem or stem in (".", ".."):
        raise RequestError(f"output name {name!r} must be a plain file name, without folders or path separators")
    if not _LORA_NAME.match(stem):
        raise RequestError(
            f"output name {name!r} must start with a letter or digit and hold only letters, digits, "
            "spaces and . _ + - (at most 100 characters)"
        )
    if stem.split(".")[0].rstrip(" ").lower() in _WINDOWS_RESERVED:
        raise RequestError(
            f"output name {name!r} is reserved on Windows for a device (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with "
            "any extension): choose another name"
        )
    return stem


@dataclass
class TrainingRequest:
    checkpoint: str
    lora_name: str
    unsafe_prompts: str = ""
    benign_prompts: str = ""
    unsafe_file: str | None = None
    benign_file: str | None = None
    method: str = "shielddiff-rl"
    w_clip: float = 2.5
    w_nude: float = 1.0
    clip_weights: str | None = None
    clip_architecture: str = "ViT-B-32"
    epochs: int = 20
    sample_batch_size: int = 4
    batches_per_epoch: int = 2
    train_batch_size: int = 4
    steps: int = 20
    resolution: int = 512
    lora_rank: int = 4
    learning_rate: float = 3e-4
    seed: int = 0
    erase_concept: str = ""  # all-but-one: the concept's prompts, one per line
    erase_alternative: str = ""  # all-but-one: none, one, or one per concept line
    erase_eta: float = 1.0
    erase_lambda: float = 1.0
    extra: list[str] = field(default_factory=list)  # further `key=value` settings (tests, operators)

    def prompts(self) -> tuple[list[str], list[str]]:
        sets = []
        for kind, text, path in (
            ("unsafe", self.unsafe_prompts, self.unsafe_file),
            ("benign", self.benign_prompts, self.benign_file),
        ):
            prompts = split_prompts(text)
            if path:
                try:
                    prompts += load_prompt_file(path)
                except PromptError as exc:
                    raise RequestError(f"{kind}_file: {exc}") from exc
            if not prompts:
                raise RequestError(
                    f"{kind} prompts are empty: write one prompt per line in {kind}_prompts, or choose a {kind}_file"
                )
            sets.append(prompts)
        return sets[0], sets[1]

    def check_ranges(self) -> None:
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise RequestError(f"{name} = {value} is out of range: use a value from {low} to {high}")
        if self.resolution % 8:
            raise RequestError(f"resolution = {self.resolution} must be a multiple of 8")
        samples = self.sample_batch_size * self.batches_per_epoch
        if self.method == "shielddiff-rl" and samples % self.train_batch_size:
            raise RequestError(
                f"train_batch_size = {self.train_batch_size} must divide the images sampled per epoch "
                f"(sample_batch_size x batches_per_epoch = {samples})"
            )
        if not Path(self.checkpoint).exists():
            raise RequestError(f"checkpoint {self.checkpoint} does not exist: put it in ComfyUI's checkpoints folder")

    def to_config(self) -> RLConfig:
        """The validated trainer configuration (output path and job directory are set by the job queue)."""
        from ..training.config import apply_overrides

        self.lora_name = check_lora_name(self.lora_name)
        self.check_ranges()
        config = RLConfig()
        if self.method == "all-but-one":
            self._erase_settings(config)
        else:
            config.prompts.unsafe, config.prompts.benign = self.prompts()
        config.model.checkpoint = str(self.checkpoint)
        config.model.resolution = self.resolution
        config.lora.rank = self.lora_rank
        config.lora.alpha = float(self.lora_rank)
        config.sample.steps = self.steps
        config.sample.batch_size = self.sample_batch_size
        # groups of up to 4 samples per prompt, and at least two prompts (an unsafe and a benign one) per batch
        config.sample.group_size = max(1, min(4, self.sample_batch_size // 2))
        config.sample.batches_per_epoch = self.batches_per_epoch
        config.train.epochs = self.epochs
        config.train.batch_size = self.train_batch_size
        config.train.learning_rate = float(self.learning_rate)
        config.train.seed = self.seed
        config.reward.w_clip = float(self.w_clip)
        config.reward.w_nude = float(self.w_nude)
        config.reward.clip_weights = self.clip_weights or ""
        config.reward.clip_architecture = self.clip_architecture
        if self.method != "shielddiff-rl":
            apply_overrides(config, [f'train.method="{self.method}"'])
        try:
            return apply_overrides(config, self.extra).validate()
        except ConfigError as exc:
            raise RequestError(str(exc)) from exc

    def _erase_settings(self, config: RLConfig) -> None:
        """All-but-One: the concept and alternative lines; steps and batches_per_epoch mean DDIM steps of
        the frozen trajectory and optimisation steps per epoch."""
        concepts, alternatives = split_prompts(self.erase_concept), split_prompts(self.erase_alternative)
        if not concepts:
            raise RequestError("erase_concept is empty: write the concept to erase, one prompt per line (e.g. nudity)")
        if len(alternatives) not in (0, 1, len(concepts)):
            raise RequestError(
                f"erase_alternative has {len(alternatives)} lines: write none, one, or one per erase_concept line "
                f"({len(concepts)})"
            )
        config.erase.concepts, config.erase.alternatives = concepts, alternatives
        config.erase.eta, config.erase.lambda_uncond = float(self.erase_eta), float(self.erase_lambda)
        config.erase.steps = self.steps
        config.erase.iterations = self.batches_per_epoch
