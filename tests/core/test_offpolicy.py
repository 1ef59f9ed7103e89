"""Tests for grpolab.core.offpolicy: REC / OPMD / AsymRE (arXiv 2509.24203) and LOOP's advantage selector."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.aggregation import AGGREGATIONS
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.offpolicy import REC_CLIP_MODES, REC_REGULARIZERS, REC_WEIGHTS, rec_mask
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout

F64 = torch.float64
NORM = 7.0


# ---------------------------------------------------------------------------------------------------- helpers
def random_batch(seed: int, spread: float = 0.5):
    """A rollout with unequal, non-contiguous groups (one of size 1), holes in the mask and garbage at padding,
    plus logp [B, T] and a sequence-level advantage [B, T]."""
    g = torch.Generator().manual_seed(seed)
    B, T = 7, 6
    lengths = torch.tensor([1, 6, 3, 5, 2, 6, 4])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    mask[1, 2] = False  # a tool-output hole inside a completion
    mask[5, 3] = False
    group = torch.tensor([0, 1, 0, 2, 1, 0, 1])  # sizes 3, 3, 1; non-contiguous
    old = -torch.rand(B, T, generator=g, dtype=F64) * 3  # [B, T]
    logp = old + spread * torch.randn(B, T, generator=g, dtype=F64)  # [B, T]
    adv = torch.randn(B, 1, generator=g, dtype=F64).expand(B, T).clone()  # [B, T]
    garbage = lambda: (torch.rand(B, T, generator=g, dtype=F64) - 0.5) * 2e4  # noqa: E731
    logp = torch.where(mask, logp, garbage())
    old = torch.where(mask, old, garbage())
    adv = torch.where(mask, adv, garbage())
    reward = torch.randint(0, 3, (B,), generator=g).to(F64) / 2  # [B]
    rollout = Rollout(group=group, mask=mask, reward=reward, old_logp=old)
    return rollout, logp, adv


def one_token(ratio: float, adv: float, **kw) -> tuple[float, float, dict]:
    """REC loss value and d loss / d logp for one valid token with the given ratio (old_logp = −1)."""
    logp = torch.tensor([[math.log(ratio) - 1.0]], dtype=F64, requires_grad=True)
    r = Rollout(
        group=torch.tensor([0]),
        mask=torch.ones(1, 1, dtype=torch.bool),
        reward=torch.zeros(1, dtype=F64),
        old_logp=torch.full((1, 1), -1.0, dtype=F64),
    )
    value, metrics = POLICY_LOSSES["rec"](logp, r, torch.tensor([[adv]], dtype=F64), **kw)
    value.backward()
    return value.item(), logp.grad.item(), metrics


def agg_kwargs(mode: str) -> dict:
    return {"aggregation": mode, "norm_constant": NORM} if mode == "seq_sum_const" else {"aggregation": mode}


def test_parts_are_registered():
    assert {"rec", "opmd"} <= set(POLICY_LOSSES)
    assert {"asymre", "opmd"} <= set(ADVANTAGES)
    assert "min_abs_advantage" in SELECTORS
    assert POLICY_LOSSES.requires("rec") == {"old_logp"} and POLICY_LOSSES.requires("opmd") == frozenset()


# ---------------------------------------------------------------------------------------------------- REC mask
# (ρ, A) -> expected mask for one-side / two-side / ring with ε = 0.2 / 0.2 and ε' = 0.6 / 2.0
MASK_CASES = [
    (1.0, 1.0, (True, True, True)),  # inside the band
    (1.2, 1.0, (True, True, True)),  # upper edge, inclusive
    (1.3, 1.0, (False, False, False)),  # A > 0 pushed past 1 + ε_high: stop
    (0.5, 1.0, (True, False, False)),  # A > 0, moved the wrong way (down): one-side keeps, ring's inner gap drops
    (0.3, 1.0, (True, False, True)),  # A > 0, ρ ≤ 1 − ε'_low = 0.4: the ring pulls it back
    (0.8, -1.0, (True, True, True)),  # lower edge, inclusive
    (0.7, -1.0, (False, False, False)),  # A < 0 pushed past 1 − ε_low: stop
    (2.0, -1.0, (True, False, False)),  # A < 0, moved up: one-side keeps, ring gap (1.2, 3.0) drops
    (3.5, -1.0, (True, False, True)),  # A < 0, ρ ≥ 1 + ε'_high = 3: ring keeps
    (1.3, 0.0, (True, False, False)),  # A = 0 counts as both signs (Trinity's >= / <=)
    (0.3, 0.0, (True, False, True)),
]


@pytest.mark.parametrize(("ratio", "adv", "want"), MASK_CASES)
def test_rec_mask_hand_examples(ratio, adv, want):
    rho, a = torch.tensor([[ratio]], dtype=F64), torch.tensor([[adv]], dtype=F64)
    got = tuple(bool(rec_mask(rho, a, clip_mode=mode)) for mode in ("one-side", "two-side", "ring"))
    assert got == want
    assert bool(rec_mask(rho, a, clip_mode="none"))


@pytest.mark.parametrize(("ratio", "adv", "want"), MASK_CASES)
def test_rec_masked_tokens_have_no_loss_and_no_gradient(ratio, adv, want):
    for mode, keep in zip(("one-side", "two-side", "ring"), want, strict=True):
        value, grad, metrics = one_token(ratio, adv, clip_mode=mode)
        logp = math.log(ratio) - 1.0
        assert value == pytest.approx(-adv * logp if keep else 0.0, abs=1e-12)
        assert grad == pytest.approx(-adv if keep else 0.0, abs=1e-12)  # d(−A·logp)/dlogp = −A: no ratio
        assert metrics["clip_frac"] == (0.0 if keep else 1.0)


# ---------------------------------------------------------------------------------------------------- REC weights
def test_rec_weights_hand_values():
    # ρ = 2.5, A = 0.5, logp = ln 2.5 − 1 = −0.0837: loss = −w·logp, gradient −w
    logp = math.log(2.5) - 1.0
    _, g, m = one_token(2.5, 0.5, weight="importance_sampling")
    assert g == pytest.approx(-1.25) and m["weight_mean"] == pytest.approx(1.25)  # w = A·ρ
    value, g, _ = one_token(2.5, 0.5, weight="advantage", temperature=1.0)
    red = 0.5 * math.exp(0.5)  # RED-Weight A·exp(A/τ) = 0.82436
    assert g == pytest.approx(-red) and value == pytest.approx(-red * logp)


def test_rec_truncated_importance_sampling_clips_at_the_ring_edges():
    _, g, _ = one_token(2.5, 0.5, weight="truncated_importance_sampling")
    assert g == pytest.approx(-0.5 * 2.5)  # 2.5 inside [0.4, 3.0]: untouched
    _, g, _ = one_token(5.0, 0.5, weight="truncated_importance_sampling")
    assert g == pytest.approx(-0.5 * 3.0)  # truncated at 1 + ε'_high = 3
    _, g, _ = one_token(0.1, -2.0, weight="truncated_importance_sampling")
    assert g == pytest.approx(2.0 * 0.4)  # truncated at 1 − ε'_low = 0.4
    _, g, _ = one_token(0.5, 1.0, weight="advantage", temperature=0.5)
    assert g == pytest.approx(-1.0 * math.exp(2.0))  # A·exp(A/τ) with τ = 0.5


def test_rec_regularizers_hand_values():
    # ρ = 2 (logp − old = ln 2), A = 0: only the regularizer acts
    value, g, _ = one_token(2.0, 0.0, regularizer="k2", regularizer_coef=0.1)
    assert value == pytest.approx(0.1 * math.log(2.0) ** 2)  # c·(logp − old)²
    assert g == pytest.approx(0.2 * math.log(2.0))  # 2c·(logp − old)
    value, g, _ = one_token(2.0, 0.0, regularizer="forward-kl", regularizer_coef=0.1)
    assert value == pytest.approx(-0.1 * (math.log(2.0) - 1.0))  # −c·logp
    assert g == pytest.approx(-0.1)


def test_rec_at_ratio_one_is_group_mean_reinforce():
    """The spec's invariant: with ρ = 1 and clip_mode none, REC's gradient is group-mean REINFORCE's."""
    rollout, logp, _ = random_batch(1)
    adv = ADVANTAGES["dr_grpo"](rollout)  # [B, T]: r − mean_G r
    on_policy = rollout.replace(old_logp=torch.where(rollout.mask, logp, 0.0).detach())
    reference = logp.clone().requires_grad_()
    POLICY_LOSSES["reinforce"](reference, on_policy, adv)[0].backward()
    for mode in REC_CLIP_MODES:  # at ρ = 1 every mode keeps every token
        for weight in ("none", "importance_sampling", "truncated_importance_sampling"):
            x = logp.clone().requires_grad_()
            loss, metrics = POLICY_LOSSES["rec"](x, on_policy, adv, clip_mode=mode, weight=weight)
            loss.backward()
            torch.testing.assert_close(x.grad, reference.grad, rtol=1e-12, atol=1e-14)
            assert metrics["clip_frac"] == 0.0 and metrics["ratio_max"] == pytest.approx(1.0)


