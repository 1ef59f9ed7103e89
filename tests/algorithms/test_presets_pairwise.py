"""The DisCO, DisCO-DRO, Reg-GRPO, TRPA and P3O presets, composed from their parts exactly as the trainer does,
equal their paper's objective written out by hand (Python loops over prompts, completions and tokens) on a fixed
toy batch."""

import math

import pytest
import torch

from grpolab.algorithms import PRESETS, Preset
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.filters import FILTERS
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout

MAX_LEN = 4  # the run's generation limit: T of the toy batch
LENGTHS = [4, 2, 3, 4, 1, 3]
TRIPLES = [0, 1, 0, 1, 0, 1]  # two prompts, three completions each, interleaved
PAIRS = [0, 1, 2, 0, 1, 2]  # three prompts, two completions each (P3O's setting)


def toy_batch(rewards, group):
    """Unequal lengths, non-contiguous groups; float64 for tight comparisons."""
    g = torch.Generator().manual_seed(11)
    mask = torch.arange(MAX_LEN)[None, :] < torch.tensor(LENGTHS)[:, None]  # [B, T]
    old = -torch.rand(6, MAX_LEN, generator=g, dtype=torch.float64) - 0.1  # [B, T]
    logp = (old - 0.02 + 0.05 * torch.randn(6, MAX_LEN, generator=g, dtype=torch.float64)).requires_grad_()  # [B, T]
    rollout = Rollout(
        group=torch.tensor(group),
        mask=mask,
        reward=torch.tensor(rewards, dtype=torch.float64),
        old_logp=old,
        ref_logp=old - 0.2 * torch.rand(6, MAX_LEN, generator=g, dtype=torch.float64),
    )
    return rollout, logp


def compose(preset: Preset, rollout: Rollout, logp):
    """The trainer's path for one batch (shaping, advantage, filters, loss + regularizers with global counts)."""
    for part in preset.shaping:
        fn = SHAPING[part.name]
        rollout, _ = fn(rollout, **with_run_arguments(fn, part.params, {"max_len": MAX_LEN}))
    adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params)  # [B, T]
    keep = torch.ones(rollout.batch_size, dtype=torch.bool)
    for part in preset.filters:
        keep &= FILTERS[part.name](rollout, **part.params)[0]
    rollout, adv, logp = rollout.select(keep), adv[keep], logp[keep]
    counts = dict(num_tokens=float(rollout.mask.sum()), num_seqs=float(rollout.batch_size))
    agg = dict(aggregation=preset.aggregation, norm_constant=MAX_LEN, **counts)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, rollout, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, rollout, **agg, **part.params)[0]
    return loss


# ---------------------------------------------------------------------------------------------------- by hand
def lists(rollout, logp):
    return logp.tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist(), rollout.reward.tolist()


def members(group, g):
    return [i for i in range(6) if group[i] == g]


def expected_disco(rollout, logp, *, dro):
    """DisCO (arXiv 2505.12366): J(q) = mean_{o+} s(o+) − [mean_{o−} s(o−) | τ log mean_{o−} exp(s(o−)/τ)] with
    s = token-mean log π, τ = 10; minimise −mean_q J + sg(β[KL − δ]_+)·KL, KL = token mean of old − logp,
    δ = 1e-4, β = 1e3."""
    lp, old, _, r = lists(rollout, logp)
    s = [sum(lp[i][: LENGTHS[i]]) / LENGTHS[i] for i in range(6)]
    total = 0.0
    for g in (0, 1):
        pos = [s[i] for i in members(TRIPLES, g) if r[i] == 1.0]
        neg = [s[i] for i in members(TRIPLES, g) if r[i] == 0.0]
        neg_term = 10.0 * math.log(sum(math.exp(x / 10.0) for x in neg) / len(neg)) if dro else sum(neg) / len(neg)
        total += sum(pos) / len(pos) - neg_term
    kl_terms = [old[i][t] - lp[i][t] for i in range(6) for t in range(LENGTHS[i])]
    kl = sum(kl_terms) / len(kl_terms)
    return -total / 2 + 1e3 * max(kl - 1e-4, 0.0) * kl


def expected_reg_grpo(rollout, logp):
    """Reg-GRPO (arXiv 2506.07464): mean over completions of (Â_i − (ρ_i − mean_G ρ)/(std_G ρ + ε))², ρ_i = Σ_t
    log π_θ/π_old, Â the GRPO advantage (ddof 1, ε = 1e-6), plus 0.1 · GRPO's k3 KL to the reference
    (1/G Σ_i 1/|o_i| Σ_t)."""
    lp, old, ref, r = lists(rollout, logp)
    rho = [sum(lp[i][t] - old[i][t] for t in range(LENGTHS[i])) for i in range(6)]
    total = 0.0
    for g in (0, 1):
        idx = members(TRIPLES, g)
        mr = sum(r[i] for i in idx) / 3
        sr = math.sqrt(sum((r[i] - mr) ** 2 for i in idx) / 2)
        mp = sum(rho[i] for i in idx) / 3
        sp = math.sqrt(sum((rho[i] - mp) ** 2 for i in idx) / 2)
        for i in idx:
            total += ((r[i] - mr) / (sr + 1e-6) - (rho[i] - mp) / (sp + 1e-6)) ** 2
    kl = 0.0
    for i in range(6):
        xs = [ref[i][t] - lp[i][t] for t in range(LENGTHS[i])]
        kl += sum(math.exp(x) - x - 1 for x in xs) / LENGTHS[i]
    return total / 6 + 0.1 * kl / 6


