"""The riskpo, bnpo, hrpo and grpo_s presets, composed from their parts as a trainer does (run arguments
included: RiskPO's quantile state), equal each paper's objective written out as Python loops on a toy batch."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.algorithms import PRESETS, Preset
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.advantage_variants import RISK_LEVELS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.filters import FILTERS
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout

MAX_LEN = 4  # T of the toy batch and the run's generation limit
# 7 prompts (RiskPO: one full bundle of 5 and a partial one of 2); prompt 2 has a 4th completion (beyond min G)
GROUP = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6]
REWARD = [1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0]
HARDNESS = [0.1, 0.5, 0.9, 0.3, 0.0, 0.7, 0.2]  # per prompt


def toy_batch():
    g = torch.Generator().manual_seed(11)
    B = len(GROUP)
    lengths = torch.randint(1, MAX_LEN + 1, (B,), generator=g)  # [B]
    mask = torch.arange(MAX_LEN)[None, :] < lengths[:, None]  # [B, T]
    old = -torch.rand(B, MAX_LEN, generator=g, dtype=torch.float64) - 0.1  # [B, T]
    logp = (old + 0.3 * torch.randn(B, MAX_LEN, generator=g, dtype=torch.float64)).requires_grad_()  # [B, T]
    group = torch.tensor(GROUP)
    rollout = Rollout(
        group=group,
        mask=mask,
        reward=torch.tensor(REWARD, dtype=torch.float64),
        old_logp=old,
        ref_logp=old - 0.2 * torch.rand(B, MAX_LEN, generator=g, dtype=torch.float64),
        token_reward=0.3 * torch.randn(B, MAX_LEN, generator=g, dtype=torch.float64),
        extras={"hardness": torch.tensor(HARDNESS, dtype=torch.float64)[group]},
    )
    return rollout, logp, lengths.tolist()


def compose(preset: Preset, rollout: Rollout, logp, state: dict):
    """One batch through the preset's parts, with the run arguments the trainer supplies."""
    run = {"max_len": MAX_LEN, "step": 0, "total_steps": 2}
    for i, part in enumerate(preset.shaping):
        fn = SHAPING[part.name]
        run_i = {**run, "state": state.setdefault(f"shaping.{i}", {})}
        rollout, _ = fn(rollout, **with_run_arguments(fn, part.params, run_i))
    fn = ADVANTAGES[preset.advantage.name]
    adv = fn(rollout, **with_run_arguments(fn, preset.advantage.params, {**run, "state": state.setdefault("adv", {})}))
    assert not preset.filters and not preset.selectors and not preset.rollout
    assert FILTERS  # the four presets use no filter
    agg = dict(aggregation=preset.aggregation, norm_constant=MAX_LEN)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, rollout, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, rollout, **agg, **part.params)[0]
    return loss


# ---------------------------------------------------------------------------------------- objectives by hand
def clipped(ratio, a, lo, hi):
    return -min(ratio * a, min(max(ratio, 1 - lo), 1 + hi) * a)


def k3(lp, ref):
    x = ref - lp
    return math.exp(x) - x - 1


def members(q):
    return [i for i, g in enumerate(GROUP) if g == q]


def mean(xs):
    return sum(xs) / len(xs)


def std1(xs):
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


def quantile(xs, q):
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def riskpo_advantages(tracked=None):
    """RiskPO (MATH script): bundles of 5 prompts, papers = j-th answers, MVaR (w 1.5) of the paper score with
    q at α 0.2 / β 0.9 (batch quantiles, or the tracked ones), / paper std, / the answer's group std."""
    adv = [0.0] * len(GROUP)
    papers_all = []
    for first in range(0, 7, 5):
        prompts = list(range(first, min(first + 5, 7)))
        n = min(len(members(q)) for q in prompts)
        papers = [[members(q)[j] for q in prompts] for j in range(n)]
        scores = [sum(REWARD[i] for i in p) for p in papers]
        papers_all.append((papers, scores))
    for papers, scores in papers_all:
        qd, qu = (quantile(scores, 0.2), quantile(scores, 0.9)) if tracked is None else tracked
        sd = std1(scores) if std1(scores) > 1e-3 else 1.0
        for paper, s in zip(papers, scores, strict=True):
            g = (max(s - qd, 0) - max(s - qu, 0) + qd - qu) / 0.7  # RVaR_{0.2, 0.9}, natural baseline
            cvar = -max(qd - s, 0) / 0.2
            a = (1.5 * cvar + g) / 2.5 / (sd + 1e-6)
            for i in paper:
                sq = std1([REWARD[j] for j in members(GROUP[i])])
                adv[i] = a / ((sq if sq > 1e-3 else 1.0) + 1e-6)
    all_scores = [s for _, scores in papers_all for s in scores]
    return adv, (quantile(all_scores, RISK_LEVELS[3]), quantile(all_scores, RISK_LEVELS[17]))


