"""Tests for grpolab.core.losses: hand-computed per-token values, paper invariants, loop-vs-vectorised."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.aggregation import AGGREGATIONS
from grpolab.core.losses import POLICY_LOSSES, _gspo_token_ratio, value_loss
from grpolab.core.registry import UnknownNameError
from grpolab.core.types import Rollout

F64 = torch.float64
RATIO_LOSSES = ["clip_higher", "gspo", "ppo_clip"]
MODES = sorted(AGGREGATIONS)
NORM = 7.0  # norm_constant for seq_sum_const (= T of the random batches)


# ---------------------------------------------------------------------------------------------------- helpers
def make_rollout(mask: torch.Tensor, **fields) -> Rollout:
    B = mask.shape[0]
    group = torch.tensor([i % 3 for i in range(B)]) if B >= 3 else torch.zeros(B, dtype=torch.long)
    return Rollout(group=group, mask=mask, reward=torch.zeros(B, dtype=F64), **fields)


def one_token(loss: str, ratio: float, adv: float, **kw) -> tuple[float, float, dict]:
    """Loss value and d loss / d logp of a single valid token with the given ratio and advantage."""
    logp = torch.tensor([[math.log(ratio)]], dtype=F64, requires_grad=True)
    r = make_rollout(torch.ones(1, 1, dtype=torch.bool), old_logp=torch.zeros(1, 1, dtype=F64))
    value, metrics = POLICY_LOSSES[loss](logp, r, torch.tensor([[adv]], dtype=F64), **kw)
    value.backward()
    return value.item(), logp.grad.item(), metrics


def random_batch(seed: int, B: int = 6, T: int = 7, spread: float = 0.3, seq_adv: bool = False):
    """(mask, logp, old_logp, advantages) with unequal lengths 1..T and garbage at padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 7, 3, 5, 2, 6])[:B]
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    old = -torch.rand(B, T, generator=g, dtype=F64) * 3  # [B, T]
    logp = old + spread * torch.randn(B, T, generator=g, dtype=F64)  # [B, T]
    if seq_adv:
        adv = torch.randn(B, 1, generator=g, dtype=F64).expand(B, T).clone()  # [B, T]
    else:
        adv = torch.randn(B, T, generator=g, dtype=F64)  # [B, T]
    garbage = lambda: (torch.rand(B, T, generator=g, dtype=F64) - 0.5) * 2e4  # noqa: E731
    logp = torch.where(mask, logp, garbage())
    old = torch.where(mask, old, garbage())
    adv = torch.where(mask, adv, garbage())
    return mask, logp, old, adv


def agg_kwargs(mode: str) -> dict:
    return {"aggregation": mode, "norm_constant": NORM} if mode == "seq_sum_const" else {"aggregation": mode}


# the baseline losses of this file (newer losses test the same invariants in their own files)
BASELINES = ["clip_higher", "gspo", "ppo_clip", "reinforce"]


def test_registry_names():
    assert set(BASELINES) <= set(POLICY_LOSSES)


# ---------------------------------------------------------------------------------------------------- hand values
# (ratio, A, per-token loss, d loss / d logp, clipped?). ε = 0.2: band [0.8, 1.2].
PPO_CASES = [
    (1.1, 2.0, -2.2, -2.2, False),  # inside: −Aρ, gradient −Aρ
    (1.5, 2.0, -2.4, 0.0, True),  # above, A > 0: −A(1+ε) = −2.4, clipped, no gradient
    (0.5, 2.0, -1.0, -1.0, False),  # below, A > 0: max(−1.0, −1.6) = −1.0, unclipped
    (1.1, -1.0, 1.1, 1.1, False),  # inside, A < 0
    (1.5, -1.0, 1.5, 1.5, False),  # above, A < 0: max(1.5, 1.2) = 1.5, unclipped
    (0.5, -1.0, 0.8, 0.0, True),  # below, A < 0: max(0.5, 0.8) = 0.8, clipped
]


@pytest.mark.parametrize(("ratio", "adv", "want", "grad", "clipped"), PPO_CASES)
def test_ppo_clip_per_token(ratio, adv, want, grad, clipped):
    value, g, metrics = one_token("ppo_clip", ratio, adv)
    assert value == pytest.approx(want, rel=1e-12)
    assert g == pytest.approx(grad, rel=1e-12, abs=1e-15)
    assert metrics["clip_frac"] == float(clipped)


