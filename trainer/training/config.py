"""The training configuration: typed sections with defaults and help, TOML, overrides.

One configuration for every training method (`train.method`): "shielddiff-rl" (the RL
trainer; sections sample, reward, prompts) and "all-but-one" (concept erasure; section
erase). Sections model, lora, train and output are shared.

RL defaults follow DDPO's published settings where the ShieldDiff paper does not give its own
(docs/training.md): 50 DDIM steps with eta 1, guidance 5, LoRA rank 4 on the UNet attention
projections, lr 3e-4, clip range 1e-4, advantage clip 5; advantages are normalised within each
prompt's group of `sample.group_size` samples (GRPO-style; DDPO's running per-prompt statistics
are an option). The presets `toy-rl` and `sd15-rl` are named sets for the toy world and SD1.5
(docs/training.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

__all__ = ["METHODS", "PRESETS", "ConfigError", "RLConfig", "apply_overrides", "config_to_dict", "load_config"]

METHODS = ("shielddiff-rl", "all-but-one")
# Named sets of overrides (`python -m trainer train --preset NAME`), applied after the file, before --set.
PRESETS = {
    # ESD-style erasure as the same objective: a negative guidance target away from the concept,
    # no alternative, no constraint on the unconditional prediction (ESD-u/x's eta 1 is eta -1 here).
    "esd": ['train.method="all-but-one"', "erase.alternatives=[]", "erase.eta=-1.0", "erase.lambda_uncond=0.0"],
    # ShieldDiff RL in the toy world (docs/toyworld.md "Tuning ShieldDiff RL"): the best settings measured
    # by bench-efficacy (run R7): no KL penalty (on every sample it holds back exactly the change erasure
    # needs), every sampling step trained, one optimisation step per epoch, and an early stop once the
    # unsafe prompts' samples are no longer red (after that the reward's red part is flat and steps drift).
    "toy-rl": [
        'train.method="shielddiff-rl"',
        "reward.kind=toy-red",
        "reward.w_align=2.0",
        "reward.red_margin=0.05",
        "sample.steps=10",
        "sample.guidance=7.5",
        "sample.batch_size=16",
        "sample.group_size=4",
        "sample.batches_per_epoch=1",
        'lora.targets=["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"]',
        "train.batch_size=16",
        "train.learning_rate=3e-3",
        "train.warmup_epochs=5",
        "train.early_steps=1.0",
        "train.timestep_batch=0",
        "train.inner_epochs=1",
        "train.clip_range=1e-3",
        "train.kl_coef=0.02",
        'train.kl_prompts="benign"',
        "train.early_stop_epochs=12",
        "train.early_stop_rate=0.03",
        "prompts.unsafe_ratio=0.5",
    ],
    # ShieldDiff RL on SD1.5 (docs/training.md "Presets"): the toy world's measured levers (groups of 4,
    # every sampling step trained, one optimisation step per epoch, a small KL penalty on the benign
    # prompts' samples only, early stop once the unsafe samples have stayed clean for 12 epochs) at
    # DDPO's SD1.5 learning rate, clip range and guidance. Not measured on SD1.5 weights (none on the
    # development machine).
    "sd15-rl": [
        'train.method="shielddiff-rl"',
        "reward.kind=shielddiff",
        "model.resolution=512",
        "sample.steps=20",
        "sample.guidance=5.0",
        "sample.batch_size=8",
        "sample.group_size=4",
        "sample.batches_per_epoch=2",
        "train.batch_size=4",
        "train.gradient_accumulation=4",
        "train.learning_rate=3e-4",
        "train.warmup_epochs=5",
        "train.early_steps=1.0",
        "train.inner_epochs=1",
        "train.clip_range=1e-4",
        "train.kl_coef=0.02",
        'train.kl_prompts="benign"',
        "train.early_stop_epochs=12",
        "train.early_stop_rate=0.03",
        "prompts.unsafe_ratio=0.5",
    ],
}
# ESD as published (Gandikota et al. 2023, the reference train-esd.py): x_t from the model being trained,
# DDIM 50 steps with guidance 3 (start_guidance), negative guidance 1, batch 1, 1,000 iterations; ESD-x
# trains the cross-attention ('xattn'), ESD-u everything but it ('noxattn'); here as LoRA targets: attn2's
# projections, or the transformer blocks' self-attention and feed-forward projections. Their lr (1e-5,
# full weights) is left to train.learning_rate: a LoRA needs its own.
_ESD = [
    *PRESETS["esd"],
    'erase.trajectory="tuned"',
    "erase.steps=50",
    "erase.guidance=3.0",
    "train.batch_size=1",
    "erase.preserve=[]",
]
PRESETS["esd-x"] = [*_ESD, 'lora.targets=["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"]']
PRESETS["esd-u"] = [
    *_ESD,
    'lora.targets=["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2"]',
]


class ConfigError(ValueError):
    """A setting is missing or out of range; the message names it and what to do."""


def _doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class ModelSection:
    checkpoint: str = _doc("SD1.x .safetensors file or diffusers folder to fine-tune", "")
    resolution: int = _doc("image size in pixels (a multiple of 8)", 512)
    mixed_precision: str = _doc("'no', 'fp16' or 'bf16' for the frozen model and sampling", "no")
    gradient_checkpointing: bool = _doc("trade compute for memory in the UNet", False)


@dataclass
class LoraSection:
    rank: int = _doc("LoRA rank", 4)
    alpha: float = _doc("LoRA alpha (scale = alpha / rank)", 4.0)
    targets: list[str] = _doc("UNet module names to adapt", factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])  # noqa: RUF009


@dataclass
class SampleSection:
    steps: int = _doc("DDIM steps per image", 50)
    eta: float = _doc("DDIM eta (> 0: the policy must be stochastic)", 1.0)
    guidance: float = _doc("classifier-free guidance scale", 5.0)
    batch_size: int = _doc("images per sampling batch (per process)", 4)
    batches_per_epoch: int = _doc("sampling batches per epoch (per process)", 2)
    group_size: int = _doc(
        "samples of each prompt in a sampling batch (K): a batch holds batch_size / K prompts (rounded up), "
        "and each sample's advantage is its reward against its prompt's group (1: DDPO's one per prompt)",
        4,
    )


@dataclass
class TrainSection:
    method: str = _doc("'shielddiff-rl' (reinforcement learning) or 'all-but-one' (concept erasure)", "shielddiff-rl")
    epochs: int = _doc("training epochs (sample, then update)", 100)
    learning_rate: float = _doc("AdamW learning rate for the LoRA", 3e-4)
    batch_size: int = _doc("samples per optimisation step (per process)", 4)
    gradient_accumulation: int = _doc("optimisation batches accumulated per step", 1)
    timestep_fraction: float = _doc("fraction of the trained window's denoising steps trained on per sample", 1.0)
    early_steps: float = _doc(
        "the trained window: this fraction of the denoising steps, from the first (noisiest), where the "
        "image's content is decided (1: every step)",
        1.0,
    )
    warmup_epochs: int = _doc("epochs over which the learning rate rises linearly to its value (0: none)", 0)
    timestep_batch: int = _doc(
        "trained timesteps of each sample per UNet call (0: all at once); the same gradient, larger is faster "
        "on small models and uses more memory",
        1,
    )
    inner_epochs: int = _doc("passes over each epoch's samples", 1)
    clip_range: float = _doc("PPO clip range of the importance ratio", 1e-4)
    adv_clip_max: float = _doc("advantages are clipped to +-this", 5.0)
    kl_coef: float = _doc("weight of a KL penalty to the frozen base model (0: off, as DDPO)", 0.0)
    kl_prompts: str = _doc(
        "which samples the KL penalty holds to the frozen model: 'all', or 'benign' (only the benign prompts' "
        "samples: what must stay is anchored, the unsafe prompts are free to change)",
        "all",
    )
    max_grad_norm: float = _doc("gradient clipping", 1.0)
    adv_std_floor: float = _doc(
        "advantages divide by max(the group's reward std, this): a floor keeps reward noise in a group with "
        "little spread from becoming a full-size advantage (0: plain normalisation)",
        0.0,
    )
    early_stop_epochs: int = _doc(
        "stop once the concept's rate over the unsafe prompts' samples (red in the toy world, nudity otherwise), "
        "averaged over this many last epochs, is at most train.early_stop_rate; the LoRA of that epoch is "
        "written (0: off). Once a concept is gone its reward part is flat, and further steps only drift",
        0,
    )
    early_stop_rate: float = _doc("the rate at or below which train.early_stop_epochs stops the run", 0.0)
    per_prompt_stats: bool = _doc(
        "normalise by running per-prompt statistics (DDPO's) once a prompt has stat_min_count rewards; "
        "before that, and when off, by the prompt's group in the batch",
        False,
    )
    stat_buffer: int = _doc("rewards kept per prompt for its statistics", 16)
    stat_min_count: int = _doc("rewards a prompt needs before its own statistics are used", 16)
    seed: int = _doc("random seed", 0)
    checkpoint_every: int = _doc("write a resumable checkpoint every N epochs", 1)
    samples_to_save: int = _doc("images saved to samples/ each epoch", 4)


@dataclass
class RewardSection:
    kind: str = _doc(
        "'shielddiff' (NudeNet + CLIP), 'toy-red' (the toy world's: alignment + (1 - red)), or a test reward: "
        "'brightness', 'center-brightness', 'redness'",
        "shielddiff",
    )
    w_clip: float = _doc("weight of the CLIP part", 2.5)
    w_nude: float = _doc("weight of the (1 - nudity) part", 1.0)
    safe_template: str = _doc("text CLIP compares with; {prompt} is replaced", "{prompt}, fully clothed")
    threshold: float = _doc("nudity threshold for the nudity rate", 0.6)
    clip_architecture: str = _doc("open_clip architecture (or 'auto')", "ViT-B-32")
    clip_weights: str = _doc("CLIP weights file; empty: no CLIP part", "")
    nudenet_provider: str = _doc(
        "onnxruntime provider for NudeNet: 'auto' (CUDA, DirectML or CoreML when installed, else CPU), 'cpu', "
        "'cuda', 'directml' or 'coreml'",
        "auto",
    )
    w_align: float = _doc("toy-red: weight of the alignment part (w_nude weighs 1 - red)", 1.0)
    red_margin: float = _doc(
        "toy-red: hue distance beyond the detector's red band over which the graded red score falls to 0 "
        "(0: it is 0 wherever the detector reads not red; > 0 keeps paying to move away from the band's edge)",
        0.0,
    )
    toy_shape_classifier: str = _doc("toy-red: shape classifier folder; empty: the committed one", "")


@dataclass
class PromptSection:
    unsafe: list[str] = _doc("unsafe prompts, inline", factory=list)  # noqa: RUF009
    benign: list[str] = _doc("benign prompts, inline", factory=list)  # noqa: RUF009
    unsafe_file: str = _doc("file of unsafe prompts (.txt one per line, .csv 'prompt' column, .jsonl)", "")
    benign_file: str = _doc("file of benign prompts", "")
    unsafe_ratio: float = _doc("share of unsafe prompts in each batch", 0.5)


@dataclass
class EraseSection:
    concepts: list[str] = _doc(  # noqa: RUF009
        "all-but-one: prompts naming the concept to erase, e.g. ['nudity', 'naked person']", factory=list
    )
    alternatives: list[str] = _doc(  # noqa: RUF009
        "what replaces the concept: none (the concept's guidance goes to 0, or away from it when eta < 0), "
        "one for every concept, or one per concept (paired in order)",
        factory=list,
    )
    eta: float = _doc(
        "guidance of the target: target = eps*(x, '') + eta * (eps*(x, alternative) - eps*(x, '')); "
        "with no alternative and eta < 0: eps*(x, '') + eta * (eps*(x, concept) - eps*(x, '')) (ESD)",
        1.0,
    )
    lambda_uncond: float = _doc("lambda: weight of || eps(x, '') - eps*(x, '') ||^2 (0: unconstrained, as ESD)", 1.0)
    steps: int = _doc("DDIM steps of the frozen model's trajectory on the concept (x_t is taken at a random one)", 50)
    guidance: float = _doc("classifier-free guidance of that frozen sampling", 3.0)
    iterations: int = _doc("optimisation steps per epoch, each on a new batch of train.batch_size x_t", 20)
    trajectory: str = _doc(
        "which model draws the x_t: 'frozen' (the base model) or 'tuned' (the model being trained, as ESD does)",
        "frozen",
    )
    preserve: list[str] = _doc(  # noqa: RUF009
        "prompts to keep as they were (benign ones, and ones of the alternative's kind): the tuned model's "
        "prediction for them is held to the frozen model's; empty: no preservation term",
        factory=list,
    )
    preserve_weight: float = _doc("weight of the preservation term || eps(x, p) - eps*(x, p) ||^2", 1.0)
    preserve_batch: int = _doc("x_t of preservation prompts per step (0: train.batch_size)", 0)
    preserve_heldout: list[str] = _doc(  # noqa: RUF009
        "prompts the preservation measure of early stopping is taken on (not trained on); empty: erase.preserve",
        factory=list,
    )
    early_stop_drift: float = _doc(
        "stop when the held-out preservation drift (rms of eps(x, p) - eps*(x, p) over rms of the frozen "
        "guidance eps*(x, p) - eps*(x, '')) exceeds this; the LoRA of the last epoch under it is kept (0: off)",
        0.0,
    )


@dataclass
class OutputSection:
    lora_path: str = _doc("where the final LoRA (kohya format) is written", "")
    diffusers_copy: bool = _doc("also write a diffusers-format copy beside it", False)


@dataclass
class RLConfig:
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSection = field(default_factory=LoraSection)
    sample: SampleSection = field(default_factory=SampleSection)
    train: TrainSection = field(default_factory=TrainSection)
    reward: RewardSection = field(default_factory=RewardSection)
    prompts: PromptSection = field(default_factory=PromptSection)
    erase: EraseSection = field(default_factory=EraseSection)
    output: OutputSection = field(default_factory=OutputSection)

    def validate(self) -> RLConfig:
        checks = [
            (self.train.method in METHODS, "train.method", f"must be one of {', '.join(METHODS)}"),
            (self.train.epochs >= 1, "train.epochs", "must be >= 1"),
            (1 <= self.train.batch_size <= 256, "train.batch_size", "must be in [1, 256]"),
            (self.train.learning_rate >= 0, "train.learning_rate", "must be >= 0"),
            (self.lora.rank >= 1, "lora.rank", "must be >= 1"),
            (
                self.model.resolution % 8 == 0 and self.model.resolution >= 8,
                "model.resolution",
                "must be a multiple of 8",
            ),
            (self.model.mixed_precision in ("no", "fp16", "bf16"), "model.mixed_precision", "must be no, fp16 or bf16"),
            (
                bool(self.model.checkpoint),
                "model.checkpoint",
                "is required: an SD1.x .safetensors file or diffusers folder",
            ),
        ]
        checks += self._erase_checks() if self.train.method == "all-but-one" else self._rl_checks()
        for ok, name, rule in checks:
            if not ok:
                raise ConfigError(f"{name} {rule} (got {_get(self, name)!r})")
        return self

    def _erase_checks(self) -> list:
        e = self.erase
        concepts, alternatives = e.concepts, e.alternatives
        return [
            (
                bool(concepts) and all(isinstance(c, str) and c.strip() for c in concepts),
                "erase.concepts",
                "must name the concept to erase: one or more non-empty prompts, e.g. ['nudity']",
            ),
            (
                all(isinstance(a, str) and a.strip() for a in alternatives),
                "erase.alternatives",
                "must not hold empty prompts (leave the list empty for no alternative)",
            ),
            (
                len(alternatives) in (0, 1, len(concepts)),
                "erase.alternatives",
                f"must hold 0, 1 or as many prompts as erase.concepts ({len(concepts)})",
            ),
            (math.isfinite(e.eta) and -20 <= e.eta <= 20, "erase.eta", "must be a number in [-20, 20]"),
            (
                math.isfinite(e.lambda_uncond) and e.lambda_uncond >= 0,
                "erase.lambda_uncond",
                "must be >= 0 (0 turns the unconditional constraint off)",
            ),
            (1 <= e.steps <= 1000, "erase.steps", "must be in [1, 1000]"),
            (math.isfinite(e.guidance) and e.guidance >= 0, "erase.guidance", "must be >= 0"),
            (e.iterations >= 1, "erase.iterations", "must be >= 1"),
            (e.trajectory in ("frozen", "tuned"), "erase.trajectory", "must be 'frozen' or 'tuned'"),
            (
                all(isinstance(p, str) and p.strip() for p in [*e.preserve, *e.preserve_heldout]),
                "erase.preserve",
                "must not hold empty prompts (erase.preserve and erase.preserve_heldout)",
            ),
            (
                math.isfinite(e.preserve_weight) and e.preserve_weight >= 0,
                "erase.preserve_weight",
                "must be >= 0 (0 turns the preservation term off)",
            ),
            (0 <= e.preserve_batch <= 256, "erase.preserve_batch", "must be in [0, 256] (0: train.batch_size)"),
            (
                math.isfinite(e.early_stop_drift) and e.early_stop_drift >= 0,
                "erase.early_stop_drift",
                "must be >= 0 (0: no early stopping)",
            ),
            (
                e.early_stop_drift == 0 or bool(e.preserve or e.preserve_heldout),
                "erase.early_stop_drift",
                "needs prompts to measure on: set erase.preserve or erase.preserve_heldout",
            ),
        ]

    def _rl_checks(self) -> list:
        checks = [
            (
                self.reward.nudenet_provider in ("auto", "cpu", "cuda", "directml", "coreml"),
                "reward.nudenet_provider",
                "must be auto, cpu, cuda, directml or coreml",
            ),
            (self.sample.eta > 0, "sample.eta", "must be > 0"),
            (self.sample.steps >= 1, "sample.steps", "must be >= 1"),
            (1 <= self.sample.batch_size <= 256, "sample.batch_size", "must be in [1, 256]"),
            (self.sample.batches_per_epoch >= 1, "sample.batches_per_epoch", "must be >= 1"),
            (self.sample.group_size >= 1, "sample.group_size", "must be >= 1"),
            (0 < self.train.early_steps <= 1, "train.early_steps", "must be in (0, 1]"),
            (self.train.warmup_epochs >= 0, "train.warmup_epochs", "must be >= 0"),
            (self.train.adv_std_floor >= 0, "train.adv_std_floor", "must be >= 0"),
            (self.train.inner_epochs >= 1, "train.inner_epochs", "must be >= 1"),
            (self.train.early_stop_epochs >= 0, "train.early_stop_epochs", "must be >= 0 (0: off)"),
            (0 <= self.train.early_stop_rate <= 1, "train.early_stop_rate", "must be in [0, 1]"),
            (0 < self.train.timestep_fraction <= 1, "train.timestep_fraction", "must be in (0, 1]"),
            (self.train.timestep_batch >= 0, "train.timestep_batch", "must be >= 0 (0: all timesteps in one call)"),
            (self.train.clip_range > 0, "train.clip_range", "must be > 0"),
            (self.train.kl_coef >= 0, "train.kl_coef", "must be >= 0"),
            (self.train.kl_prompts in ("all", "benign"), "train.kl_prompts", "must be 'all' or 'benign'"),
            (0 <= self.prompts.unsafe_ratio <= 1, "prompts.unsafe_ratio", "must be in [0, 1]"),
        ]
        samples = self.sample.batch_size * self.sample.batches_per_epoch
        checks.append(
            (samples % self.train.batch_size == 0, "train.batch_size", f"must divide the samples per epoch ({samples})")
        )
        return checks


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _from_dict(cls, data: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown setting {where}{key}; known: {', '.join(known)}")
        f = known[key]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            kwargs[key] = _from_dict(f.default_factory, value, f"{where}{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str | Path | None = None, overrides: list[str] = (), preset: str | None = None) -> RLConfig:
    """The defaults, then a TOML file, then a named preset (PRESETS), then `key=value` overrides (values as TOML)."""
    data: dict = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    config = _from_dict(RLConfig, data, "")
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        apply_overrides(config, PRESETS[preset])
    return apply_overrides(config, overrides)


def apply_overrides(config: RLConfig, overrides: list[str]) -> RLConfig:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.epochs=10)")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: take it as text
        *parents, name = key.strip().split(".")
        target = config
        for part in parents:
            if not hasattr(target, part):
                raise ConfigError(f"unknown setting {key}")
            target = getattr(target, part)
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise ConfigError(f"unknown setting {key}")
        current = getattr(target, name)
        if isinstance(current, float) and isinstance(value, int):
            value = float(value)
        if type(current) is not type(value) and not (isinstance(current, list) and isinstance(value, list)):
            raise ConfigError(f"{key} must be a {type(current).__name__}, got {raw!r}")
        setattr(target, name, value)
    return config


def config_to_dict(config: RLConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def to_toml(config: RLConfig) -> str:
    lines = []
    for section, values in config_to_dict(config).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)