def test_rec_without_old_logp_is_reinforce_and_otherwise_needs_it():
    rollout, logp, adv = random_batch(2)
    no_old = rollout.replace(old_logp=None)
    a, b = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    POLICY_LOSSES["rec"](a, no_old, adv)[0].backward()
    POLICY_LOSSES["reinforce"](b, no_old, adv)[0].backward()
    torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(ValueError, match="old_logp"):
        POLICY_LOSSES["rec"](logp, no_old, adv, clip_mode="one-side")
    with pytest.raises(ValueError, match="old_logp"):
        POLICY_LOSSES["rec"](logp, no_old, adv, regularizer="k2", regularizer_coef=0.1)


def loop_rec(mask, logp, old, adv, mode, *, clip_mode, weight, regularizer, coef, tau=1.0):
    """An obvious per-token Python re-implementation of the REC loss (Trinity's formulas)."""
    B, T = mask.shape
    values = torch.zeros(B, T, dtype=F64)
    for i in range(B):
        for t in range(T):
            if not mask[i, t]:
                continue
            lp, o, a = logp[i, t].item(), old[i, t].item(), adv[i, t].item()
            rho = math.exp(lp - o)
            inside = 0.8 <= rho <= 1.2
            keep = {
                "none": True,
                "one-side": (a >= 0 and rho <= 1.2) or (a <= 0 and rho >= 0.8),
                "two-side": inside,
                "ring": inside or (a >= 0 and rho <= 0.4) or (a <= 0 and rho >= 3.0),
            }[clip_mode]
            w = {
                "none": a,
                "importance_sampling": a * rho,
                "truncated_importance_sampling": a * min(max(rho, 0.4), 3.0),
                "advantage": a * math.exp(a / tau),
            }[weight]
            value = -w * lp * keep
            if regularizer == "k2":
                value += coef * (lp - o) ** 2
            elif regularizer == "forward-kl":
                value -= coef * lp
            values[i, t] = value
    return AGGREGATIONS[mode](values, mask, norm_constant=NORM)


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
@pytest.mark.parametrize("clip_mode", REC_CLIP_MODES)
def test_rec_loop_equals_vectorised(mode, clip_mode):
    rollout, logp, adv = random_batch(3, spread=0.8)
    for weight in REC_WEIGHTS:
        for regularizer in REC_REGULARIZERS:
            want = loop_rec(
                rollout.mask, logp, rollout.old_logp, adv, mode,
                clip_mode=clip_mode, weight=weight, regularizer=regularizer, coef=0.07, tau=0.7,
            )  # fmt: skip
            loss, _ = POLICY_LOSSES["rec"](
                logp, rollout, adv, **agg_kwargs(mode),
                clip_mode=clip_mode, weight=weight, temperature=0.7, regularizer=regularizer, regularizer_coef=0.07,
            )  # fmt: skip
            assert loss.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-12)


