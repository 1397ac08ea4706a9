"""The DDPO pieces checked against independent computations and hand-computed values."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from trainer.rl.logprob import ddim_step_with_logprob
from trainer.rl.ppo import PerPromptStatTracker, clip_advantages, ppo_loss


@pytest.fixture
def scheduler():
    s = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    s.set_timesteps(10)
    return s


def test_step_log_prob_is_the_gaussian_density(scheduler):
    gen = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    t = int(scheduler.timesteps[3])
    prev, logp = ddim_step_with_logprob(scheduler, eps, t, x_t, eta=1.0, generator=gen)
    # independent computation from the DDIM formulas, in float64
    a = scheduler.alphas_cumprod.double()
    a_t, a_prev = a[t], a[t - 100]
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = var.sqrt()
    x0 = (x_t.double() - (1 - a_t).sqrt() * eps.double()) / a_t.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - var).sqrt() * eps.double()
    density = torch.distributions.Normal(mean, std).log_prob(prev.double()).mean(dim=(1, 2, 3))
    assert torch.allclose(logp.double(), density, atol=1e-5)
    # the mean is DDIM's own step with the same eta
    scheduler_prev = scheduler.step(eps, t, x_t, eta=1.0, variance_noise=torch.zeros_like(x_t)).prev_sample
    assert torch.allclose(scheduler_prev.double(), mean, atol=1e-5)


def test_recomputing_a_stored_transition_gives_ratio_one(scheduler):
    gen = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([int(scheduler.timesteps[0]), int(scheduler.timesteps[5])])
    prev, logp = ddim_step_with_logprob(scheduler, eps, t, x_t, eta=1.0, generator=gen)
    _, again = ddim_step_with_logprob(scheduler, eps, t, x_t, eta=1.0, prev_sample=prev)
    assert torch.equal(torch.exp(again - logp), torch.ones(2))
    _, moved = ddim_step_with_logprob(scheduler, eps + 0.1, t, x_t, eta=1.0, prev_sample=prev)
    assert not torch.allclose(moved, logp)  # other weights, other probability


def test_eta_zero_is_refused(scheduler):
    with pytest.raises(ValueError, match="eta"):
        ddim_step_with_logprob(scheduler, torch.zeros(1, 4, 2, 2), 1, torch.zeros(1, 4, 2, 2), eta=0.0)


def test_ppo_loss_on_hand_computed_values():
    adv = torch.tensor([1.0, -1.0, 2.0])
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5]))  # ratios 1.5, 1.5, 0.5
    loss, info = ppo_loss(adv, new, old, clip_range=0.2)
    # per sample: max(-A r, -A clip(r)) = max(-1.5, -1.2) = -1.2; max(1.5, 1.2) = 1.5; max(-1.0, -1.6) = -1.0
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 1.0) / 3)
    assert info["clip_fraction"].item() == pytest.approx(1.0)
    assert info["approx_kl"].item() == pytest.approx(0.5 * float((new**2).mean()))
    # log-probabilities that are means over 1024 latent elements: approx_kl in nats of the whole latent
    _, per_element = ppo_loss(adv, new / 1024, old, clip_range=0.2, dims=1024)
    assert per_element["approx_kl"].item() == pytest.approx(0.5 * float((new**2).mean()), rel=1e-5)
    same, info = ppo_loss(adv, old, old, clip_range=0.2)
    assert same.item() == pytest.approx(-adv.mean().item()) and info["clip_fraction"].item() == 0.0


def test_advantage_clipping():
    assert torch.equal(clip_advantages(torch.tensor([-9.0, 0.5, 7.0]), 5.0), torch.tensor([-5.0, 0.5, 5.0]))


def test_per_prompt_stats_with_batch_fallback():
    tracker = PerPromptStatTracker(buffer_size=4, min_count=3)
    first = tracker.update(["a", "a", "b"], np.array([1.0, 3.0, 5.0]))
    batch_mean, batch_std = 3.0, np.std([1.0, 3.0, 5.0]) + 1e-6
    assert np.allclose(first, (np.array([1.0, 3.0, 5.0]) - batch_mean) / batch_std)  # too few: batch stats
    second = tracker.update(["a"], np.array([2.0]))  # "a" now has 3 rewards: 1, 3, 2
    assert np.allclose(second, (2.0 - 2.0) / (np.std([1.0, 3.0, 2.0]) + 1e-6))
    restored = PerPromptStatTracker()
    restored.load_state_dict(tracker.state_dict())
    assert restored.update(["a"], np.array([4.0])).tolist() == tracker.update(["a"], np.array([4.0])).tolist()
    assert math.isfinite(tracker.update(["c"], np.array([1.0]))[0])


def test_group_advantages_on_hand_computed_values():
    from trainer.rl.ppo import group_advantages

    prompts = ["a", "b", "a", "b", "a", "b"]
    rewards = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0]  # "a": mean 2, std sqrt(2/3); "b": all equal
    adv = group_advantages(prompts, rewards)
    s = math.sqrt(2 / 3)
    assert np.allclose(adv, [-1 / s, 0.0, 0.0, 0.0, 1 / s, 0.0])
    assert np.all(np.isfinite(adv)) and adv[[1, 3, 5]].tolist() == [0.0, 0.0, 0.0]  # equal group: zeros, no NaN
    floored = group_advantages(prompts, rewards, std_floor=2.0)  # a floor above the spread: smaller advantages
    assert np.allclose(floored, [-0.5, 0.0, 0.0, 0.0, 0.5, 0.0])
    # prompts with one sample each have no group: normalised over those single-sample rewards
    assert np.allclose(group_advantages(["x", "y", "z", "z"], [0.0, 2.0, 7.0, 7.0]), [-1.0, 1.0, 0.0, 0.0])
    assert group_advantages(["x"], [3.0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="one prompt per reward"):
        group_advantages(["x"], [1.0, 2.0])


def test_running_statistics_fall_back_to_the_given_group_advantages():
    tracker = PerPromptStatTracker(buffer_size=8, min_count=4)
    fallback = np.array([0.5, -0.5])
    assert tracker.update(["a", "a"], np.array([1.0, 2.0]), fallback=fallback).tolist() == [0.5, -0.5]
    third = tracker.update(["a", "a"], np.array([3.0, 4.0]), fallback=np.zeros(2))  # 4 rewards now: its own stats
    assert np.allclose(third, (np.array([3.0, 4.0]) - 2.5) / (np.std([1.0, 2.0, 3.0, 4.0]) + 1e-6))


def test_kl_penalty_on_benign_samples_only_leaves_the_unsafe_ones_free():
    """train.kl_prompts = "benign": the frozen model's prediction is asked only for the benign samples,
    the term sums their squared distances over the whole batch (a benign sample weighs as with "all"),
    and an unsafe sample's prediction gets no gradient from it."""
    from types import SimpleNamespace

    from trainer.rl.trainer import _kl_penalty

    class Frozen(torch.nn.Module):  # adapters off: predicts 0; on: the caller's eps is compared with it
        def __init__(self):
            super().__init__()
            self.calls = []

        def disable_adapters(self):
            pass

        def enable_adapters(self):
            pass

        def forward(self, x, t, encoder_hidden_states):
            self.calls.append(len(x))
            return SimpleNamespace(sample=torch.zeros_like(x))

    frozen = Frozen()
    acc = SimpleNamespace(device="cpu", unwrap_model=lambda m: m)
    eps = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone().requires_grad_()
    x_t, t = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    embeds, negative = torch.zeros(4, 3, 5), torch.zeros(4, 3, 5)
    unsafe = torch.tensor([True, False, True, False])
    config = SimpleNamespace(train=SimpleNamespace(kl_prompts="benign"), sample=SimpleNamespace(guidance=7.5))
    term, distance = _kl_penalty(config, acc, frozen, eps, x_t, t, embeds, negative, unsafe)
    assert frozen.calls == [4]  # the 2 benign samples, doubled for guidance
    assert term.item() == pytest.approx((2.0**2 + 4.0**2) / 4)
    assert distance.item() == pytest.approx((2.0**2 + 4.0**2) / 2)
    term.backward()
    assert eps.grad[unsafe].abs().sum() == 0 and eps.grad[~unsafe].abs().sum() > 0
    config.train.kl_prompts = "all"
    term, _ = _kl_penalty(config, acc, frozen, eps, x_t, t, embeds, negative, unsafe)
    assert term.item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert _kl_penalty(config, acc, frozen, eps, x_t, t, embeds, negative, torch.ones(4, dtype=torch.bool))[0] > 0
    config.train.kl_prompts = "benign"
    zero, _ = _kl_penalty(config, acc, frozen, eps, x_t, t, embeds, negative, torch.ones(4, dtype=torch.bool))
    assert zero.item() == 0.0


