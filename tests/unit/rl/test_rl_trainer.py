"""ShieldDiff RL on a tiny random pipeline: it learns, resumes exactly, stops cleanly, runs on 2 processes."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from support.comfy_harness import REPO
from trainer.diffusion.tiny import tiny_pipeline
from trainer.lora.formats import read_lora
from trainer.rl.trainer import train
from trainer.training.config import ConfigError, load_config

BASE = [
    "model.resolution=32",
    "sample.steps=8",
    "sample.batch_size=8",
    "sample.batches_per_epoch=1",
    "train.batch_size=2",
    "train.clip_range=0.2",
    "train.per_prompt_stats=false",
    "reward.kind=brightness",
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))


def settings(pipeline, *extra):
    return [f'model.checkpoint="{pipeline}"', *BASE, *extra]


def rewards(job) -> list[float]:
    return [json.loads(line)["reward_mean"] for line in (job / "metrics.jsonl").read_text().splitlines()]


def test_reward_rises_against_the_same_runs_at_learning_rate_zero(pipeline, tmp_path):
    """Per seed, a run at lr 0.03 and one at lr 0 draw the same noise every epoch, so the difference of
    their mean rewards is what learning did. The reward is the brightness of the image's centre; the
    samples are normalised over the batch (group size 1, DDPO's way): this test holds the clipped
    policy-gradient update itself (on this random model, 2 prompts x 4 samples per batch leave too few
    samples per group for 6 epochs to show a gain: seed 0 -2e-5). Measured (one torch thread): mean
    gains over epochs 1-5 of 0.0041, 0.0025 and 0.0022 for seeds 0, 1, 2, against reward spreads (std
    at epoch 0) of 0.0071, 0.0059 and 0.0045. Stated margins: every seed gains, and the mean gain is at
    least a quarter of the mean spread (measured: half)."""
    gains, spreads = [], []
    for seed in (0, 1, 2):
        runs = {}
        for lr in (0.03, 0.0):
            job = tmp_path / f"seed{seed}-lr{lr}"
            cfg = load_config(
                None,
                settings(
                    pipeline,
                    "reward.kind=center-brightness",
                    "sample.group_size=1",
                    "train.epochs=6",
                    f"train.learning_rate={lr}",
                    f"train.seed={seed}",
                ),
            )
            runs[lr] = (None, train(cfg, job), job)
        learned, frozen = rewards(runs[0.03][2]), rewards(runs[0.0][2])
        assert learned[0] == frozen[0]  # epoch 0 samples before any update: identical
        gain = sum(a - b for a, b in zip(learned[1:], frozen[1:], strict=True)) / (len(learned) - 1)
        assert gain > 0, (seed, learned, frozen)
        gains.append(gain)
        spreads.append(json.loads((runs[0.0][2] / "metrics.jsonl").read_text().splitlines()[0])["reward_std"])
        untouched = read_lora(runs[0.0][1])
        assert all(not m.up.any() for m in untouched.modules.values())  # lr 0: the LoRA did not move at all
    assert sum(gains) / 3 > 0.25 * sum(spreads) / 3, (gains, spreads)


def test_resume_gives_the_uninterrupted_result(pipeline, tmp_path):
    straight = train(
        load_config(None, settings(pipeline, "train.epochs=3", "train.learning_rate=0.03")), tmp_path / "a"
    )
    train(load_config(None, settings(pipeline, "train.epochs=2", "train.learning_rate=0.03")), tmp_path / "b")
    resumed = train(
        load_config(None, settings(pipeline, "train.epochs=3", "train.learning_rate=0.03")), tmp_path / "b", resume=True
    )
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert rewards(tmp_path / "a") == pytest.approx(rewards(tmp_path / "b"), abs=1e-6)
    status = json.loads((tmp_path / "b" / "status.json").read_text())
    assert status["state"] == "done" and status["epoch"] == 3


def test_timesteps_batched_into_one_unet_call_give_the_same_lora(pipeline, tmp_path):
    """train.timestep_batch only regroups the UNet calls of one accumulated step: all 8 trained timesteps
    in one call (0), in chunks of 3 (uneven: 3+3+2) and one per call (DDPO's way) end at the same LoRA,
    up to float summation order. Stated tolerance: 5e-3 of the LoRA's norm after one epoch (4 AdamW steps)
    at lr 0.03; Adam scales each element's step to about lr whatever its gradient's size, so summation
    noise in near-zero elements shows at about 1e-3, while a chunk weighted wrongly moves whole directions."""
    loras = {}
    for size in (1, 3, 0):
        cfg = load_config(
            None, settings(pipeline, "train.epochs=1", "train.learning_rate=0.03", f"train.timestep_batch={size}")
        )
        loras[size] = load_file(str(train(cfg, tmp_path / f"chunks-{size}")))
    ups = [k for k in loras[1] if k.endswith("lora_up.weight")]
    norm = sum(float((loras[1][k] ** 2).sum()) for k in ups) ** 0.5
    assert norm > 0  # the LoRA moved
    for size in (3, 0):
        diff = sum(float(((loras[size][k] - loras[1][k]) ** 2).sum()) for k in ups) ** 0.5
        assert diff < 5e-3 * norm, (size, diff, norm)


def test_sigterm_leaves_a_valid_checkpoint_and_no_lora(pipeline, tmp_path):
    job, out = tmp_path / "job", tmp_path / "loras" / "safety.safetensors"
    sets = [*settings(pipeline, "train.learning_rate=0.03"), f'output.lora_path="{out}"']
    base = [sys.executable, "-m", "trainer", "train", "--job-dir", str(job), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(
        [*base, "--set", "train.epochs=200"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (job / "metrics.jsonl").exists():
            time.sleep(0.5)
        time.sleep(1.5)  # somewhere inside a later epoch
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, output[-2000:]
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "cancelled"
    checkpoints = sorted((job / "checkpoints").glob("epoch-*"))
    assert checkpoints and int(checkpoints[-1].name.split("-")[1]) == status["epoch"] >= 1
    assert load_file(str(checkpoints[-1] / "lora.safetensors"))
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))  # no partial LoRA
    done = subprocess.run(
        [*base, "--set", f"train.epochs={status['epoch'] + 1}", "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((job / "status.json").read_text())["state"] == "done" and out.exists()


def test_two_processes_under_accelerate_hold_the_same_lora(pipeline, tmp_path):
    """Two processes through accelerate's launcher (its multi-GPU launcher with ACCELERATE_USE_CPU: gloo on
    the CPU); gradients are averaged, so both must end with the very same LoRA."""
    job = tmp_path / "job"
    sets = settings(pipeline, "train.epochs=2", "train.learning_rate=0.03")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "trainer",
        "train",
        "--job-dir",
        str(job),
        *[a for s in sets for a in ("--set", s)],
    ]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=str(REPO), ACCELERATE_USE_CPU="true"),
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    prints = re.findall(r"process (\d) of 2: LoRA sha256 (\w+)", (job / "log.txt").read_text())
    assert sorted(p for p, _ in prints) == ["0", "1"]
    assert len({h for _, h in prints}) == 1
    assert json.loads((job / "status.json").read_text())["state"] == "done"
    assert (job / "lora.safetensors").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "train.epochs"),
        ("sample.eta=0.0", "sample.eta"),
        ("train.batch_size=3", "divide"),
        ("sample.batch_size=100000", "sample.batch_size"),
        ("train.timestep_batch=-1", "train.timestep_batch"),
        ('train.kl_prompts="unsafe"', "train.kl_prompts"),
        ("train.epochz=1", "unknown setting"),
    ],
)
def test_bad_settings_are_named_before_anything_runs(pipeline, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, settings(pipeline, override)).validate()


def test_missing_checkpoint_is_named(tmp_path):
    from trainer.diffusion.loading import ModelLoadError, load_pipeline

    with pytest.raises(ModelLoadError, match="does not exist"):
        load_pipeline(tmp_path / "nothing.safetensors")
    (tmp_path / "old.ckpt").write_bytes(b"\x80\x04")
    with pytest.raises(ModelLoadError, match=r"only \.safetensors"):
        load_pipeline(tmp_path / "old.ckpt")


def test_a_stop_request_ends_sampling_between_two_denoising_steps(pipeline):
    """A cancel is not held up by a long sample: the next denoising step does not run."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from trainer.rl.sampling import sample_with_logprob
    from trainer.training.run import StopFlag, TrainingCancelled

    unet = UNet2DConditionModel.from_pretrained(pipeline / "unet")
    stop, calls = StopFlag(), []

    def counted(*args, **kw):
        calls.append(1)
        stop.signalled = len(calls) == 2  # the request arrives during the second step
        return unet(*args, **kw)

    embeds = torch.zeros(1, 77, unet.config.cross_attention_dim)
    with pytest.raises(TrainingCancelled):
        sample_with_logprob(
            counted,
            DDIMScheduler.from_pretrained(pipeline / "scheduler"),
            embeds,
            embeds,
            steps=8,
            eta=1.0,
            guidance=5.0,
            latent_shape=(unet.config.in_channels, 16, 16),
            generator=torch.Generator().manual_seed(0),
            stop=stop,
        )
    assert len(calls) == 2