def test_rec_padding_garbage_reaches_neither_loss_nor_gradient():
    rollout, logp, adv = random_batch(4)
    x = torch.where(rollout.mask, logp, torch.full_like(logp, float("nan"))).requires_grad_()
    old = torch.where(rollout.mask, rollout.old_logp, torch.full_like(logp, float("inf")))
    loss, metrics = POLICY_LOSSES["rec"](
        x, rollout.replace(old_logp=old), adv, clip_mode="ring", weight="advantage", regularizer="k2",
        regularizer_coef=0.1,
    )  # fmt: skip
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in metrics.values())
    assert (x.grad[~rollout.mask] == 0).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clip_mode": "both"}, "clip_mode must be one of"),
        ({"weight": "is"}, "weight must be one of"),
        ({"regularizer": "kl"}, "regularizer must be one of"),
        ({"epsilon_low": 0.0}, "epsilon_low must be a positive"),
        ({"epsilon_low": 1.5}, "epsilon_low must be <= 1"),
        ({"epsilon_high_prime": -1.0}, "epsilon_high_prime must be a positive"),
        ({"temperature": 0.0}, "temperature must be a positive"),
        ({"regularizer_coef": -0.1}, "regularizer_coef must be a number >= 0"),
    ],
)
def test_rec_rejects_bad_options(kwargs, message):
    rollout, logp, adv = random_batch(5)
    with pytest.raises(ValueError, match=message):
        POLICY_LOSSES["rec"](logp, rollout, adv, **kwargs)