def expected_trpa(rollout, logp):
    """TRPA (arXiv 2504.04524): levels 1 / 2 / 3 / 4 for rewards 1 / 0 / −0.5 / −1; h = token-mean(log π − log
    π_ref); mean over within-group pairs (level_w < level_l) of −log σ(β_w (h_w − h_l)), β = 0.1, β_w = 2.5 β for
    level-1 winners; plus 0.001 · token-mean k3 KL(π_θ‖π_old)."""
    lp, old, ref, r = lists(rollout, logp)
    level = {1.0: 1, 0.0: 2, -0.5: 3, -1.0: 4}
    lv = [level[x] for x in r]
    h = [sum(lp[i][t] - ref[i][t] for t in range(LENGTHS[i])) / LENGTHS[i] for i in range(6)]
    terms = []
    for i in range(6):
        for j in range(6):
            if TRIPLES[i] == TRIPLES[j] and lv[i] < lv[j]:
                beta = 0.25 if lv[i] == 1 else 0.1
                terms.append(math.log1p(math.exp(-beta * (h[i] - h[j]))))
    xs = [old[i][t] - lp[i][t] for i in range(6) for t in range(LENGTHS[i])]
    return sum(terms) / len(terms) + 0.001 * sum(math.exp(x) - x - 1 for x in xs) / len(xs)


def expected_p3o(rollout, logp):
    """P3O-V2 (arXiv 2310.00212): r = r_RM − 0.05·Σ_t (log π_old − log π_ref); per prompt the pair (y_w, y_l),
    A = |r1 − r2|/2, joint ratio R = (π_θ(y_w)/π_old(y_w)) / (π_θ(y_l)/π_old(y_l)) over whole trajectories,
    loss −min(A·R, A·clip(R, 0.8, 1.2)), mean over prompts."""
    lp, old, ref, r = lists(rollout, logp)
    shaped = [r[i] - 0.05 * sum(old[i][t] - ref[i][t] for t in range(LENGTHS[i])) for i in range(6)]
    s = [sum(lp[i][t] - old[i][t] for t in range(LENGTHS[i])) for i in range(6)]
    total = 0.0
    for g in (0, 1, 2):
        i, j = members(PAIRS, g)
        w, lo = (i, j) if shaped[i] >= shaped[j] else (j, i)
        a = abs(shaped[i] - shaped[j]) / 2
        ratio = math.exp(s[w] - s[lo])
        total += -min(a * ratio, a * min(max(ratio, 0.8), 1.2))
    return total / 3


CASES = {
    "disco": ([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], TRIPLES, lambda r, lp: expected_disco(r, lp, dro=False)),
    "disco_dro": ([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], TRIPLES, lambda r, lp: expected_disco(r, lp, dro=True)),
    "reg_grpo": ([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], TRIPLES, expected_reg_grpo),
    "trpa": ([1.0, 0.0, -0.5, -1.0, 1.0, 0.0], TRIPLES, expected_trpa),
    "p3o": ([1.0, 0.3, 0.0, 0.2, 0.5, 0.9], PAIRS, expected_p3o),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_preset_equals_its_paper_objective(name):
    rewards, group, expected = CASES[name]
    rollout, logp = toy_batch(rewards, group)
    loss = compose(PRESETS[name], rollout, logp)
    assert loss.item() == pytest.approx(expected(rollout, logp), rel=1e-9, abs=1e-12)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad.abs().sum() > 0
    assert (logp.grad[~rollout.mask] == 0).all()


def test_disco_toy_batch_has_the_kl_hinge_active():
    """The toy batch exercises the penalty: its KL is above δ = 1e-4."""
    rollout, logp = toy_batch(CASES["disco"][0], TRIPLES)
    kl = (rollout.old_logp - logp.detach())[rollout.mask].mean().item()
    assert kl > 1e-4


def test_presets_read_what_they_need_and_set_their_trainer():
    assert PRESETS["disco"].requires == {"old_logp"}
    assert PRESETS["disco_dro"].requires == {"old_logp"}
    assert PRESETS["reg_grpo"].requires == {"old_logp", "ref_logp"}
    assert PRESETS["trpa"].requires == {"old_logp", "ref_logp"}
    assert PRESETS["p3o"].requires == {"old_logp", "ref_logp"}
    assert PRESETS["p3o"].trainer["num_generations"] == 2
    assert PRESETS["trpa"].trainer["num_generations"] == 16
    assert PRESETS["disco"].trainer["temperature"] == 0.6
    assert "not built" in PRESETS["reg_grpo"].notes
    for name in CASES:
        assert PRESETS[name].notes and PRESETS[name].paper
