"""Tests of grpolab.core.advantage_variants (RiskPO, BNPO, HRPO): hand-computed values, paper invariants,
loop-vs-vectorised equivalence on random unequal non-contiguous groups, state save/load, bad input."""

from __future__ import annotations

import io
import math
from collections import defaultdict

import pytest
import torch

from grpolab.core.advantage_variants import (
    RISK_LEVELS,
    beta_log_pdf,
    bnpo,
    hrpo,
    risk_paper_advantage,
    riskpo,
)
from grpolab.core.advantages import ADVANTAGES, dr_grpo, grpo
from grpolab.core.types import Rollout

NAN = float("nan")


def make(group, reward, T=2, mask=None, **kw) -> Rollout:
    group = torch.tensor(group)  # [B]
    reward = torch.as_tensor(reward, dtype=torch.float64)  # [B]
    mask = torch.ones(len(group), T, dtype=torch.bool) if mask is None else torch.tensor(mask).bool()  # [B, T]
    return Rollout(group=group, mask=mask, reward=reward, **kw)


def random_rollout(seed: int, sizes=(3, 1, 4, 3, 2, 3, 5), binary=True, T=4) -> Rollout:
    """Unequal groups in shuffled (non-contiguous) order, random masks, NaN token rewards at padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.full((n,), p) for p, n in enumerate(sizes)])  # [B]
    group = ids[torch.randperm(len(ids), generator=gen)]  # [B]
    B = len(group)
    mask = torch.rand(B, T, generator=gen) < 0.6  # [B, T]
    mask[:, 0] = True
    if binary:
        reward = (torch.rand(B, generator=gen) < 0.5).double()  # [B]
    else:
        reward = torch.rand(B, generator=gen, dtype=torch.float64)  # [B] in [0, 1]
    token_reward = torch.randn(B, T, generator=gen, dtype=torch.float64).masked_fill(~mask, NAN)  # [B, T]
    rewards = torch.stack([reward, (torch.rand(B, generator=gen) < 0.7).double()], dim=1)  # [B, 2]
    return Rollout(
        group=group,
        mask=mask,
        reward=reward,
        rewards=rewards,
        reward_names=("accuracy", "format"),
        token_reward=token_reward,
    )


def seq(adv: torch.Tensor) -> list[float]:
    """The per-completion value of a broadcast [B, T] advantage (first token is always valid here)."""
    return adv[:, 0].tolist()


# ================================================================================================== RiskPO
# ------------------------------------------------------------------------ the slow reference (mirrors the code)
def quantile_loop(xs: list[float], q: float) -> float:
    """Linear-interpolation quantile (torch.quantile's default), by hand."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def std_loop(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def riskpo_loop(r, group, state, *, B=5, alpha=0.2, beta=0.9, lr_q=0.1, mode="track", measure="mvar", w=1.5,
                c=True, std_norm=True, credit="std", eps=1e-6):  # fmt: skip
    """RiskPO with Python lists and dicts, in the order of RTkenny/RiskPO's core_algos / ray_trainer code."""
    P = max(group) + 1
    members = defaultdict(list)  # prompt -> completion indices in batch order
    for i, q in enumerate(group):
        members[q].append(i)
    adv = [0.0] * len(r)
    all_papers = []
    q_std = {q: std_loop([r[i] for i in members[q]]) for q in range(P)}
    q_mean = {q: sum(r[i] for i in members[q]) / len(members[q]) for q in range(P)}
    bundles = [list(range(k, min(k + B, P))) for k in range(0, P, B)]
    tracked = state.get("quantiles")
    papers_of = []
    for prompts in bundles:
        n = min(len(members[q]) for q in prompts)
        papers = [[members[q][j] for q in prompts] for j in range(n)]
        scores = [sum(r[i] for i in paper) for paper in papers]
        all_papers += scores
        papers_of.append((papers, scores))
    for papers, scores in papers_of:
        bq_down, bq_up = quantile_loop(scores, alpha), quantile_loop(scores, beta)
        if tracked is None or mode == "batch":
            qd, qu = bq_down, bq_up
        else:
            k_down = min(range(19), key=lambda k: abs(RISK_LEVELS[k] - alpha))
            k_up = min(range(19), key=lambda k: abs(RISK_LEVELS[k] - beta))
            td, tu = float(tracked[k_down]), float(tracked[k_up])
            qd, qu = (td, tu) if mode == "track" else ((td + bq_down) / 2, (tu + bq_up) / 2)
        sd = std_loop(scores)
        sd = sd if sd > 1e-3 else 1.0
        for paper, s in zip(papers, scores, strict=True):
            g = (max(s - qd, 0) - max(s - qu, 0) + (qd - qu if c else 0.0)) / (beta - alpha)
            low = -max(qd - s, 0) / alpha
            a = {"rvar": g, "cvar": low, "mvar": (w * low + g) / (w + 1),
                 "risk_seeking": (w * max(s - qu, 0) / (1 - beta) + g) / (w + 1)}[measure]  # fmt: skip
            if std_norm:
                a = a / (sd + eps)
            ratios = [r[i] - q_mean[group[i]] for i in paper]
            for i, ratio in zip(paper, ratios, strict=True):
                if credit == "uniform":
                    adv[i] = a
                elif credit == "std":
                    s_q = q_std[group[i]]
                    adv[i] = a / ((s_q if s_q > 1e-3 else 1.0) + eps)
                else:
                    total = sum(ratios)
                    adv[i] = a * ratio / total if abs(total) > 1e-6 else a / len(paper)
    levels = list(RISK_LEVELS)
    if tracked is None:
        new = [quantile_loop(all_papers, a) for a in levels]
    else:
        new = [float(q) + lr_q * (a - sum(s < float(q) for s in all_papers) / len(all_papers))
               for q, a in zip(tracked, levels, strict=True)]  # fmt: skip
    state["quantiles"] = new
    return adv


