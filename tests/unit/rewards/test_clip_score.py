"""CLIP scoring on random-weight open_clip models built by the tests."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from support.tiny_models import register_tiny_clip
from trainer.nudity.sample_images import figure, plain
from trainer.rewards.clip import ClipScorer, ClipSpec, ClipWeightsError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return register_tiny_clip(tmp_path_factory.mktemp("clip-config"))


@pytest.fixture(scope="module")
def tiny_weights(tiny, tmp_path_factory):
    """A weights file for the tiny architecture, as a user would put in models/shielddiff_clip."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(tiny)
    path = tmp_path_factory.mktemp("clip") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def scorer(tiny, tiny_weights):
    return ClipScorer(ClipSpec(architecture=tiny, weights=str(tiny_weights)))


def test_scores_are_cosines_and_batched_equals_unbatched(scorer):
    images = [figure(), plain(), plain(color=(250, 10, 10))]
    texts = ["a person", "a blue square", "a red square"]
    batched = scorer(images, texts)
    singles = [scorer([im], [t])[0] for im, t in zip(images, texts, strict=True)]
    assert np.allclose(batched, singles, atol=1e-5)
    assert all(-1.0 <= s <= 1.0 and math.isfinite(s) for s in batched)
    assert scorer(images, texts) == batched  # deterministic


def test_one_text_for_the_whole_batch(scorer):
    images = [figure(), plain()]
    assert scorer(images, "a photo") == scorer(images, ["a photo", "a photo"])


def test_loaded_file_weights_are_the_ones_used(tiny, tiny_weights):
    a = ClipScorer(ClipSpec(architecture=tiny, weights=str(tiny_weights)))
    b = ClipScorer(ClipSpec(architecture=tiny, weights=str(tiny_weights)))
    torch.manual_seed(123)
    c = ClipScorer(ClipSpec(architecture=tiny, random_weights=True))
    im = [figure()]
    assert a(im, "x") == b(im, "x")
    assert a(im, "x") != c(im, "x")


def test_pytorch_weights_load_without_unpickling_objects(tiny, tmp_path):
    import open_clip

    path = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model(tiny).state_dict(), path)
    assert len(ClipScorer(ClipSpec(architecture=tiny, weights=str(path)))([plain()], "x")) == 1
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": object()}}, evil)
    with pytest.raises(ClipWeightsError, match=r"could not read .*evil\.pt safely"):
        ClipScorer(ClipSpec(architecture=tiny, weights=str(evil)))([plain()], "x")


def test_missing_weights_name_the_file_and_the_folder(tiny, tmp_path):
    with pytest.raises(ClipWeightsError, match="shielddiff_clip"):
        ClipScorer(ClipSpec(architecture=tiny))([plain()], "x")
    with pytest.raises(ClipWeightsError, match=r"nowhere\.safetensors.*shielddiff_clip"):
        ClipScorer(ClipSpec(architecture=tiny, weights=str(tmp_path / "nowhere.safetensors")))([plain()], "x")


def test_weights_for_another_architecture_are_refused_by_name(tiny_weights):
    with pytest.raises(ClipWeightsError, match="not open_clip RN50 weights"):
        ClipScorer(ClipSpec(architecture="RN50", weights=str(tiny_weights)))([plain()], "x")


def test_unknown_architecture_and_mismatched_texts(scorer, tiny):
    with pytest.raises(ClipWeightsError, match="ViT-Q-99"):
        ClipScorer(ClipSpec(architecture="ViT-Q-99", random_weights=True))([plain()], "x")
    with pytest.raises(ValueError, match="2 images but 3 texts"):
        scorer([plain(), plain()], ["a", "b", "c"])


def test_empty_batch_and_odd_images(scorer):
    assert scorer([], "x") == []
    odd = [np.zeros((1, 1, 3), np.uint8), np.full((16, 16, 3), np.nan, np.float32), np.zeros((20, 30, 4), np.uint8)]
    assert all(math.isfinite(s) for s in scorer(odd, "x"))


def test_vit_b_32_random_weights_run_offline():
    """The architecture users will most often pick, with random weights (no download here)."""
    scorer = ClipScorer(ClipSpec(architecture="ViT-B-32", random_weights=True))
    assert len(scorer([figure(), plain()], "a photo")) == 2
