"""Tests for grpolab.core.llds: the LLDS likelihood-preserving regularizer (arXiv 2512.04220)."""

from __future__ import annotations

import pytest
import torch

from grpolab.core.aggregation import AGGREGATIONS
from grpolab.core.llds import action_chunks
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.types import Rollout

F64 = torch.float64
LLDS = REGULARIZERS["llds"]


def make(mask, old, group=None) -> Rollout:
    mask = torch.tensor(mask).bool()
    B = mask.shape[0]
    group = torch.zeros(B, dtype=torch.long) if group is None else torch.tensor(group)
    return Rollout(group=group, mask=mask, reward=torch.zeros(B, dtype=F64), old_logp=torch.tensor(old, dtype=F64))


def test_registered_with_its_inputs():
    assert REGULARIZERS.requires("llds") == {"old_logp"}


def test_action_chunks():
    mask = torch.tensor([[1, 1, 0, 1, 1, 0], [0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]]).bool()
    assert action_chunks(mask).tolist() == [[1, 1, 0, 2, 2, 0], [0, 1, 0, 2, 0, 3], [0, 0, 0, 0, 0, 0]]


def test_spec_hand_example():
    """A positive-advantage chunk whose 2 tokens each drop 0.1 gives λ·0.2 / N_tokens (N = 5 here)."""
    r = make([[1, 1, 0], [1, 1, 1]], [[-1.0, -1.0, 0.0], [-1.0, -1.0, -1.0]])
    logp = torch.tensor([[-1.1, -1.1, 9.0], [-0.5, -0.5, -0.5]], dtype=F64, requires_grad=True)  # row 1 rose
    adv = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=F64)
    loss, metrics = LLDS(logp, r, advantages=adv, coef=0.2)
    assert loss.item() == pytest.approx(0.2 * 0.2 / 5)
    assert metrics["llds_active_frac"] == pytest.approx(2 / 5) and metrics["llds"] == pytest.approx(0.2 / 5)
    loss.backward()
    # d/dlogp of λ·max(0, old − logp)/N = −λ/N on the active, dropped tokens; 0 elsewhere
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.04, -0.04, 0.0], [0.0, 0.0, 0.0]], dtype=F64))


def test_zero_when_the_policy_never_lost_likelihood():
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 4, generator=g, dtype=F64)
    r = make([[1, 1, 1, 1], [1, 0, 1, 0], [1, 1, 0, 0]], old.tolist())
    logp = (old + torch.rand(3, 4, generator=g, dtype=F64)).requires_grad_()  # π_θ ≥ π_old everywhere
    for gate in ("action", "response"):
        loss, metrics = LLDS(logp, r, advantages=torch.ones(3, 4, dtype=F64), gate=gate)
        loss.backward()
        assert loss.item() == 0.0 and metrics["llds_active_frac"] == 0.0
        assert (logp.grad == 0).all()
    on_policy = r.replace(old_logp=logp.detach())  # θ = θ_old: 0 in value and gradient
    x = logp.detach().clone().requires_grad_()
    loss, _ = LLDS(x, on_policy, advantages=torch.ones(3, 4, dtype=F64))
    loss.backward()
    assert loss.item() == 0.0 and (x.grad == 0).all()


def test_negative_advantage_responses_are_never_penalised():
    r = make([[1, 1], [1, 1]], [[0.0, 0.0], [0.0, 0.0]])
    logp = torch.full((2, 2), -3.0, dtype=F64, requires_grad=True)  # both rows lost a lot of likelihood
    adv = torch.tensor([[-0.5, -0.5], [0.0, 0.0]], dtype=F64)  # A = 0 is in the preserving set (A ≥ 0)
    loss, _ = LLDS(logp, r, advantages=adv, coef=1.0)
    loss.backward()
    assert loss.item() == pytest.approx((3.0 + 3.0) / 4)
    assert logp.grad[0].tolist() == [0.0, 0.0] and logp.grad[1].tolist() == [-0.25, -0.25]