# clip_higher, ε_low = 0.2, ε_high = 0.28: band [0.8, 1.28]
CLIP_HIGHER_CASES = [
    (1.25, 2.0, -2.5, -2.5, False),  # inside the wider band (ppo_clip would clip to −2.4)
    (1.3, 2.0, -2.56, 0.0, True),  # above: −2 · 1.28
    (0.75, -1.0, 0.8, 0.0, True),  # below: the lower side is still 0.8
    (0.85, -1.0, 0.85, 0.85, False),
    (1.25, -1.0, 1.25, 1.25, False),
]


@pytest.mark.parametrize(("ratio", "adv", "want", "grad", "clipped"), CLIP_HIGHER_CASES)
def test_clip_higher_per_token(ratio, adv, want, grad, clipped):
    value, g, metrics = one_token("clip_higher", ratio, adv)
    assert value == pytest.approx(want, rel=1e-12)
    assert g == pytest.approx(grad, rel=1e-12, abs=1e-15)
    assert metrics["clip_frac"] == float(clipped)


def test_clip_higher_band_is_asymmetric_and_ppo_clip_differs():
    assert one_token("ppo_clip", 1.25, 2.0)[0] == pytest.approx(-2.4)  # −2 · 1.2
    assert one_token("clip_higher", 1.25, 2.0)[0] == pytest.approx(-2.5)  # −2 · 1.25, inside [0.8, 1.28]
    # a custom band
    value = one_token("clip_higher", 0.5, -1.0, epsilon_low=0.1, epsilon_high=0.5)[0]
    assert value == pytest.approx(0.9)  # max(0.5, 0.9)
    value = one_token("clip_higher", 2.0, 1.0, epsilon_low=0.1, epsilon_high=0.5)[0]
    assert value == pytest.approx(-1.5)  # max(−2, −1.5)


# dual clip c = 3
DUAL_CASES = [
    ("ppo_clip", 5.0, -1.0, 3.0, 0.0, True),  # min(max(5, 1.2), 3) = 3, capped, no gradient
    ("ppo_clip", 2.0, -1.0, 2.0, 2.0, False),  # min(2, 3) = 2
    ("ppo_clip", 0.5, -1.0, 0.8, 0.0, False),  # lower clip 0.8 < 3: dual inactive
    ("ppo_clip", 5.0, 2.0, -2.4, 0.0, False),  # A > 0: dual clip never applies
    ("clip_higher", 5.0, -2.0, 6.0, 0.0, True),  # min(10, 3 · 2) = 6
]


@pytest.mark.parametrize(("loss", "ratio", "adv", "want", "grad", "dual"), DUAL_CASES)
def test_dual_clip_per_token(loss, ratio, adv, want, grad, dual):
    value, g, metrics = one_token(loss, ratio, adv, dual_clip=3.0)
    assert value == pytest.approx(want, rel=1e-12)
    assert g == pytest.approx(grad, rel=1e-12, abs=1e-15)
    assert metrics["dual_clip_frac"] == float(dual)


def test_dual_clip_off_by_default():
    value, _, metrics = one_token("ppo_clip", 5.0, -1.0)
    assert value == pytest.approx(5.0)
    assert "dual_clip_frac" not in metrics


def padded_hand_batch():
    """2 x 4: ratios [1.1, 1.5, 0.5] in both rows, A = 2 then −1, garbage at t = 3."""
    mask = torch.tensor([[True, True, True, False], [True, True, True, False]])
    ratios = torch.tensor([1.1, 1.5, 0.5, 1.0], dtype=F64)
    logp = ratios.log().repeat(2, 1)  # [2, 4]
    logp[:, 3] = 100.0
    old = torch.zeros(2, 4, dtype=F64)
    old[:, 3] = -100.0
    adv = torch.tensor([[2.0, 2.0, 2.0, 1e6], [-1.0, -1.0, -1.0, -1e6]], dtype=F64)
    return mask, logp, old, adv