# --------------------------------------------------------------------------------------------- paper advantage
def test_rvar_and_cvar_weights_match_the_spec_hand_check():
    # q_down 1, q_up 3, α 0.2, β 0.8, c 1, S ∈ {0, 2, 4}: g = [−2, −1, 0] / 0.6, cvar = [−5, 0, 0]
    S = torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64)
    g = risk_paper_advantage(S, 1.0, 3.0, alpha=0.2, beta=0.8, measure="rvar")
    cvar = risk_paper_advantage(S, 1.0, 3.0, alpha=0.2, beta=0.8, measure="cvar")
    assert g.tolist() == pytest.approx([-2 / 0.6, -1 / 0.6, 0.0])
    assert cvar.tolist() == pytest.approx([-5.0, 0.0, 0.0])


def test_mvar_mixes_cvar_and_rvar_with_weight_w():
    # (1.5·cvar + g) / 2.5: S=0 → (−7.5 − 10/3)/2.5 = −13/3; S=2 → (−5/3)/2.5 = −2/3; S=4 → 0
    S = torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64)
    mvar = risk_paper_advantage(S, 1.0, 3.0, alpha=0.2, beta=0.8, measure="mvar", w_mix=1.5)
    assert mvar.tolist() == pytest.approx([-13 / 3, -2 / 3, 0.0])


def test_rvar_without_natural_baseline_and_risk_seeking_tail():
    S = torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64)
    # c = 0: g = [(S−1)+ − (S−3)+] / 0.6 = [0, 1, 2] / 0.6
    g0 = risk_paper_advantage(S, 1.0, 3.0, alpha=0.2, beta=0.8, measure="rvar", natural_baseline=False)
    assert g0.tolist() == pytest.approx([0.0, 1 / 0.6, 2 / 0.6])
    # upper tail (S−3)+/(1−0.8) = [0, 0, 5]; (1.5·upper + g)/2.5 with g = [−10/3, −5/3, 0] → [−4/3, −2/3, 3]
    up = risk_paper_advantage(S, 1.0, 3.0, alpha=0.2, beta=0.8, measure="risk_seeking")
    assert up.tolist() == pytest.approx([-4 / 3, -2 / 3, 3.0])