def test_action_gate_versus_response_gate():
    # one response, two actions split by a tool observation (mask False at t = 2):
    # action 1: drops 0.3 and 0.1 -> sum 0.4 > 0, active; action 2: +0.5 and −0.2 (drop) -> sum −0.3, inactive
    r = make([[1, 1, 0, 1, 1]], [[-1.0, -1.0, 0.0, -1.0, -1.0]])
    logp = torch.tensor([[-1.3, -1.1, 5.0, -0.5, -1.2]], dtype=F64)
    adv = torch.ones(1, 5, dtype=F64)
    loss, metrics = LLDS(logp, r, advantages=adv, coef=1.0, gate="action")
    assert loss.item() == pytest.approx((0.3 + 0.1) / 4)  # only the first action; 4 valid tokens
    assert metrics["llds_active_frac"] == pytest.approx(0.5)
    # R-gate: the response's sum 0.3 + 0.1 − 0.5 + 0.2 = 0.1 > 0 -> every dropped token is penalised
    loss, metrics = LLDS(logp, r, advantages=adv, coef=1.0, gate="response")
    assert loss.item() == pytest.approx((0.3 + 0.1 + 0.2) / 4)
    assert metrics["llds_active_frac"] == 1.0
    # an active chunk does not push tokens whose own likelihood rose (max(0, d_t))
    logp = torch.tensor([[-1.5, -0.9, 5.0, -1.0, -1.0]], dtype=F64)  # action 1: +0.5 drop, −0.1 rise -> active
    loss, _ = LLDS(logp, r, advantages=adv, coef=1.0)
    assert loss.item() == pytest.approx(0.5 / 4)


def test_token_level_advantages_split_chunks_at_sign_changes():
    """The code's preserving mask is per token (A_t ≥ 0): a negative token breaks a chunk."""
    r = make([[1, 1, 1, 1]], [[0.0, 0.0, 0.0, 0.0]])
    logp = torch.tensor([[-0.4, 0.0, -0.1, 0.3]], dtype=F64)
    adv = torch.tensor([[1.0, -1.0, 1.0, 1.0]], dtype=F64)  # chunks {0} (sum 0.4, active) and {2, 3} (−0.2)
    loss, _ = LLDS(logp, r, advantages=adv, coef=1.0)
    assert loss.item() == pytest.approx(0.4 / 4)


def loop_llds(mask, logp, old, adv, gate):
    """Obvious Python loops: preserving runs, their sums, max(0, d) on active tokens."""
    B, T = mask.shape
    values = torch.zeros(B, T, dtype=F64)
    for i in range(B):
        preserve = [bool(mask[i, t]) and adv[i, t].item() >= 0 for t in range(T)]
        d = [old[i, t].item() - logp[i, t].item() for t in range(T)]
        if gate == "response":
            runs = [[t for t in range(T) if preserve[t]]]
        else:
            runs, current = [], []
            for t in range(T):
                if preserve[t]:
                    current.append(t)
                elif current:
                    runs.append(current)
                    current = []
            if current:
                runs.append(current)
        for run in runs:
            if sum(d[t] for t in run) > 0:
                for t in run:
                    values[i, t] = max(0.0, d[t])
    return values


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
@pytest.mark.parametrize("gate", ["action", "response"])
def test_loop_equals_vectorised(mode, gate):
    g = torch.Generator().manual_seed(5)
    B, T = 6, 8
    mask = torch.rand(B, T, generator=g) < 0.7  # holes everywhere: many chunks
    mask[:, 0] = True
    old = -torch.rand(B, T, generator=g, dtype=F64) * 2
    logp = old + 0.3 * torch.randn(B, T, generator=g, dtype=F64)
    adv = torch.randn(B, T, generator=g, dtype=F64)
    adv[:3] = adv[:3, :1]  # three rows with a sequence-level advantage, three token-level
    garbage = torch.full((B, T), float("nan"), dtype=F64)
    r = Rollout(group=torch.tensor([0, 1, 0, 1, 2, 2]), mask=mask, reward=torch.zeros(B, dtype=F64),
                old_logp=torch.where(mask, old, garbage))  # fmt: skip
    x = torch.where(mask, logp, garbage).requires_grad_()
    want = AGGREGATIONS[mode](loop_llds(mask, logp, old, adv, gate), mask, norm_constant=T)
    kwargs = {"aggregation": mode, "norm_constant": T}
    loss, _ = LLDS(x, r, advantages=torch.where(mask, adv, garbage), coef=0.3, gate=gate, **kwargs)
    assert loss.item() == pytest.approx(0.3 * want.item(), rel=1e-10)
    loss.backward()
    assert torch.isfinite(x.grad).all() and (x.grad[~mask] == 0).all()


def test_bad_inputs():
    r = make([[1, 1]], [[0.0, 0.0]])
    logp, adv = torch.zeros(1, 2, dtype=F64), torch.zeros(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="gate must be one of"):
        LLDS(logp, r, advantages=adv, gate="chunk")
    with pytest.raises(ValueError, match="coef"):
        LLDS(logp, r, advantages=adv, coef=-0.2)
    with pytest.raises(ValueError, match="old_logp"):
        LLDS(logp, r.replace(old_logp=None), advantages=adv)
    with pytest.raises(ValueError, match=r"advantages must be a float tensor \[B, T\]"):
        LLDS(logp, r, advantages=torch.zeros(1))
    with pytest.raises(TypeError):
        LLDS(logp, r)  # the advantages are a required (run-supplied) argument
