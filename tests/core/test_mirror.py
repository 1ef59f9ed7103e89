"""Tests for grpolab.core.mirror: on-policy MDPO (Mirror Descent Policy Optimization, arXiv 2005.09814)."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.aggregation import AGGREGATIONS
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.mirror import mdpo_step_size, reverse_kl_from_behaviour
from grpolab.core.types import Rollout

F64 = torch.float64
NORM = 6.0
LR = 0.2  # small enough for plain gradient descent to stay stable at the largest KL weight tested


def random_batch(seed: int, spread: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    B, T = 5, 6
    lengths = torch.tensor([1, 6, 3, 5, 2])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    mask[1, 3] = False  # a hole (tool output)
    old = -torch.rand(B, T, generator=g, dtype=F64) * 3  # [B, T]
    logp = old + spread * torch.randn(B, T, generator=g, dtype=F64)  # [B, T]
    adv = torch.randn(B, T, generator=g, dtype=F64)  # [B, T]
    garbage = (torch.rand(B, T, generator=g, dtype=F64) - 0.5) * 2e4  # [B, T]
    logp, old, adv = (torch.where(mask, x, garbage) for x in (logp, old, adv))
    rollout = Rollout(group=torch.tensor([0, 0, 1, 1, 1]), mask=mask, reward=torch.zeros(B, dtype=F64), old_logp=old)
    return rollout, logp, adv


def agg_kwargs(mode: str) -> dict:
    return {"aggregation": mode, "norm_constant": NORM} if mode == "seq_sum_const" else {"aggregation": mode}


def test_registered_and_reads_old_logp():
    assert POLICY_LOSSES.requires("mdpo") == {"old_logp"}


# ---------------------------------------------------------------------------------------------------- schedule
def test_schedule_values():
    # t_k = 1 − k/K: the KL weight 1/t_k grows over the run (paper: step size annealed from 1 to 0)
    assert [mdpo_step_size(k, 10) for k in (0, 1, 5, 9)] == pytest.approx([1.0, 0.9, 0.5, 0.1])
    assert mdpo_step_size(10, 10) == 0.01  # past the schedule: the floor t_min
    assert mdpo_step_size(99, 100, t_min=0.05) == 0.05  # 1/100 < t_min
    assert mdpo_step_size(0, 1) == 1.0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((-1, 10), {}, "step must be an int >= 0"),
        ((0, 0), {}, "total_steps must be an int >= 1"),
        ((1.5, 10), {}, "step must be an int"),
        ((0, 10), {"t_min": 0.0}, r"t_min must be in \(0, 1\]"),
        ((0, 10), {"t_min": 2.0}, r"t_min must be in \(0, 1\]"),
    ],
)
def test_schedule_rejects_bad_values(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mdpo_step_size(*args, **kwargs)


def test_loss_uses_the_schedule_from_the_run_arguments():
    rollout, logp, adv = random_batch(1)
    for step, total, coef in ((0, 4, 1.0), (2, 4, 2.0), (3, 4, 4.0), (8, 4, 100.0)):
        _, metrics = POLICY_LOSSES["mdpo"](logp, rollout, adv, step=step, total_steps=total)
        assert metrics["kl_coef"] == pytest.approx(coef)
    _, metrics = POLICY_LOSSES["mdpo"](logp, rollout, adv, kl_coef=0.1, step=3, total_steps=4)
    assert metrics["kl_coef"] == 0.1  # a fixed coefficient overrides the schedule
    with pytest.raises(ValueError, match="step and total_steps"):
        POLICY_LOSSES["mdpo"](logp, rollout, adv)
    with pytest.raises(ValueError, match="kl_coef must be >= 0"):
        POLICY_LOSSES["mdpo"](logp, rollout, adv, kl_coef=-1.0)
    with pytest.raises(ValueError, match="old_logp"):
        POLICY_LOSSES["mdpo"](logp, rollout.replace(old_logp=None), adv, kl_coef=1.0)


# ---------------------------------------------------------------------------------------------------- KL estimator
def test_kl_estimator_is_unbiased_for_the_reverse_kl_in_value_and_gradient():
    """Σ_a π_k(a)·f(π_θ(a)/π_k(a)) = KL(π_θ ‖ π_k) exactly, and so are the gradients (enumerating all actions)."""
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, generator=g, dtype=F64).requires_grad_()
    theta_k = torch.randn(6, generator=g, dtype=F64)
    logp, logp_k = torch.log_softmax(theta, 0), torch.log_softmax(theta_k, 0)  # [V], [V]
    estimate = (logp_k.exp() * reverse_kl_from_behaviour(logp - logp_k)).sum()  # E_{π_k}[f(ρ)]
    exact = (logp.exp() * (logp - logp_k)).sum()  # KL(π_θ ‖ π_k)
    assert estimate.item() == pytest.approx(exact.item(), rel=1e-12)
    (g_est,) = torch.autograd.grad(estimate, theta, retain_graph=True)
    (g_exact,) = torch.autograd.grad(exact, theta)
    torch.testing.assert_close(g_est, g_exact, rtol=1e-10, atol=1e-12)
    reverse_of_forward = (logp_k.exp() * (logp_k - logp)).sum()  # KL(π_k ‖ π_θ): a different number
    assert abs(reverse_of_forward.item() - exact.item()) > 1e-3


def test_kl_estimator_hand_values_and_sign():
    x = torch.tensor([math.log(2.0), 0.0, math.log(0.5), -5.0], dtype=F64)
    want = [2 * math.log(2) - 1, 0.0, 0.5 * math.log(0.5) + 0.5, math.exp(-5) * -5 - math.exp(-5) + 1]
    assert reverse_kl_from_behaviour(x).tolist() == pytest.approx(want)
    assert (reverse_kl_from_behaviour(torch.linspace(-8, 3, 101, dtype=F64)) >= 0).all()


# ---------------------------------------------------------------------------------------------------- loss
def test_hand_value_and_gradient():
    # one token, A = 1, ρ = 2, t_k = 0.5: −2 + 2·(2 ln 2 − 1); d/dlogp = −ρA + c·ρ·log ρ = −2 + 4 ln 2
    r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 1, dtype=torch.bool), reward=torch.zeros(1, dtype=F64),
                old_logp=torch.zeros(1, 1, dtype=F64))  # fmt: skip
    logp = torch.full((1, 1), math.log(2.0), dtype=F64, requires_grad=True)
    loss, metrics = POLICY_LOSSES["mdpo"](logp, r, torch.ones(1, 1, dtype=F64), step=1, total_steps=2)
    loss.backward()
    assert loss.item() == pytest.approx(-2 + 2 * (2 * math.log(2) - 1))
    assert logp.grad.item() == pytest.approx(-2 + 4 * math.log(2))
    assert metrics["kl"] == pytest.approx(2 * math.log(2) - 1) and metrics["ratio_max"] == pytest.approx(2.0)


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_first_step_is_the_policy_gradient(mode):
    """At θ = θ_k the KL term and its gradient are 0, so the loss gradient is −A·∇logp (REINFORCE's)."""
    rollout, logp, adv = random_batch(2)
    on_policy = rollout.replace(old_logp=torch.where(rollout.mask, logp, 0.0).detach())
    a, b = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    la, metrics = POLICY_LOSSES["mdpo"](a, on_policy, adv, kl_coef=50.0, **agg_kwargs(mode))
    lb, _ = POLICY_LOSSES["reinforce"](b, on_policy, adv, **agg_kwargs(mode))
    la.backward()
    lb.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    assert metrics["kl"] == 0.0


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_loop_equals_vectorised(mode):
    rollout, logp, adv = random_batch(3)
    c = 1 / mdpo_step_size(1, 3)
    values = torch.zeros_like(logp)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if rollout.mask[i, t]:
                rho = math.exp(logp[i, t].item() - rollout.old_logp[i, t].item())
                values[i, t] = -rho * adv[i, t].item() + c * (rho * math.log(rho) - rho + 1)
    want = AGGREGATIONS[mode](values, rollout.mask, norm_constant=NORM)
    x = logp.clone().requires_grad_()
    loss, _ = POLICY_LOSSES["mdpo"](x, rollout, adv, step=1, total_steps=3, **agg_kwargs(mode))
    assert loss.item() == pytest.approx(want.item(), rel=1e-10)
    loss.backward()
    assert (x.grad[~rollout.mask] == 0).all() and torch.isfinite(x.grad).all()


def realised_kl(kl_coef: float, m: int = 10) -> float:
    """m SGD steps of MDPO on a toy softmax policy (one state, 6 actions) from π_k; the exact KL(π_θ ‖ π_k) after."""
    g = torch.Generator().manual_seed(11)
    theta_k = torch.randn(6, generator=g, dtype=F64)  # [V]
    logp_k = torch.log_softmax(theta_k, 0)  # [V]
    actions = torch.multinomial(logp_k.exp(), 64, replacement=True, generator=g)  # [N]: samples of π_k
    adv = torch.randn(6, generator=g, dtype=F64)[actions]  # [N]
    adv = (adv - adv.mean())[:, None]  # [N, 1]
    rollout = Rollout(group=torch.zeros(64, dtype=torch.long), mask=torch.ones(64, 1, dtype=torch.bool),
                      reward=torch.zeros(64, dtype=F64), old_logp=logp_k[actions][:, None])  # fmt: skip
    theta = theta_k.clone().requires_grad_()
    for _ in range(m):
        logp = torch.log_softmax(theta, 0)[actions][:, None]  # [N, 1]
        loss, _ = POLICY_LOSSES["mdpo"](logp, rollout, adv, kl_coef=kl_coef)
        (grad,) = torch.autograd.grad(loss, theta)
        theta = (theta - LR * grad).detach().requires_grad_()
    logp = torch.log_softmax(theta.detach(), 0)  # [V]
    return (logp.exp() * (logp - logp_k)).sum().item()


def test_a_larger_kl_weight_shrinks_the_realised_kl_after_m_steps():
    kls = [realised_kl(c) for c in (0.0, 1.0, 4.0, 16.0)]
    assert kls[0] > 0.05  # the unregularised steps do move the policy
    assert kls[0] > kls[1] > kls[2] > kls[3] > 0