# ---------------------------------------------------------------------------------------------------- OPMD loss
def test_opmd_loss_is_reinforce_over_one_plus_tau():
    rollout, logp, adv = random_batch(6)
    for mode in sorted(AGGREGATIONS):
        a, b = logp.clone().requires_grad_(), logp.clone().requires_grad_()
        la, _ = POLICY_LOSSES["opmd"](a, rollout, adv, tau=3.0, **agg_kwargs(mode))
        lb, _ = POLICY_LOSSES["reinforce"](b, rollout, adv, **agg_kwargs(mode))
        la.backward()
        lb.backward()
        assert la.item() == pytest.approx(lb.item() / 4.0, rel=1e-12)
        torch.testing.assert_close(a.grad, b.grad / 4.0)
    with pytest.raises(ValueError, match="tau must be a positive"):
        POLICY_LOSSES["opmd"](logp, rollout, adv, tau=0.0)


# ---------------------------------------------------------------------------------------------------- advantages
def test_asymre_minus_rec_advantage_is_delta_for_every_sample():
    rollout, _, _ = random_batch(7)  # includes a group of size 1
    diff = ADVANTAGES["asymre"](rollout) - ADVANTAGES["dr_grpo"](rollout)  # [B, T]
    torch.testing.assert_close(diff[rollout.mask], torch.full_like(diff[rollout.mask], 0.1))
    assert (diff[~rollout.mask] == 0).all()
    diff = ADVANTAGES["asymre"](rollout, delta=0.25) - ADVANTAGES["dr_grpo"](rollout)
    torch.testing.assert_close(diff[rollout.mask], torch.full_like(diff[rollout.mask], 0.25))


def test_asymre_hand_values_and_forward_kl_equivalence():
    r = Rollout(group=torch.tensor([0, 0, 0, 0]), mask=torch.ones(4, 2, dtype=torch.bool),
                reward=torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64))  # fmt: skip
    assert ADVANTAGES["asymre"](r)[:, 0].tolist() == pytest.approx([0.85, -0.15, -0.15, -0.15])
    # AsymRE with δ = REC + forward-KL regularizer with c = δ (arXiv 2509.24203): same loss, same gradient
    rollout, logp, _ = random_batch(8)
    a, b = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    la, _ = POLICY_LOSSES["rec"](a, rollout, ADVANTAGES["asymre"](rollout, delta=0.1))
    lb, _ = POLICY_LOSSES["rec"](
        b, rollout, ADVANTAGES["dr_grpo"](rollout), regularizer="forward-kl", regularizer_coef=0.1
    )
    la.backward()
    lb.backward()
    assert la.item() == pytest.approx(lb.item(), rel=1e-12)
    torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(ValueError, match="delta must be a finite number"):
        ADVANTAGES["asymre"](r, delta=float("nan"))