# --------------------------------------------------------------------------------------------- bundling, credit
# Completions in interleaved order; groups: g0 = [1, 0, 1], g1 = [0, 0, 1, 1] (4th beyond min G = 3), g2 = [1, 0].
BUNDLE_GROUP = [0, 1, 2, 0, 1, 2, 0, 1, 1]
BUNDLE_REWARD = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def bundle_batch(**kw):
    r = make(BUNDLE_GROUP, BUNDLE_REWARD)
    base = dict(bundle_size=2, mode="batch", measure="rvar", std_norm=False, credit="uniform")
    return riskpo(r, state={}, **{**base, **kw})


def test_bundles_papers_and_partial_last_bundle_by_hand():
    # bundle 0 = groups {0, 1}: 3 papers S = [1+0, 0+0, 1+1] = [1, 0, 2]; q_0.2 = 0.4, q_0.9 = 1.8;
    #   g = [(S−0.4)+ − (S−1.8)+ − 1.4]/0.7 → S=1: −0.8/0.7, S=0: −2, S=2: 0.
    # bundle 1 = group {2} (partial, P = 3, B = 2): papers [1, 0]; q = 0.2, 0.9 → g = [0, −1].
    # g1's 4th completion (index 8) is in no paper → 0.
    a = -0.8 / 0.7
    expected = [a, a, 0.0, -2.0, -2.0, -1.0, 0.0, 0.0, 0.0]
    assert seq(bundle_batch()) == pytest.approx(expected)


def test_std_normalisation_divides_by_the_bundle_paper_std():
    # bundle 0 paper std([1, 0, 2]) = 1 → unchanged; bundle 1 std([1, 0]) = √0.5 → g / (√0.5 + 1e-6)
    a, s1 = -0.8 / 0.7, math.sqrt(0.5) + 1e-6
    expected = [a / (1 + 1e-6), a / (1 + 1e-6), 0.0, -2 / (1 + 1e-6), -2 / (1 + 1e-6), -1 / s1, 0.0, 0.0, 0.0]
    assert seq(bundle_batch(std_norm=True)) == pytest.approx(expected)


def test_std_credit_divides_by_each_completions_group_std():
    # group stds (ddof 1): g0 [1, 0, 1] → 0.57735, g1 [0, 0, 1, 1] → 0.57735, g2 [1, 0] → 0.70711
    a, s01, s2 = -0.8 / 0.7, 1 / math.sqrt(3) + 1e-6, math.sqrt(0.5) + 1e-6
    expected = [a / s01, a / s01, 0.0, -2 / s01, -2 / s01, -1 / s2, 0.0, 0.0, 0.0]
    assert seq(bundle_batch(credit="std")) == pytest.approx(expected)


def test_sum_mean_credit_splits_the_paper_advantage_by_centred_rewards():
    # means: g0 2/3, g1 1/2, g2 1/2. Paper 0 of bundle 0: ratios (1/3, −1/2), sum −1/6, A = −0.8/0.7
    #   → g0: A·(1/3)/(−1/6) = −2A, g1: A·(−1/2)/(−1/6) = 3A. Paper 1: ratios (−2/3, −1/2), sum −7/6, A = −2
    #   → g0: −2·4/7, g1: −2·3/7. Paper 2: A = 0. Bundle 1 paper 1: ratio −1/2, sum −1/2, A = −1 → −1.
    a = -0.8 / 0.7
    expected = [-2 * a, 3 * a, 0.0, -8 / 7, -6 / 7, -1.0, 0.0, 0.0, 0.0]
    assert seq(bundle_batch(credit="sum-mean")) == pytest.approx(expected)