def test_ppo_clip_batch_and_metrics_by_hand():
    mask, logp, old, adv = padded_hand_batch()
    r = make_rollout(mask, old_logp=old)
    loss, m = POLICY_LOSSES["ppo_clip"](logp, r, adv)
    # token_mean of (−2.2, −2.4, −1.0, 1.1, 1.5, 0.8) = −2.2 / 6
    assert loss.item() == pytest.approx(-2.2 / 6, rel=1e-12)
    assert m["loss"] == pytest.approx(-2.2 / 6, rel=1e-12)
    # clipped: (A=2, ρ=1.5) above the band and (A=−1, ρ=0.5) below it: 2 of 6 valid tokens
    assert m["clip_frac"] == pytest.approx(2 / 6)
    assert m["clip_frac_high"] == pytest.approx(1 / 6)
    assert m["clip_frac_low"] == pytest.approx(1 / 6)
    assert m["adv_mean"] == pytest.approx(0.5)  # (3 · 2 − 3 · 1) / 6
    assert m["ratio_mean"] == pytest.approx(3.1 / 3)  # (1.1 + 1.5 + 0.5) / 3
    assert (m["ratio_min"], m["ratio_max"]) == pytest.approx((0.5, 1.5))
    # (ρ − 1) − ln ρ: 0.1 − 0.0953102 = 0.0046898; 0.5 − 0.4054651 = 0.0945349; −0.5 + 0.6931472 = 0.1931472
    assert m["approx_kl"] == pytest.approx((0.0046898 + 0.0945349 + 0.1931472) / 3, abs=1e-7)
    # seq_mean_token_mean: row means (−5.6/3, 3.4/3), mean −2.2/6 again (equal lengths); seq_mean_token_sum: −1.1
    loss, _ = POLICY_LOSSES["ppo_clip"](logp, r, adv, aggregation="seq_mean_token_sum")
    assert loss.item() == pytest.approx(-1.1, rel=1e-12)
    loss, _ = POLICY_LOSSES["ppo_clip"](logp, r, adv, aggregation="seq_sum_const", norm_constant=10)
    assert loss.item() == pytest.approx(-2.2 / 20, rel=1e-12)


def test_reinforce_by_hand():
    mask = torch.tensor([[True, True, False], [True, False, False]])
    logp = torch.tensor([[-0.5, -1.0, 7.0], [-2.0, 9.0, -9.0]], dtype=F64, requires_grad=True)
    adv = torch.tensor([[2.0, 2.0, 5.0], [-1.0, 3.0, 3.0]], dtype=F64)
    r = make_rollout(mask)  # no old_logp needed
    # per token −A·logp: 1.0, 2.0 | −2.0
    loss, m = POLICY_LOSSES["reinforce"](logp, r, adv)
    assert loss.item() == pytest.approx(1.0 / 3)
    assert m["adv_mean"] == pytest.approx(1.0)  # (2 + 2 − 1) / 3
    assert set(m) == {"loss", "adv_mean"}
    loss.backward()
    # d/dlogp = −A / 3 at valid tokens, 0 at padding
    torch.testing.assert_close(logp.grad, torch.tensor([[-2 / 3, -2 / 3, 0.0], [1 / 3, 0.0, 0.0]], dtype=F64))
    loss, _ = POLICY_LOSSES["reinforce"](logp, r, adv, aggregation="seq_mean_token_mean")
    assert loss.item() == pytest.approx(-0.25)  # (1.5 + (−2)) / 2


# ------------------------------------------------------------------------------------------- loop vs vectorised
def loop_clip_loss(logp, old, adv, mask, eps_low, eps_high, dual):
    """Slow per-token PPO/DAPO loss with token_mean aggregation, and the clip fractions."""
    total, n, clipped, low, high, dual_n = 0.0, 0, 0, 0, 0, 0
    for i in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if not mask[i, t]:
                continue
            rho = math.exp(float(logp[i, t]) - float(old[i, t]))
            a = float(adv[i, t])
            un = -a * rho
            cl = -a * min(max(rho, 1 - eps_low), 1 + eps_high)
            loss = max(un, cl)
            if cl > un:
                clipped += 1
                low += rho < 1 - eps_low
                high += rho > 1 + eps_high
            if dual is not None and a < 0 and -dual * a < loss:
                loss = -dual * a
                dual_n += 1
            total += loss
            n += 1
    return total / n, clipped / n, low / n, high / n, dual_n / n