def test_opmd_advantage_hand_values_and_limits():
    r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool),
                reward=torch.tensor([1.0, 0.0], dtype=F64))  # fmt: skip
    base = math.log((math.e + 1) / 2)  # τ = 1: log mean(e^1, e^0) = 0.62011
    assert ADVANTAGES["opmd"](r)[:, 0].tolist() == pytest.approx([1 - base, -base])
    # τ → ∞: the group mean (dr_grpo); τ → 0: the group max
    assert ADVANTAGES["opmd"](r, tau=1e6)[:, 0].tolist() == pytest.approx([0.5, -0.5], abs=1e-6)
    assert ADVANTAGES["opmd"](r, tau=1e-3)[:, 0].tolist() == pytest.approx([0.0, -1.0], abs=1e-2)
    big = r.replace(reward=torch.tensor([1000.0, 0.0], dtype=F64))  # no overflow with large rewards
    assert ADVANTAGES["opmd"](big, tau=0.5)[:, 0].tolist() == pytest.approx(
        [0.5 * math.log(2), -1000 + 0.5 * math.log(2)]
    )
    with pytest.raises(ValueError, match="tau must be a positive"):
        ADVANTAGES["opmd"](r, tau=-1.0)


def test_opmd_advantage_loop_equals_vectorised():
    rollout, _, _ = random_batch(9)
    tau = 0.7
    want = []
    for i in range(rollout.batch_size):
        members = [rollout.reward[j].item() for j in range(rollout.batch_size) if rollout.group[j] == rollout.group[i]]
        baseline = tau * math.log(sum(math.exp(x / tau) for x in members) / len(members))
        want.append(rollout.reward[i].item() - baseline)
    got = ADVANTAGES["opmd"](rollout, tau=tau)  # [B, T]
    for i in range(rollout.batch_size):
        assert got[i][rollout.mask[i]].tolist() == pytest.approx([want[i]] * int(rollout.mask[i].sum()))
    assert (got[~rollout.mask] == 0).all()
    assert got[3][0].item() == 0.0  # the size-1 group: baseline = r
    assert (got <= ADVANTAGES["dr_grpo"](rollout) + 1e-12).all()  # logavgexp ≥ mean (Jensen)


# ---------------------------------------------------------------------------------------------------- LOOP selector
def test_min_abs_advantage_hand_example():
    """LOOP drops rollouts with |A| < 0.01: RLOO on rewards [1, 0, 0.5] gives [0.75, −0.75, 0]."""
    r = Rollout(group=torch.tensor([0, 0, 0, 1]), mask=torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]]).bool(),
                reward=torch.tensor([1.0, 0.0, 0.5, 0.0], dtype=F64))  # fmt: skip
    adv = ADVANTAGES["rloo"](r)  # [B, T]; the size-1 group gets 0 too
    new_adv, keep, metrics = SELECTORS["min_abs_advantage"](r, adv, threshold=0.01)
    assert keep.tolist() == [[True, True], [True, False], [False, False], [False, False]]
    assert new_adv.tolist() == [[0.75, 0.75], [-0.75, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert metrics["selector/min_abs_advantage_dropped_frac"] == 0.5


def test_min_abs_advantage_threshold_edges_and_garbage():
    r = Rollout(group=torch.tensor([0, 0]), mask=torch.tensor([[1, 0], [1, 1]]).bool(), reward=torch.zeros(2))
    adv = torch.tensor([[0.01, float("nan")], [-0.0099, 5.0]])  # NaN at padding; token-level test
    _, keep, _ = SELECTORS["min_abs_advantage"](r, adv)
    assert keep.tolist() == [[True, False], [False, True]]  # |A| = 0.01 is kept (LOOP keeps |A| ≥ threshold)
    _, keep, _ = SELECTORS["min_abs_advantage"](r, adv, threshold=0.0)
    assert keep.tolist() == r.mask.tolist()
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        SELECTORS["min_abs_advantage"](r, adv, threshold=-0.1)
    with pytest.raises(ValueError, match=r"advantages must be a float tensor \[B, T\]"):
        SELECTORS["min_abs_advantage"](r, torch.zeros(2))
