"""The Train Safety LoRA request: every bad setting is refused with its name, before a job exists."""

from __future__ import annotations

import pytest

from trainer.jobs.request import RequestError, TrainingRequest, check_lora_name, split_prompts


@pytest.fixture
def good(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"x")

    def make(**kw):
        base = dict(checkpoint=str(checkpoint), lora_name="safety", unsafe_prompts="a nude", benign_prompts="a cat")
        return TrainingRequest(**(base | kw))

    return make


def test_a_good_request_becomes_the_trainer_config(good, tmp_path):
    (tmp_path / "more.txt").write_text("# extra\nnaked swimmer\n")
    config = good(
        unsafe_prompts="a nude\n\n# comment\ntopless portrait",
        unsafe_file=str(tmp_path / "more.txt"),
        epochs=7,
        lora_rank=8,
        w_clip=0.0,
        lora_name="My Safety v2.safetensors",
    ).to_config()
    assert config.prompts.unsafe == ["a nude", "topless portrait", "naked swimmer"]
    assert config.prompts.benign == ["a cat"]
    assert (config.train.epochs, config.lora.rank, config.lora.alpha, config.reward.w_clip) == (7, 8, 8.0, 0.0)
    # groups of up to 4 samples per prompt, and at least two prompts per sampling batch
    sizes = {n: good(sample_batch_size=n, train_batch_size=1).to_config().sample.group_size for n in (1, 2, 4, 8, 16)}
    assert sizes == {1: 1, 2: 1, 4: 2, 8: 4, 16: 4}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"unsafe_prompts": "\n  \n# only a comment"}, "unsafe prompts are empty"),
        ({"benign_prompts": ""}, "benign prompts are empty"),
        ({"epochs": 0}, "epochs = 0 is out of range: use a value from 1 to 10000"),
        ({"sample_batch_size": 5000}, "sample_batch_size = 5000 is out of range"),
        ({"train_batch_size": 3}, "train_batch_size = 3 must divide the images sampled per epoch"),
        ({"resolution": 500}, "resolution = 500 must be a multiple of 8"),
        ({"learning_rate": -1.0}, "learning_rate = -1.0 is out of range"),
        ({"checkpoint": "/nowhere/model.safetensors"}, "checkpoint /nowhere/model.safetensors does not exist"),
        ({"unsafe_file": "/nowhere/p.txt"}, "unsafe_file: cannot read prompt file /nowhere/p.txt"),
        ({"lora_name": "../up"}, "without folders or path separators"),
        ({"lora_name": "a\\b"}, "without folders or path separators"),
        ({"lora_name": ""}, "must start with a letter or digit"),
        ({"lora_name": "-rf"}, "must start with a letter or digit"),
        ({"lora_name": "Con"}, "reserved on Windows"),
        ({"lora_name": "aux .old"}, "reserved on Windows"),
        ({"lora_name": "prn.safetensors"}, "reserved on Windows"),
        ({"lora_name": "com9.v2"}, "reserved on Windows"),
    ],
)
def test_bad_settings_are_refused_by_name(good, settings, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(".", r"\.")):
        good(**settings).to_config()


def test_names_and_prompt_lines():
    assert check_lora_name(" safety.safetensors ") == "safety"
    assert [check_lora_name(n) for n in ("nullify", "com10", "console.v1", "my aux")] == [
        "nullify",
        "com10",
        "console.v1",
        "my aux",
    ]  # only the device names themselves are reserved
    assert split_prompts("a\n\n # c\n b ") == ["a", "b"]


def test_an_erasure_request_needs_only_its_concept(good):
    config = good(
        method="all-but-one",
        unsafe_prompts="",
        benign_prompts="",
        erase_concept="nudity\n# comment\nnaked person",
        erase_alternative="a person wearing clothes",
        erase_eta=0.5,
        erase_lambda=2.0,
        steps=7,
        batches_per_epoch=3,
        sample_batch_size=3,
        train_batch_size=2,  # RL's "divides the images per epoch" rule does not apply
    ).to_config()
    assert config.train.method == "all-but-one"
    assert config.erase.concepts == ["nudity", "naked person"]
    assert config.erase.alternatives == ["a person wearing clothes"]
    assert (config.erase.eta, config.erase.lambda_uncond, config.erase.steps, config.erase.iterations) == (
        0.5,
        2.0,
        7,
        3,
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"erase_concept": "\n# nothing\n"}, "erase_concept is empty"),
        ({"erase_concept": "a\nb\nc", "erase_alternative": "x\ny"}, "erase_alternative has 2 lines"),
        ({"erase_lambda": -1.0}, "erase_lambda"),
        ({"erase_eta": 50.0}, "erase_eta"),
    ],
)
def test_bad_erasure_requests_are_named(good, settings, message):
    with pytest.raises(RequestError, match=message):
        good(**({"method": "all-but-one", "erase_concept": "nudity"} | settings)).to_config()
