"""The All-but-One objective on the tiny pipeline: zero exactly when the tuned model already is the
target construction, and its gradients reach the LoRA and nothing else."""

import pytest
import torch

from trainer.diffusion.tiny import tiny_pipeline
from trainer.erase.objective import erase_loss, erase_target
from trainer.erase.trainer import draw_latents, erase_prompts, erase_step_loss
from trainer.training.config import load_config
from trainer.training.session import setup_models


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))


def erase_config(pipeline, *extra):
    return load_config(
        None,
        [
            f'model.checkpoint="{pipeline}"',
            "model.resolution=16",
            'train.method="all-but-one"',
            'erase.concepts=["nudity", "naked person"]',
            "erase.steps=4",
            "train.batch_size=2",
            *extra,
        ],
    ).validate()


def test_target_construction():
    gen = torch.Generator().manual_seed(0)
    empty, alt, concept = (torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3))
    assert torch.allclose(erase_target(empty, alt, concept, 0.7), empty + 0.7 * (alt - empty))
    assert torch.equal(erase_target(empty, None, concept, 2.0), empty)  # no alternative: guidance 0
    assert torch.allclose(erase_target(empty, None, concept, -1.0), empty - (concept - empty))  # ESD
    tuned = erase_target(empty, alt, concept, 0.7)
    loss, parts = erase_loss(tuned, erase_target(empty, alt, concept, 0.7), empty.clone(), empty, 3.0)
    assert float(loss) == 0.0 and float(parts["loss_erase"]) == 0.0 and float(parts["loss_uncond"]) == 0.0
    loss, parts = erase_loss(tuned + 1.0, tuned, empty + 2.0, empty, 3.0)
    assert float(loss) == pytest.approx(1.0 + 3.0 * 4.0)


def test_loss_is_zero_when_the_tuned_model_is_the_target_and_grads_reach_only_the_lora(pipeline, tmp_path):
    """With the concept as its own alternative and eta 1 the target is the frozen model's own eps(x, c_e),
    which the untrained LoRA (its up-projections start at 0) gives exactly: the loss is 0. With another
    alternative the loss is positive and every gradient lands in a LoRA parameter."""
    config = erase_config(pipeline, 'erase.alternatives=["nudity", "naked person"]', "erase.eta=1.0")
    models = setup_models(config, tmp_path)
    prompts = erase_prompts(models, config)
    x_t, t, index = draw_latents(models, config, prompts, 0, 0)
    loss, parts = erase_step_loss(models, config, prompts, x_t, t, index)
    assert float(loss) < 1e-12 and float(parts["loss_uncond"]) < 1e-12

    config = erase_config(pipeline, 'erase.alternatives=["a dress"]', "erase.eta=1.0")
    prompts = erase_prompts(models, config)
    loss, _ = erase_step_loss(models, config, prompts, x_t, t, index)
    assert float(loss) > 1e-6
    loss.backward()
    named = dict(models.unet.named_parameters())
    with_grad = {n for n, p in named.items() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert any(named[n].grad.abs().sum() > 0 for n in with_grad if "lora_B" in n)
    frozen_parts = [models.pipe.vae, models.pipe.text_encoder]
    assert all(p.grad is None for m in frozen_parts for p in m.parameters())
