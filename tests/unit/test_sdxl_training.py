"""Both methods train on a tiny SDXL pipeline: the packed conditioning is SDXL's own, RL's LoRA moves
and is written in SDXL kohya naming, All-but-One moves the concept's guidance toward its target more
than it changes an unrelated prompt."""

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.diffusion.guidance import encode_prompts
from trainer.diffusion.sdxl import encode_sdxl_prompts, sdxl_time_ids
from trainer.diffusion.tiny import tiny_sdxl_pipeline
from trainer.erase.trainer import draw_latents, erase_prompts
from trainer.erase.trainer import train as erase_train
from trainer.evaluation.run import EvalSettings, evaluate
from trainer.lora.formats import read_lora, read_lora_header
from trainer.rl.trainer import train as rl_train
from trainer.training.config import load_config
from trainer.training.job_dir import JobDir
from trainer.training.run import load_checkpoint
from trainer.training.session import frozen, set_lora_state, setup_models

RL = [
    "model.resolution=32",
    "sample.steps=3",
    "sample.batch_size=2",
    "sample.batches_per_epoch=1",
    "train.batch_size=2",
    "train.per_prompt_stats=false",
    "reward.kind=center-brightness",
    "train.epochs=2",
]
ERASE = [
    "model.resolution=16",
    'train.method="all-but-one"',
    'erase.concepts=["nudity", "naked person"]',
    'erase.alternatives=["a dress"]',
    "erase.steps=4",
    "train.batch_size=4",
    "train.samples_to_save=1",
    'lora.targets=["attn2.to_k", "attn2.to_v"]',
    "train.epochs=1",
    "erase.iterations=20",
    "train.learning_rate=0.03",
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "model", text_strength=20.0)


def test_packed_conditioning_gives_the_unet_sdxls_own_inputs(pipeline, tmp_path):
    config = load_config(None, [f'model.checkpoint="{pipeline}"', *RL])
    models = setup_models(config, tmp_path)
    pipe, x = models.pipe, torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    prompts = ["a red bicycle", "a tall tree"]
    with torch.no_grad():
        packed = encode_prompts(pipe, prompts, "cpu")
        embeds, pooled = encode_sdxl_prompts(pipe, prompts)
        direct = {"text_embeds": pooled, "time_ids": sdxl_time_ids(32, 32, 2)}  # 16 latent px x VAE factor 2
        ours = models.unet(x, 300, encoder_hidden_states=packed).sample
        theirs = models.unet(x, 300, encoder_hidden_states=embeds, added_cond_kwargs=direct).sample
        swapped = models.unet(x, 300, encoder_hidden_states=packed.flip(0)).sample
    assert packed.shape == (2, 78, 64)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert not torch.allclose(ours, swapped)  # the prompts reach the UNet


@pytest.fixture(scope="module")
def rl_loras(pipeline, tmp_path_factory):
    loras = {}
    for lr in (0.03, 0.0):
        config = load_config(None, [f'model.checkpoint="{pipeline}"', *RL, f"train.learning_rate={lr}"])
        loras[lr] = rl_train(config, tmp_path_factory.mktemp(f"rl-lr{lr}"))
    return loras


def test_rl_trains_on_sdxl_and_writes_an_sdxl_kohya_lora(rl_loras):
    header = read_lora_header(rl_loras[0.03])
    assert (header.format, header.family) == ("kohya", "sdxl")
    assert header.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    moved, still = read_lora(rl_loras[0.03]), read_lora(rl_loras[0.0])
    assert {c for c, _ in moved.modules} == {"unet"}
    assert any(m.up.abs().max() > 0 for m in moved.modules.values())  # learning moved the LoRA
    assert all(not m.up.any() for m in still.modules.values())  # at lr 0 it did not


def test_eval_takes_an_sdxl_model_and_its_lora(pipeline, rl_loras, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    runs = {}
    for name, lora in (("base", None), ("tuned", rl_loras[0.03]), ("zero", rl_loras[0.0])):
        settings = EvalSettings(
            model=str(pipeline),
            prompts=str(prompts),
            out=str(tmp_path / name),
            detector="toy-red",
            resolution=32,
            images_per_prompt=1,
            steps=4,
            lora=str(lora) if lora else None,
        )
        result = evaluate(settings)
        runs[name] = [
            np.asarray(Image.open(tmp_path / name / im["file"])) for p in result["prompts"] for im in p["images"]
        ]
    assert len(runs["base"]) == 2 and runs["base"][0].shape == (32, 32, 3)
    assert all(np.array_equal(a, b) for a, b in zip(runs["base"], runs["zero"], strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(runs["base"], runs["tuned"], strict=True))


def test_all_but_one_moves_the_concept_more_than_an_unrelated_prompt_on_sdxl(pipeline, tmp_path):
    config = load_config(None, [f'model.checkpoint="{pipeline}"', *ERASE])
    job = tmp_path / "erase"
    header = read_lora_header(erase_train(config, job))
    assert header.family == "sdxl"
    models = setup_models(config, tmp_path / "measure")
    set_lora_state(models, load_checkpoint(JobDir(job).latest_checkpoint())["lora"])
    prompts = erase_prompts(models, config)
    unrelated = encode_prompts(models.pipe, ["a red car on a street"], "cpu")
    before = after = concept_change = unrelated_change = 0.0

    def eps(unet, x, t, embeds):
        return unet(x, t, encoder_hidden_states=embeds.expand(x.shape[0], -1, -1)).sample

    with torch.no_grad():
        for k in range(3):  # held-out x_t: seeds the training never drew
            x, t, index = draw_latents(models, config, prompts, 10_000, k)
            concept, alternative = prompts.concept_embeds[index], prompts.alternative_embeds[index]
            with frozen(models) as base:
                empty0, concept0 = eps(base, x, t, models.negative_embeds), eps(base, x, t, concept)
                target = eps(base, x, t, alternative) - empty0
                unrelated0 = eps(base, x, t, unrelated)
            empty1, concept1 = eps(models.unet, x, t, models.negative_embeds), eps(models.unet, x, t, concept)
            before += float((concept0 - empty0 - target).norm())
            after += float((concept1 - empty1 - target).norm())
            concept_change += float((concept1 - concept0).norm())
            unrelated_change += float((eps(models.unet, x, t, unrelated) - unrelated0).norm())
    assert after < 0.8 * before, (before, after)
    assert unrelated_change < concept_change, (unrelated_change, concept_change)