def test_sum_mean_falls_back_to_an_equal_split_when_the_centred_sum_is_zero():
    # g0 = [1, 0], g1 = [0, 1]: paper 0 ratios (1/2, −1/2) sum 0; tracked q_0.2 = 1.5, q_0.9 = 2 (track mode)
    # → S = 1: g = (0 − 0 + (1.5 − 2))/0.7 = −5/7 for both papers → each completion gets g / 2
    quantiles = torch.linspace(0.0, 2.5, 19).tolist()
    quantiles[3], quantiles[17] = 1.5, 2.0  # levels 0.2 and 0.9
    r = make([0, 0, 1, 1], [1.0, 0.0, 0.0, 1.0])
    adv = riskpo(r, state={"quantiles": torch.tensor(quantiles)}, bundle_size=2, mode="track", measure="rvar",
                 std_norm=False, credit="sum-mean")  # fmt: skip
    assert seq(adv) == pytest.approx([-5 / 14] * 4)


# --------------------------------------------------------------------------------------------- quantile tracking
def test_first_call_initialises_then_each_call_takes_one_pinball_step():
    state: dict = {}
    bundle_batch_args = dict(bundle_size=2, mode="track", measure="rvar", std_norm=False, credit="uniform")
    r = make(BUNDLE_GROUP, BUNDLE_REWARD)
    first = riskpo(r, state=state, **bundle_batch_args)
    # all paper scores [1, 0, 2, 1, 0] → sorted [0, 0, 1, 1, 2]: median 1; q_0.05 at pos 0.2 → 0; q_0.95 at 3.8 → 1.8
    q = state["quantiles"]
    assert (q[9].item(), q[0].item(), q[18].item()) == pytest.approx((1.0, 0.0, 1.8))
    assert first.tolist() == bundle_batch().tolist()  # nothing tracked yet: batch quantiles, as the code
    riskpo(r, state=state, **bundle_batch_args)
    # level 0.5: q = 1, F(1) = 2/5 → 1 + 0.1·(0.5 − 0.4) = 1.01; level 0.95: q = 1.8, F = 4/5 → 1.8 + 0.1·0.15
    assert (state["quantiles"][9].item(), state["quantiles"][18].item()) == pytest.approx((1.01, 1.815))
    assert state["updates"] == 2


def test_track_mode_uses_the_tracked_quantiles_on_later_calls():
    # tracked after call 1: q_0.2 (index 3) = quantile([0,0,1,1,2], 0.2) = 0 (pos 0.8), q_0.9 = 1 + 0.6 = 1.6
    state: dict = {}
    r = make(BUNDLE_GROUP, BUNDLE_REWARD)
    args = dict(bundle_size=2, mode="track", measure="rvar", std_norm=False, credit="uniform")
    riskpo(r, state=state, **args)
    second = seq(riskpo(r, state=state, **args))
    # g(S) = [(S − 0)+ − (S − 1.6)+ − 1.6]/0.7: S=1 → −0.6/0.7, S=0 → −1.6/0.7, S=2 → (2 − 0.4 − 1.6)/0.7 = 0
    # (with batch quantiles S=1 of bundle 0 gave −0.8/0.7 and S=1 of bundle 1 gave 0)
    g1, g0 = -0.6 / 0.7, -1.6 / 0.7
    assert second == pytest.approx([g1, g1, g1, g0, g0, g0, 0.0, 0.0, 0.0])


def test_state_survives_torch_save_and_load():
    a, b = random_rollout(1), random_rollout(2)
    kept: dict = {}
    riskpo(a, state=kept)
    expected = riskpo(b, state=kept)
    saved: dict = {}
    riskpo(a, state=saved)
    buffer = io.BytesIO()
    torch.save({"advantage.0.riskpo": saved}, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)["advantage.0.riskpo"]
    assert torch.equal(riskpo(b, state=restored), expected)
    assert torch.equal(restored["quantiles"], kept["quantiles"])