def token_mean_ppo(batch, adv):
    """verl's vanilla loss (RiskPO's scripts): clip 0.2, dual clip c = 3 for A < 0, token mean over the batch."""
    rollout, logp, lengths = batch
    lp, old = logp.tolist(), rollout.old_logp.tolist()
    terms = [clipped(math.exp(lp[i][t] - old[i][t]), adv[i], 0.2, 0.2) for i in range(len(GROUP))
             for t in range(lengths[i])]  # fmt: skip
    negative = [adv[i] < 0 for i in range(len(GROUP)) for t in range(lengths[i])]
    flat_adv = [adv[i] for i in range(len(GROUP)) for t in range(lengths[i])]
    terms = [min(x, -3.0 * a) if neg else x for x, a, neg in zip(terms, flat_adv, negative, strict=True)]
    return sum(terms) / len(terms)


def expected_bnpo(batch):
    """BNPO: p = group mean, Beta fit of p over prompts, A = (r − p)/Beta_pdf(p; α, β); clip-higher 0.2/0.28 with
    dual clip 10; per-sequence token sum averaged over sequences."""
    rollout, logp, lengths = batch
    p = {q: mean([REWARD[i] for i in members(q)]) for q in range(7)}
    ps = list(p.values())
    mu = mean(ps)
    var = sum((x - mu) ** 2 for x in ps) / 6
    k = mu * (1 - mu) / var - 1
    al, be = max(1.0, 1 + k * mu / 3), max(1.0, 1 + k * (1 - mu) / 3)
    log_b = math.lgamma(al) + math.lgamma(be) - math.lgamma(al + be)

    def weight(x):
        if x in (0.0, 1.0):
            return 1e6 if (x == 0 and al > 1) or (x == 1 and be > 1) else 1.0 / math.exp(-log_b)
        return min(1e6, math.exp(-((al - 1) * math.log(x) + (be - 1) * math.log(1 - x) - log_b)))

    lp, old = logp.tolist(), rollout.old_logp.tolist()
    total = 0.0
    for i in range(len(GROUP)):
        a = (REWARD[i] - p[GROUP[i]]) * weight(p[GROUP[i]])
        for t in range(lengths[i]):
            ratio = math.exp(lp[i][t] - old[i][t])
            loss = clipped(ratio, a, 0.2, 0.28)
            if a < 0:
                loss = min(loss, -10.0 * a)
            total += loss
    return total / len(GROUP)


def grpo_like(batch, adv_token):
    """GRPO's objective with a per-token advantage: clip 0.2 + 0.04·k3, token mean per sequence, mean over i."""
    rollout, logp, lengths = batch
    lp, old, ref = logp.tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist()
    total = 0.0
    for i in range(len(GROUP)):
        per = [clipped(math.exp(lp[i][t] - old[i][t]), adv_token(i, t), 0.2, 0.2) + 0.04 * k3(lp[i][t], ref[i][t])
               for t in range(lengths[i])]  # fmt: skip
        total += sum(per) / lengths[i]
    return total / len(GROUP)


def expected_hrpo(batch):
    """HRPO: A_{i,t} = (r_i − mean_g)/(std_g + 1e-6) + 1.0·r_{i,t} (token_reward), in GRPO's objective."""
    tok = batch[0].token_reward.tolist()

    def adv(i, t):
        rs = [REWARD[j] for j in members(GROUP[i])]
        return (REWARD[i] - mean(rs)) / (std1(rs) + 1e-6) + 1.0 * tok[i][t]

    return grpo_like(batch, adv)


