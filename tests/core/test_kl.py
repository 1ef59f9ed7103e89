"""Tests for grpolab.core.kl: hand values, non-negativity of k3, Monte-Carlo unbiasedness of k1 and k3."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.kl import KL_ESTIMATORS, k1, k2, k3, kl_estimate
from grpolab.core.registry import UnknownNameError

LN2 = math.log(2.0)


def test_registry_names():
    assert sorted(KL_ESTIMATORS) == ["k1", "k2", "k3"]
    assert KL_ESTIMATORS["k1"] is k1 and KL_ESTIMATORS["k2"] is k2 and KL_ESTIMATORS["k3"] is k3


def test_hand_values():
    # t = 0: x = ref − logp = ln 2; t = 1: x = −ln 2; t = 2: x = 1 (logp = −1, ref = 0)
    logp = torch.tensor([[0.0, LN2, -1.0]], dtype=torch.float64)
    ref = torch.tensor([[LN2, 0.0, 0.0]], dtype=torch.float64)
    # k1 = −x
    assert k1(logp, ref).flatten().tolist() == pytest.approx([-LN2, LN2, -1.0])
    # k2 = x² / 2: ln2² / 2 = 0.240227..., same, 0.5
    assert k2(logp, ref).flatten().tolist() == pytest.approx([0.2402265069591007, 0.2402265069591007, 0.5])
    # k3 = e^x − x − 1: 2 − ln2 − 1 = 0.306853, 0.5 + ln2 − 1 = 0.193147, e − 2 = 0.718282
    want = [0.30685281944005466, 0.1931471805599453, 0.7182818284590451]
    assert k3(logp, ref).flatten().tolist() == pytest.approx(want, rel=1e-12)
    assert kl_estimate(logp, ref).flatten().tolist() == pytest.approx(want, rel=1e-12)  # k3 is the default
    assert kl_estimate(logp, ref, estimator="k1").flatten().tolist() == pytest.approx([-LN2, LN2, -1.0])


@pytest.mark.parametrize("name", ["k1", "k2", "k3"])
def test_zero_at_equal_inputs(name):
    logp = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 2.0
    assert torch.equal(KL_ESTIMATORS[name](logp, logp.clone()), torch.zeros_like(logp))


def test_k3_non_negative_and_zero_iff_equal():
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(200, 50, generator=g, dtype=torch.float64) * 10  # [200, 50]
    ref = logp + torch.randn(200, 50, generator=g, dtype=torch.float64) * torch.logspace(-6, 1, 50)  # [200, 50]
    ref[:, :3] = logp[:, :3]  # some equal pairs
    out = k3(logp, ref)
    assert (out >= 0).all()
    assert torch.equal(out == 0, ref == logp)  # differences here are >= ~1e-10, far from rounding to 0
    # same in float32 with moderate differences
    out32 = k3(logp.float(), ref.float())
    assert (out32 >= 0).all()


def test_gradient_flows_through_logp():
    # d k3 / d logp = 1 − e^x (x = ref − logp); at x = ln 2: 1 − 2 = −1. d k1 / d logp = 1.
    logp = torch.tensor([[0.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[LN2]], dtype=torch.float64)
    k3(logp, ref).sum().backward()
    assert logp.grad.item() == pytest.approx(-1.0)
    logp.grad = None
    k1(logp, ref).sum().backward()
    assert logp.grad.item() == pytest.approx(1.0)


def test_monte_carlo_k1_and_k3_are_unbiased():
    # p (policy) and q (ref) over 4 tokens; KL(p‖q) = Σ p log(p/q).
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    log_p, log_q = p.log(), q.log()
    kl = float((p * (log_p - log_q)).sum())  # 0.456434...
    assert kl == pytest.approx(0.45643481914678, rel=1e-9)

    n = 200_000
    idx = torch.multinomial(p, n, replacement=True, generator=torch.Generator().manual_seed(0))  # samples of p
    logp, ref = log_p[idx][None, :], log_q[idx][None, :]  # [1, n]

    # Exact per-sample variances from the distributions (not from the samples) give the standard errors;
    # 5 standard errors make a false failure probability ~6e-7 (and the seed makes the test deterministic).
    x = log_q - log_p  # [4]
    k1_vals, k3_vals = -x, torch.expm1(x) - x  # [4]
    for name, vals in (("k1", k1_vals), ("k3", k3_vals)):
        mean = float((p * vals).sum())
        var = float((p * vals**2).sum()) - mean**2
        assert mean == pytest.approx(kl, rel=1e-12)  # both are exactly unbiased
        se = math.sqrt(var / n)
        estimate = kl_estimate(logp, ref, estimator=name).mean().item()
        assert abs(estimate - kl) < 5 * se, (name, estimate, kl, se)
    # k3 has the lower variance here (the reason GRPO uses it)
    assert float((p * k3_vals**2).sum()) < float((p * k1_vals**2).sum())
    # k2 is biased: its expectation ½ E[x²] is not the KL for these far-apart distributions
    assert float((p * 0.5 * x**2).sum()) != pytest.approx(kl, rel=0.05)


def test_mask_zeroes_output_and_blocks_garbage():
    logp = torch.tensor([[-1.0, float("nan"), 50.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.0 + LN2, 3.0, -1e4]], dtype=torch.float64)
    mask = torch.tensor([[True, False, False]])
    for name in ("k1", "k2", "k3"):
        out = kl_estimate(logp, ref, estimator=name, mask=mask)
        out.sum().backward()
        assert out[0, 1:].tolist() == [0.0, 0.0]
        assert torch.isfinite(logp.grad).all() and logp.grad[0, 1:].tolist() == [0.0, 0.0]
        logp.grad = None
    # valid position: k3 at x = ln 2
    assert kl_estimate(logp, ref, mask=mask)[0, 0].item() == pytest.approx(1.0 - LN2)


def test_errors():
    logp = torch.zeros(2, 3)
    with pytest.raises(UnknownNameError, match="k1, k2, k3"):
        kl_estimate(logp, logp, estimator="k4")
    with pytest.raises(ValueError, match="same shape"):
        kl_estimate(logp, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask"):
        kl_estimate(logp, logp, mask=torch.ones(2, 3))