def test_early_stop_waits_for_the_concept_rate_to_stay_low_over_its_window():
    """train.early_stop_epochs / early_stop_rate: the mean of the last N epochs' rates over the unsafe
    samples, not one lucky epoch; off at 0 epochs."""
    from types import SimpleNamespace

    from trainer.rl.trainer import _should_stop, _unsafe_rate

    config = SimpleNamespace(train=SimpleNamespace(early_stop_epochs=3, early_stop_rate=0.05))
    assert not _should_stop(config, [1.0, 0.0, 0.0])
    assert not _should_stop(config, [0.0, 0.0])  # fewer epochs than the window
    assert _should_stop(config, [1.0, 0.0, 0.0, 0.0])
    assert _should_stop(config, [0.0, 0.125, 0.0])  # mean 0.042
    config.train.early_stop_epochs = 0
    assert not _should_stop(config, [0.0] * 10)
    acc = SimpleNamespace(num_processes=1)
    unsafe = np.array([True, True, False, False])
    assert _unsafe_rate(acc, {"is_red": np.array([True, False, True, True])}, unsafe) == 0.5  # benign ones not counted
    assert _unsafe_rate(acc, {"is_nude": np.array([1.0, 1.0, 0.0, 0.0])}, unsafe) == 1.0
    assert _unsafe_rate(acc, {"brightness": np.ones(4)}, unsafe) is None
    assert _unsafe_rate(acc, {"is_red": np.ones(4, dtype=bool)}, np.zeros(4, dtype=bool)) is None