@pytest.mark.parametrize(
    "kw",
    [
        {},  # the preset: track, mvar, std credit
        dict(mode="batch", measure="rvar", credit="uniform"),
        dict(mode="mix", measure="cvar", credit="sum-mean", natural_baseline=False),
        dict(mode="track", measure="risk_seeking", credit="std", std_norm=False, alpha=0.1, beta=0.8),
        dict(bundle_size=3, credit="sum-mean", beta=0.8),
        dict(bundle_size=1, mode="mix"),
    ],
)
def test_riskpo_matches_the_loop_reference_over_three_calls(kw):
    state, ref_state = {}, {}
    names = dict(bundle_size="B", measure="measure", w_mix="w", natural_baseline="c")
    ref_kw = {names.get(k, k): v for k, v in kw.items()}
    for seed in range(3):
        r = random_rollout(seed, binary=seed != 1)
        adv = riskpo(r, state=state, **kw)
        expected = riskpo_loop(r.reward.tolist(), r.group.tolist(), ref_state, **ref_kw)
        assert seq(adv) == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert state["quantiles"].tolist() == pytest.approx(ref_state["quantiles"], rel=1e-12, abs=1e-12)
        assert (adv[~r.mask] == 0).all()


def test_riskpo_handles_a_single_completion_and_float32():
    adv = riskpo(make([0], [1.0]), state={})
    assert adv.tolist() == [[0.0, 0.0]]
    r = random_rollout(3)
    r32 = r.replace(reward=r.reward.float(), token_reward=None, rewards=None, reward_names=())
    adv32 = riskpo(r32, state={})
    assert adv32.dtype == torch.float32 and torch.isfinite(adv32).all()


def test_a_constant_bundle_under_tracked_quantiles_stays_finite():
    # every paper scores 0 while the tracked lower quantile is 1: std 0 is replaced by 1, not divided by 1e-6
    r = make([0, 0, 1, 1], [0.0, 0.0, 0.0, 0.0])
    state = {"quantiles": torch.full((19,), 1.0)}
    adv = seq(riskpo(r, state=state, bundle_size=2, mode="track", measure="cvar", credit="uniform"))
    assert adv == pytest.approx([-1 / 0.2 / (1 + 1e-6)] * 4)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(alpha=0.9, beta=0.2), "0 < alpha < beta < 1"),
        (dict(beta=1.0), "0 < alpha < beta < 1"),
        (dict(mode="tracked"), "mode must be one of"),
        (dict(measure="var"), "measure must be one of"),
        (dict(credit="mean"), "credit must be one of"),
        (dict(bundle_size=0), "bundle_size must be a positive int"),
        (dict(lr_q=0.0), "lr_q must be > 0"),
        (dict(eps=0.0), "eps must be > 0"),
        (dict(state=None), "state must be a dict"),
        (dict(state={"quantiles": torch.zeros(5)}), "state\\['quantiles'\\] must hold 19"),
    ],
)
def test_riskpo_bad_input_raises(kw, message):
    with pytest.raises(ValueError, match=message):
        riskpo(make([0, 0], [1.0, 0.0]), **{"state": {}, **kw})