@pytest.mark.parametrize(
    ("loss", "kw", "eps"),
    [
        ("ppo_clip", {}, (0.2, 0.2)),
        ("ppo_clip", {"epsilon": 0.1, "dual_clip": 1.5}, (0.1, 0.1)),
        ("clip_higher", {}, (0.2, 0.28)),
        ("clip_higher", {"dual_clip": 1.2}, (0.2, 0.28)),
    ],
)
def test_loop_equals_vectorised(loss, kw, eps):
    for seed in range(3):
        mask, logp, old, adv = random_batch(seed, spread=0.5)
        value, m = POLICY_LOSSES[loss](logp, make_rollout(mask, old_logp=old), adv, **kw)
        want, frac, low, high, dual = loop_clip_loss(logp, old, adv, mask, *eps, kw.get("dual_clip"))
        assert value.item() == pytest.approx(want, rel=1e-10)
        assert (m["clip_frac"], m["clip_frac_low"], m["clip_frac_high"]) == pytest.approx((frac, low, high))
        assert 0 < frac < 1  # the batch exercises both branches
        if "dual_clip" in kw:
            assert m["dual_clip_frac"] == pytest.approx(dual)


# ---------------------------------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss", RATIO_LOSSES)
def test_ratio_one_gradient_equals_reinforce(loss, mode):
    # At ρ = 1 (old = logp.detach()) no token is clipped and ∇(−Aρ) = −A∇logp: the REINFORCE gradient.
    mask, logp, _, adv = random_batch(seed=3)
    logp_a = logp.clone().requires_grad_(True)
    r = make_rollout(mask, old_logp=logp.detach().clone())
    value, m = POLICY_LOSSES[loss](logp_a, r, adv, **agg_kwargs(mode))
    value.backward()
    assert m["clip_frac"] == 0.0 and m["ratio_min"] == 1.0 and m["ratio_max"] == 1.0 and m["approx_kl"] == 0.0

    logp_b = logp.clone().requires_grad_(True)
    POLICY_LOSSES["reinforce"](logp_b, r, adv, **agg_kwargs(mode))[0].backward()
    torch.testing.assert_close(logp_a.grad, logp_b.grad, rtol=1e-12, atol=1e-15)
    assert (logp_a.grad[~mask] == 0).all()
    assert logp_a.grad[mask].abs().min() > 0  # non-trivial gradient at every valid token


def gspo_sequence_level(logp, old, mask, adv_seq, eps_low, eps_high):
    """Direct sequence-level GSPO: s_i = exp(mean_t (logp − old)); mean_i max(−A s, −A clip(s))."""
    m = mask.to(F64)  # [B, T]
    log_s = ((logp - old) * m).sum(-1) / m.sum(-1)  # [B] (inputs are clean at padding here)
    s = torch.exp(log_s)  # [B]
    per_seq = torch.maximum(-adv_seq * s, -adv_seq * torch.clamp(s, 1 - eps_low, 1 + eps_high))  # [B]
    return per_seq.mean()


@pytest.mark.parametrize("eps", [(0.01, 0.01), (3e-4, 4e-4)])
def test_gspo_equals_sequence_level_objective(eps):
    mask, logp, old, adv = random_batch(seed=5, spread=0.05, seq_adv=True)
    # GSPO-token with the garbage-padded inputs
    logp_a = logp.clone().requires_grad_(True)
    value, m = POLICY_LOSSES["gspo"](
        logp_a, make_rollout(mask, old_logp=old), adv, epsilon_low=eps[0], epsilon_high=eps[1]
    )
    value.backward()
    # direct sequence-level version with clean padding
    zero = torch.zeros_like(logp)
    logp_b = torch.where(mask, logp, zero).requires_grad_(True)
    want = gspo_sequence_level(logp_b, torch.where(mask, old, zero), mask, adv[:, 0], *eps)
    want.backward()
    assert value.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(logp_a.grad, logp_b.grad, rtol=1e-12, atol=1e-15)
    if eps == (0.01, 0.01):
        assert 0 < m["clip_frac"] < 1  # some sequences clipped, some not: both branches are compared


def test_gspo_ratio_is_the_same_for_every_token_of_a_sequence():
    mask, logp, old, adv = random_batch(seed=6, spread=0.2)
    clean = torch.where(mask, logp, torch.zeros_like(logp))
    clean_old = torch.where(mask, old, torch.zeros_like(old))
    ratio, log_s = _gspo_token_ratio(clean, clean_old, mask)
    for i in range(mask.shape[0]):
        n = int(mask[i].sum())
        s_i = math.exp(sum(float(clean[i, t] - clean_old[i, t]) for t in range(n)) / n)  # geometric mean
        assert ratio[i].tolist() == [pytest.approx(s_i, rel=1e-12)] * mask.shape[1]
        assert len(set(ratio[i].tolist())) == 1  # bit-identical across the row
    # through the public API: metrics of each single sequence show one ratio
    r = make_rollout(mask, old_logp=old)
    for i in range(mask.shape[0]):
        keep = torch.arange(mask.shape[0]) == i
        _, m = POLICY_LOSSES["gspo"](logp[keep], r.select(keep), adv[keep])
        assert m["ratio_min"] == m["ratio_max"] == pytest.approx(math.exp(log_s[i].item()))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss", BASELINES)