def expected_grpo_s(batch):
    """GRPO-S: r' = s·r with s = (1 + h + (1 − mean_g r)) normalised to mean 1 over prompts, clipped to [0.5, 2];
    mean-only advantage r' − mean_g r'; GRPO's objective."""
    raw = [1 + HARDNESS[q] + max(0.0, 1 - mean([REWARD[i] for i in members(q)])) for q in range(7)]
    s = [min(max(x / mean(raw), 0.5), 2.0) for x in raw]
    shaped = [s[GROUP[i]] * REWARD[i] for i in range(len(GROUP))]

    def adv(i, t):
        return shaped[i] - mean([shaped[j] for j in members(GROUP[i])])

    return grpo_like(batch, adv)


# ------------------------------------------------------------------------------------------------------ tests
def test_riskpo_preset_equals_the_paper_objective_over_two_steps():
    batch = toy_batch()
    rollout, logp, _ = batch
    state: dict = {}
    first = compose(PRESETS["riskpo"], rollout, logp, state)
    adv1, tracked = riskpo_advantages()
    assert first.item() == pytest.approx(token_mean_ppo(batch, adv1), rel=1e-9)
    # step 2: the same batch is now scored with the quantiles tracked from step 1 (track mode)
    second = compose(PRESETS["riskpo"], rollout, logp, state)
    adv2, _ = riskpo_advantages(tracked)
    assert second.item() == pytest.approx(token_mean_ppo(batch, adv2), rel=1e-9)
    assert adv1 != pytest.approx(adv2)  # the state changed the advantage
    assert adv1[9] == 0.0  # prompt 2's 4th completion is in no paper
    second.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[~rollout.mask] == 0).all()


def test_riskpo_preset_dual_clip_binds_far_off_policy():
    # verl's vanilla loss caps a negative-advantage token's loss at −3·A (clip_ratio_c = 3): ratio e^1.5 ≈ 4.5
    rollout, _, lengths = toy_batch()
    logp = (rollout.old_logp + 1.5).requires_grad_()  # [B, T]
    loss = compose(PRESETS["riskpo"], rollout, logp, {})
    adv, _ = riskpo_advantages()
    assert any(a < 0 for a in adv)
    assert loss.item() == pytest.approx(token_mean_ppo((rollout, logp, lengths), adv), rel=1e-9)


@pytest.mark.parametrize(("name", "expected"), [("bnpo", expected_bnpo), ("hrpo", expected_hrpo),
                                                ("grpo_s", expected_grpo_s)])  # fmt: skip
def test_preset_equals_its_paper_objective(name, expected):
    batch = toy_batch()
    rollout, logp, _ = batch
    loss = compose(PRESETS[name], rollout, logp, {})
    assert loss.item() == pytest.approx(expected(batch), rel=1e-9, abs=1e-12)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad.abs().sum() > 0
    assert (logp.grad[~rollout.mask] == 0).all()


def test_grpo_s_scale_survives_its_advantage_but_would_cancel_under_grpo():
    rollout, _, _ = toy_batch()
    preset = PRESETS["grpo_s"]
    part = preset.shaping[0]
    shaped, _ = SHAPING[part.name](rollout, **part.params)
    assert not torch.allclose(ADVANTAGES[preset.advantage.name](shaped), ADVANTAGES["dr_grpo"](rollout))
    assert torch.allclose(ADVANTAGES["grpo"](shaped), ADVANTAGES["grpo"](rollout), atol=1e-5)


def test_presets_cite_papers_and_need_only_what_they_use():
    assert PRESETS["riskpo"].requires == {"old_logp"}
    assert PRESETS["bnpo"].requires == {"old_logp"}
    assert PRESETS["hrpo"].requires == {"old_logp", "ref_logp"}
    assert PRESETS["grpo_s"].requires == {"old_logp", "ref_logp"}
    for name, arxiv in [("riskpo", "2510.00911"), ("bnpo", "2506.02864"), ("hrpo", "2506.08507"),
                        ("grpo_s", "2503.18991")]:  # fmt: skip
        assert PRESETS[name].arxiv == arxiv and PRESETS[name].notes