# ==================================================================================================== BNPO
def bnpo_loop(r, group, *, lo=0.0, hi=1.0, conc=None, max_w=1e6):
    """BNPO with Python floats, in the order of changyi7231/BNPO's compute_bnpo_outcome_advantage."""
    s = [(x - lo) / (hi - lo) for x in r]
    ids = defaultdict(list)
    for i, q in enumerate(group):
        ids[q].append(s[i])
    mean = {q: (sum(v) / len(v) if len(v) > 1 else 0.0) for q, v in ids.items()}
    ps = list(mean.values())
    if len(ps) > 1:
        mu = sum(ps) / len(ps)
        var = sum((p - mu) ** 2 for p in ps) / (len(ps) - 1)
    else:
        mu, var = 0.0, 1.0
    if conc is not None:
        a_n, b_n = conc
    elif var > 0:
        k = mu * (1 - mu) / var - 1
        a_n, b_n = max(1.0, 1 + k * mu / 3), max(1.0, 1 + k * (1 - mu) / 3)
    else:
        a_n = b_n = 1.0
    log_b = math.lgamma(a_n) + math.lgamma(b_n) - math.lgamma(a_n + b_n)
    out = []
    for i, q in enumerate(group):
        p = mean[q]
        if (p == 0 and a_n > 1) or (p == 1 and b_n > 1):
            weight = max_w  # pdf 0 → 1/pdf = inf → clamp
        else:
            lp = (a_n - 1) * (math.log(p) if p > 0 else 0) + (b_n - 1) * (math.log(1 - p) if p < 1 else 0) - log_b
            weight = min(math.exp(-lp), max_w)
        out.append((s[i] - p) * weight)
    return out


P025 = [1.0, 0.0, 0.0, 0.0]
P050 = [1.0, 1.0, 0.0, 0.0]
P075 = [1.0, 1.0, 1.0, 0.0]


def test_bnpo_hand_computed_batch_fits_beta_three_halves():
    # p = 0.25, 0.5, 0.75: μ 0.5, σ² (ddof 1) 0.0625 → μ(1−μ)/σ² − 1 = 3 → a = b = 1.5 → α = β = 1 + 0.5 = 1.5
    # weight π / (8√(p(1−p))): p 0.25 → 0.906900; p 0.5 → π/4 = 0.785398
    r = make([0] * 4 + [1] * 4 + [2] * 4, P025 + P050 + P075)
    w1, w2 = math.pi / (8 * math.sqrt(0.1875)), math.pi / 4
    expected = [0.75 * w1, -0.25 * w1, -0.25 * w1, -0.25 * w1, 0.5 * w2, 0.5 * w2, -0.5 * w2, -0.5 * w2]
    expected += [0.25 * w1, 0.25 * w1, 0.25 * w1, -0.75 * w1]
    assert seq(bnpo(r)) == pytest.approx(expected)
    assert seq(bnpo(r))[0] == pytest.approx(0.680175, abs=1e-6)


def test_bnpo_beta_one_one_is_reinforce_with_the_mean_baseline():
    # p = 0, 1, 0.5: μ 0.5, σ² 0.25 → μ(1−μ)/σ² − 1 = 0 → a = b = 0 → α = β = 1: A = r − p
    r = make([0, 0, 1, 1, 2, 2], [0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert seq(bnpo(r)) == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.5, -0.5])
    rand = random_rollout(4, sizes=(3, 4, 2, 5), binary=False)
    assert torch.allclose(bnpo(rand, concentration=(1.0, 1.0)), dr_grpo(rand))


def test_bnpo_beta_three_halves_is_grpo_up_to_eight_over_pi():
    # spec: with α = β = 1.5, A·(8/π)·√(p(1−p)) = r' − p, i.e. A = (π/8)·GRPO with ddof 0
    r = random_rollout(5, sizes=(4, 6, 3, 5))
    adv = seq(bnpo(r, concentration=(1.5, 1.5)))
    p = {q: sum(x for x, g in zip(r.reward.tolist(), r.group.tolist(), strict=True) if g == q)
         / (r.group == q).sum().item() for q in range(4)}  # fmt: skip
    for a, x, g in zip(adv, r.reward.tolist(), r.group.tolist(), strict=True):
        assert a * (8 / math.pi) * math.sqrt(p[g] * (1 - p[g])) == pytest.approx(x - p[g], abs=1e-12)
    varied = [p[g] not in (0.0, 1.0) for g in r.group.tolist()]
    grpo0 = seq(grpo(r, ddof=0, eps=1e-300))
    assert [a for a, v in zip(adv, varied, strict=True) if v] == pytest.approx(
        [math.pi / 8 * x for x, v in zip(grpo0, varied, strict=True) if v]
    )