def test_garbage_at_padding_is_ignored(loss, mode):
    mask, logp, old, adv = random_batch(seed=7)
    zero = torch.zeros_like(logp)
    results = []
    for fill in ("clean", "garbage", "nan"):
        if fill == "clean":
            inputs = [torch.where(mask, x, zero) for x in (logp, old, adv)]
        elif fill == "garbage":  # large random values (exp would overflow without the masking)
            inputs = [logp, old, adv]
        else:
            inputs = [torch.where(mask, x, torch.full_like(x, math.nan)) for x in (logp, old, adv)]
        lp = inputs[0].clone().requires_grad_(True)
        value, metrics = POLICY_LOSSES[loss](lp, make_rollout(mask, old_logp=inputs[1]), inputs[2], **agg_kwargs(mode))
        value.backward()
        results.append((value.item(), lp.grad, metrics))
    (v0, g0, m0), *others = results
    assert math.isfinite(v0)
    for v, g, m in others:
        assert v == v0
        assert torch.equal(g, g0)
        assert m == m0
    assert (g0[~mask] == 0).all()


@pytest.mark.parametrize("loss", BASELINES)
def test_micro_batches_with_global_counts_sum_to_full_batch(loss):
    mask, logp, old, adv = random_batch(seed=8, spread=0.5)
    r = make_rollout(mask, old_logp=old)
    for mode in MODES:
        counts = {"num_tokens": int(mask.sum()), "num_seqs": mask.shape[0], "norm_constant": NORM}
        full_lp = logp.clone().requires_grad_(True)
        full, _ = POLICY_LOSSES[loss](full_lp, r, adv, aggregation=mode, norm_constant=NORM)
        full.backward()
        micro_lp = logp.clone().requires_grad_(True)
        total = 0.0
        for lo, hi in ((0, 1), (1, 3), (3, 6)):
            keep = (torch.arange(6) >= lo) & (torch.arange(6) < hi)
            part, _ = POLICY_LOSSES[loss](micro_lp[keep], r.select(keep), adv[keep], aggregation=mode, **counts)
            total = total + part
        total.backward()
        assert total.item() == pytest.approx(full.item(), rel=1e-12)
        torch.testing.assert_close(micro_lp.grad, full_lp.grad, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------------- value loss
def value_batch():
    """1 x 4, padding at t = 3. V, V_old, R chosen so that t = 2 is clipped (clip moves V away from R)."""
    mask = torch.tensor([[True, True, True, False]])
    values = torch.tensor([[1.0, 2.0, 0.9, 55.0]], dtype=F64)
    v_old = torch.tensor([[0.8, 1.0, 0.0, -66.0]], dtype=F64)
    returns = torch.tensor([[1.5, 0.0, 1.0, math.nan]], dtype=F64)
    return mask, values, v_old, returns


def test_value_loss_clipped_by_hand():
    mask, values, v_old, returns = value_batch()
    v = values.clone().requires_grad_(True)
    loss, m = value_loss(v, make_rollout(mask, value=v_old), returns)  # ε_v = 0.2
    # t0: (1 − 1.5)² = 0.25; clip(1.0, 0.6, 1.0) = 1.0 → 0.25; ½ · 0.25 = 0.125
    # t1: (2 − 0)² = 4; clip(2.0, 0.8, 1.2) = 1.2 → 1.44; ½ · 4 = 2.0
    # t2: (0.9 − 1)² = 0.01; clip(0.9, −0.2, 0.2) = 0.2 → 0.64; ½ · 0.64 = 0.32 (clipped branch)
    assert loss.item() == pytest.approx((0.125 + 2.0 + 0.32) / 3, rel=1e-12)
    assert m["vf_loss"] == pytest.approx(0.815, rel=1e-12)
    assert m["vf_clip_frac"] == pytest.approx(1 / 3)
    assert m["value_mean"] == pytest.approx(1.3)  # (1 + 2 + 0.9) / 3
    loss.backward()
    # d/dV: (V − R)/3 where unclipped (t0 ties with the same value), 0 where the clipped branch wins
    torch.testing.assert_close(v.grad, torch.tensor([[-0.5 / 3, 2.0 / 3, 0.0, 0.0]], dtype=F64))


def test_value_loss_unclipped_by_hand():
    mask, values, _, returns = value_batch()
    v = values.clone().requires_grad_(True)
    loss, m = value_loss(v, make_rollout(mask), returns, clip_eps=None)  # no rollout.value needed
    # ½ (0.25 + 4 + 0.01) / 3 = 0.71
    assert loss.item() == pytest.approx(0.71, rel=1e-12)
    assert m["vf_clip_frac"] == 0.0
    loss.backward()
    torch.testing.assert_close(v.grad, torch.tensor([[-0.5 / 3, 2.0 / 3, -0.1 / 3, 0.0]], dtype=F64))
    loss, _ = value_loss(values, make_rollout(mask), returns, clip_eps=None, aggregation="seq_mean_token_sum")
    assert loss.item() == pytest.approx(2.13, rel=1e-12)


def test_value_loss_errors():
    mask, values, v_old, returns = value_batch()
    with pytest.raises(ValueError, match=r"needs rollout.value.*clip_eps=None"):
        value_loss(values, make_rollout(mask), returns)
    with pytest.raises(ValueError, match="clip_eps"):
        value_loss(values, make_rollout(mask, value=v_old), returns, clip_eps=0.0)
    with pytest.raises(ValueError, match="returns"):
        value_loss(values, make_rollout(mask, value=v_old), returns[:, :2])


# ---------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("loss", RATIO_LOSSES)
def test_missing_old_logp(loss):
    mask, logp, _, adv = random_batch(seed=0)
    with pytest.raises(ValueError, match=r"needs rollout.old_logp.*old_logp = logp.detach\(\)"):
        POLICY_LOSSES[loss](logp, make_rollout(mask), adv)


@pytest.mark.parametrize("loss", BASELINES)
def test_shape_errors(loss):
    mask, logp, old, adv = random_batch(seed=0)
    r = make_rollout(mask, old_logp=old)
    with pytest.raises(ValueError, match="logp must be"):
        POLICY_LOSSES[loss](logp[:, :3], r, adv)
    with pytest.raises(ValueError, match="expand_as"):
        POLICY_LOSSES[loss](logp, r, adv[:, 0])
    with pytest.raises(UnknownNameError, match="token_mean"):
        POLICY_LOSSES[loss](logp, r, adv, aggregation="mean")


@pytest.mark.parametrize(
    ("loss", "kw", "match"),
    [
        ("ppo_clip", {"epsilon": 0.0}, "epsilon"),
        ("ppo_clip", {"epsilon": 1.0}, "epsilon"),
        ("ppo_clip", {"dual_clip": 1.0}, "dual_clip"),
        ("clip_higher", {"epsilon_low": -0.1}, "epsilon_low"),
        ("clip_higher", {"epsilon_high": math.nan}, "epsilon_high"),
        ("clip_higher", {"dual_clip": 0.5}, "dual_clip"),
        ("gspo", {"epsilon_low": 0.0}, "epsilon_low"),
        ("ppo_clip", {"aggregation": "seq_sum_const"}, "norm_constant"),
    ],
)
def test_bad_hyper_parameters(loss, kw, match):
    mask, logp, old, adv = random_batch(seed=0)
    with pytest.raises(ValueError, match=match):
        POLICY_LOSSES[loss](logp, make_rollout(mask, old_logp=old), adv, **kw)


def test_value_loss_finished_only_trains_the_critic_on_ended_completions():
    # Truncated PPO (arXiv 2506.15050): a truncated response has no Monte-Carlo return, so its tokens count 0
    # while the mini-batch token count still normalises (micro-batches keep summing to the batch loss).
    mask = torch.tensor([[True, True], [True, False]])
    r = Rollout(group=torch.tensor([0, 0]), mask=mask, reward=torch.zeros(2), truncated=torch.tensor([True, False]))
    values = torch.tensor([[1.0, 2.0], [3.0, 9.0]], requires_grad=True)
    returns = torch.zeros(2, 2)
    loss, _ = value_loss(values, r, returns, clip_eps=None, finished_only=True)
    assert loss.item() == pytest.approx(0.5 * 9.0 / 3)  # only the finished row's one token: ½·3² over 3 tokens
    loss.backward()
    assert values.grad.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    plain, _ = value_loss(values, r, returns, clip_eps=None)
    assert plain.item() == pytest.approx(0.5 * (1 + 4 + 9) / 3)