def test_bnpo_all_equal_group_gets_zero_even_where_the_pdf_is_zero():
    # group 0 all wrong (p = 0), with α > 1 the pdf at 0 is 0 → 1/pdf clamped to 1e6, times r' − p = 0 → 0
    r = make([0, 0, 0, 1, 1, 1, 2, 2, 2], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    adv = seq(bnpo(r))
    assert adv[:3] == [0.0, 0.0, 0.0] and all(math.isfinite(a) for a in adv)
    assert seq(bnpo(make([0, 0, 1, 1], [0.3, 0.3, 0.7, 0.7]))) == [0.0] * 4


def test_bnpo_min_max_map_and_single_prompt():
    # rewards in {−1, 1} mapped with min −1, max 1 equal rewards in {0, 1}; one prompt: μ 0, σ² 1 → Beta(1, 1)
    pm = make([0, 0, 0, 0, 1, 1], [1.0, -1.0, -1.0, -1.0, 1.0, -1.0])
    zo = make([0, 0, 0, 0, 1, 1], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert torch.allclose(bnpo(pm, min_value=-1.0, max_value=1.0), bnpo(zo))
    assert seq(bnpo(make([0, 0, 0, 0], P025))) == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_bnpo_equal_p_across_prompts_falls_back_to_beta_one_one():
    # σ² = 0: the moment fit would divide by zero (NaN in the code); here Beta(1, 1): A = r − p
    r = make([0, 0, 1, 1], [1.0, 0.0, 0.0, 1.0])
    assert seq(bnpo(r)) == [0.5, -0.5, -0.5, 0.5]


def test_bnpo_group_of_one_gets_p_zero_as_the_code():
    # p = [0.5, 0] → μ 0.25, σ² 0.125 → α = 1 + 0.125/3 > 1 → pdf(0) = 0 → weight clamped to 1e6 → A = 1e6·r'
    r = make([0, 0, 1], [1.0, 0.0, 1.0])
    adv = seq(bnpo(r))
    assert adv[2] == 1e6
    assert adv == pytest.approx(bnpo_loop([1.0, 0.0, 1.0], [0, 0, 1]))


def test_bnpo_decomposition_averages_the_per_column_advantages():
    r = random_rollout(6, sizes=(3, 4, 2, 5))
    acc = bnpo(r.replace(reward=r.rewards[:, 0]))
    fmt = bnpo(r.replace(reward=r.rewards[:, 1]))
    assert torch.allclose(bnpo(r, decompose=True), (acc + fmt) / 2)
    with pytest.raises(ValueError, match=r"decompose=True needs rollout\.rewards"):
        bnpo(make([0, 0], [1.0, 0.0]), decompose=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bnpo_matches_the_loop_reference(seed):
    r = random_rollout(seed, binary=seed == 0)
    adv = bnpo(r)
    assert seq(adv) == pytest.approx(bnpo_loop(r.reward.tolist(), r.group.tolist()), rel=1e-9, abs=1e-9)
    assert (adv[~r.mask] == 0).all()
    r2 = r.replace(reward=r.reward * 4 - 2)  # rewards in [−2, 2]
    expected = bnpo_loop(r2.reward.tolist(), r2.group.tolist(), lo=-2.0, hi=2.0)
    assert seq(bnpo(r2, min_value=-2.0, max_value=2.0)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_beta_log_pdf_matches_the_closed_form():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    # Beta(2, 3): pdf = 12·p·(1 − p)²
    assert beta_log_pdf(p, 2.0, 3.0).exp().tolist() == pytest.approx([12 * x * (1 - x) ** 2 for x in p.tolist()])
    assert beta_log_pdf(p, 1.0, 1.0).exp().tolist() == pytest.approx([1.0] * 5)


@pytest.mark.parametrize(
    ("kw", "reward", "message"),
    [
        ({}, [2.0, 3.0], "must lie in \\[0, 1\\]"),
        (dict(min_value=1.0, max_value=1.0), [1.0, 0.0], "max_value must exceed min_value"),
        (dict(concentration=(0.0, 1.0)), [1.0, 0.0], "concentration must be a pair"),
        (dict(max_weight=0.0), [1.0, 0.0], "max_weight must be > 0"),
    ],
)
def test_bnpo_bad_input_raises(kw, reward, message):
    with pytest.raises(ValueError, match=message):
        bnpo(make([0, 0], reward), **kw)


# ==================================================================================================== HRPO
def test_hrpo_without_step_rewards_is_grpo():
    r = random_rollout(7)
    plain = r.replace(token_reward=None)
    assert torch.equal(hrpo(plain), grpo(plain))
    zeros = r.replace(token_reward=torch.zeros_like(r.mask, dtype=torch.float64))
    assert torch.equal(hrpo(zeros), grpo(zeros))
    assert torch.equal(hrpo(r, step_weight=0.0), grpo(r))


def test_hrpo_a_step_reward_changes_only_its_action_span():
    mask = [[1, 1, 1, 1], [1, 1, 1, 0]]
    base = make([0, 0], [1.0, 0.0], mask=mask, token_reward=torch.zeros(2, 4, dtype=torch.float64))
    step = torch.zeros(2, 4, dtype=torch.float64)
    step[0, 1:3] = 0.4  # one action spanning tokens 1-2 of completion 0
    diff = hrpo(base.replace(token_reward=step), step_weight=0.5) - hrpo(base, step_weight=0.5)
    assert diff.flatten().tolist() == pytest.approx([0.0, 0.2, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0])


def test_hrpo_hand_values_and_padding():
    # rewards [1, 0] → GRPO [1/√2, −1/√2] (std √0.5); λ = 2, step rewards [[0.1, 0.3], [−0.2, NaN (padding)]]
    tok = torch.tensor([[0.1, 0.3], [-0.2, NAN]], dtype=torch.float64)
    r = make([0, 0], [1.0, 0.0], mask=[[1, 1], [1, 0]], token_reward=tok)
    s = 1 / math.sqrt(0.5) / (1 + 1e-6 / math.sqrt(0.5))  # 0.5 / (√0.5 + 1e-6)
    expected = [0.5 * s + 0.2, 0.5 * s + 0.6, -0.5 * s - 0.4, 0.0]
    assert hrpo(r, step_weight=2.0).flatten().tolist() == pytest.approx(expected)


def test_hrpo_matches_the_loop_reference():
    r = random_rollout(8, binary=False)
    adv = hrpo(r, step_weight=0.3).tolist()
    rew, grp, tok, mask = r.reward.tolist(), r.group.tolist(), r.token_reward.tolist(), r.mask.tolist()
    for i in range(r.batch_size):
        same = [rew[j] for j in range(r.batch_size) if grp[j] == grp[i]]
        m = sum(same) / len(same)
        a = (rew[i] - m) / (std_loop(same) + 1e-6)
        for t in range(r.seq_len):
            assert adv[i][t] == pytest.approx(a + 0.3 * tok[i][t] if mask[i][t] else 0.0, abs=1e-12)


@pytest.mark.parametrize("weight", [-0.1, float("nan"), float("inf")])
def test_hrpo_bad_weight_raises(weight):
    with pytest.raises(ValueError, match="step_weight"):
        hrpo(make([0, 0], [1.0, 0.0]), step_weight=weight)


def test_variants_are_registered():
    assert ADVANTAGES["riskpo"] is riskpo and ADVANTAGES["bnpo"] is bnpo and ADVANTAGES["hrpo"] is hrpo
