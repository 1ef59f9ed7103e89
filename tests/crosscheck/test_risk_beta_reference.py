"""Independent cross-check of RiskPO, BNPO, HRPO and GRPO-S against plain-loop references.

Each reference below was written from the papers / specs and the official code (RTkenny/RiskPO
``core_algos.py::compute_grpo_bundle_rvar_outcome_advantage_quantile_tracking`` + ``ray_trainer.py``;
changyi7231/BNPO ``recipe/bnpo/src/bnpo_ray_trainer.py::compute_bnpo_outcome_advantage`` + ``run.sh``), not from
grpolab's implementation. Python floats and lists only, one completion at a time; compared with the registered
parts on random batches (unequal, shuffled groups, padding, groups of one, ties), values and gradients to 1e-6.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout

TOL = 1e-6
GRID = [0.05 * k for k in range(1, 20)]  # RiskPO's tracked quantile levels 0.05 .. 0.95 (ray_trainer.py)


# ----------------------------------------------------------------------------------------------- random batches
def random_batch(seed: int, *, P: int | None = None, binary: bool = True, singletons: bool = True, T: int = 5):
    """A shuffled batch of P prompts with unequal group sizes (1..6), padding, ties; float64 tensors."""
    rng = random.Random(seed)
    P = P or rng.randint(1, 12)
    sizes = [rng.randint(1 if singletons else 2, 6) for _ in range(P)]
    group = [g for g, n in enumerate(sizes) for _ in range(n)]
    rng.shuffle(group)
    B = len(group)
    if binary:
        reward = [float(rng.random() < 0.5) for _ in range(B)]
    else:
        reward = [rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()]) for _ in range(B)]
    lengths = [rng.randint(1, T) for _ in range(B)]
    mask = [[t < n for t in range(T)] for n in lengths]
    return group, reward, mask


def to_rollout(group, reward, mask, **kw) -> Rollout:
    return Rollout(
        group=torch.tensor(group),
        mask=torch.tensor(mask),
        reward=torch.tensor(reward, dtype=torch.float64),
        **kw,
    )


def broadcast(seq_adv, mask):
    return [[seq_adv[i] if m else 0.0 for m in row] for i, row in enumerate(mask)]


def assert_close(got: torch.Tensor, want, tol: float = TOL):
    want_t = torch.tensor(want, dtype=torch.float64)
    assert got.shape == want_t.shape, (got.shape, want_t.shape)
    err = (got.double() - want_t).abs().max().item() if got.numel() else 0.0
    assert err <= tol * max(1.0, want_t.abs().max().item()), f"max abs err {err}\n got {got}\nwant {want_t}"


# ------------------------------------------------------------------------------------------------ small helpers
def mean(xs):
    return sum(xs) / len(xs)


def std1(xs):
    """torch.std: Bessel-corrected; NaN for one element (as in the official codes)."""
    if len(xs) < 2:
        return float("nan")
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def quantile_linear(xs, q):
    """torch.quantile's default ('linear') interpolation."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def pos(x):
    return x if x > 0 else 0.0


# ============================================================================================== RiskPO reference
def riskpo_reference(
    group,
    reward,
    st: dict,
    *,
    bundle_size=5,
    alpha=0.2,
    beta=0.9,
    lr_q=0.1,
    mode="track",
    measure="mvar",
    w_mix=1.5,
    natural_baseline=True,
    std_norm=True,
    credit="std",
    eps=1e-6,
):
    """One training step of the official RiskPO advantage (per completion) plus the quantile tracker.

    ``st`` holds the tracked grid between steps ({'q': list} once initialised). Quirks kept from the code: paper
    std of a one-paper bundle = 1; question std <= 1e-3 (or NaN for one response) = 1; the tracked quantiles are
    those of the previous steps (the code writes them after the advantage). Documented grpolab departures: a
    bundle whose paper-score std is <= 1e-3 uses 1 (the code divides by std + eps), and β − α, α, 1 − β are
    divided exactly (the code adds 1e-6).
    """
    P = max(group) + 1
    responses = {g: [i for i in range(len(group)) if group[i] == g] for g in range(P)}  # batch order
    bundles = [list(range(s, min(s + bundle_size, P))) for s in range(0, P, bundle_size)]
    q_std, q_mean = {}, {}
    for g in range(P):
        rs = [reward[i] for i in responses[g]]
        s = std1(rs)
        q_std[g] = s if s > 1e-3 else 1.0  # NaN > 1e-3 is False -> 1.0, as the code
        q_mean[g] = mean(rs)
    papers, scores = {}, {}
    for b, qs in enumerate(bundles):
        n = min(len(responses[g]) for g in qs)
        papers[b] = [[responses[g][j] for g in qs] for j in range(n)]
        scores[b] = [sum(reward[i] for i in pp) for pp in papers[b]]
    tracked = st.get("q")
    i_down = min(range(len(GRID)), key=lambda k: abs(GRID[k] - alpha))
    i_up = min(range(len(GRID)), key=lambda k: abs(GRID[k] - beta))
    adv = [0.0] * len(group)
    for b in range(len(bundles)):
        S = scores[b]
        if len(S) == 1:
            bd, bu, bstd = S[0], S[0], 1.0
        else:
            bd, bu, bstd = quantile_linear(S, alpha), quantile_linear(S, beta), std1(S)
            if bstd <= 1e-3:
                bstd = 1.0  # grpolab's documented departure (the code: divide by std + eps)
        if mode == "batch" or tracked is None:
            qd, qu = bd, bu
        elif mode == "track":
            qd, qu = tracked[i_down], tracked[i_up]
        else:  # mix
            qd, qu = (tracked[i_down] + bd) / 2, (tracked[i_up] + bu) / 2
        for pp, s in zip(papers[b], S, strict=True):
            g_rvar = pos(s - qd) - pos(s - qu) + (qd - qu if natural_baseline else 0.0)
            g_rvar /= beta - alpha  # the code adds 1e-6; grpolab divides exactly (documented, paper formula)
            cvar = -pos(qd - s) / alpha
            if measure == "rvar":
                a = g_rvar
            elif measure == "cvar":
                a = cvar
            elif measure == "mvar":
                a = (w_mix * cvar + g_rvar) / (w_mix + 1)
            else:  # risk_seeking: upper-tail CVaR term, upper_weight = w_mix
                upper = pos(s - qu) / (1 - beta)
                a = (w_mix * upper + g_rvar) / (w_mix + 1)
            if std_norm:
                a = a / (bstd + eps)
            if credit == "uniform":
                for i in pp:
                    adv[i] = a
            elif credit == "std":
                for i in pp:
                    adv[i] = a / (q_std[group[i]] + eps)
            else:  # sum-mean
                ratios = [reward[i] - q_mean[group[i]] for i in pp]
                tot = sum(ratios)
                for i, r in zip(pp, ratios, strict=True):
                    adv[i] = a * r / tot if abs(tot) > 1e-6 else a / len(pp)
    # quantile tracking after the advantage (ray_trainer.py): first step = empirical quantiles, then one SGD step
    flat = [s for b in range(len(bundles)) for s in scores[b]]
    if tracked is None:
        st["q"] = [quantile_linear(flat, a) for a in GRID]
    else:
        cdf = [mean([1.0 if s < q else 0.0 for s in flat]) for q in tracked]
        st["q"] = [q + lr_q * (a - c) for q, a, c in zip(tracked, GRID, cdf, strict=True)]
    return adv


RISKPO_OPTIONS = [
    {},
    {"mode": "batch"},
    {"mode": "mix"},
    {"measure": "rvar", "credit": "uniform"},
    {"measure": "cvar"},
    {"measure": "risk_seeking", "beta": 0.8},
    {"credit": "sum-mean", "beta": 0.8, "natural_baseline": False},  # the DAPO-Math script
    {"std_norm": False, "bundle_size": 2, "alpha": 0.1, "lr_q": 0.3},
    {"bundle_size": 1, "credit": "uniform"},
    {"bundle_size": 3, "w_mix": 0.5, "alpha": 0.3, "beta": 0.7},
]


@pytest.mark.parametrize("opts", RISKPO_OPTIONS, ids=[str(o) or "defaults" for o in RISKPO_OPTIONS])
def test_riskpo_matches_reference_over_steps(opts):
    fn = ADVANTAGES["riskpo"]
    for seed in range(4):
        state, ref_state = {}, {}
        for step in range(3):  # first step: batch quantiles; later steps: the tracked grid
            group, reward, mask = random_batch(100 * seed + step, binary=seed % 2 == 0)
            got = fn(to_rollout(group, reward, mask), state=state, **opts)
            want = riskpo_reference(group, reward, ref_state, **opts)
            assert_close(got, broadcast(want, mask))


def test_riskpo_preset_matches_official_math_script():
    # scripts/run_qwen2.5_1.5b_MVaR_math.sh: quantile_down 0.2, quantile_up 0.9, bundle 5, lr_q 0.1, credit std,
    # track, norm_adv_by_std, mixing risk measure on, natural baseline on, w_mix 1.5; no KL, no entropy bonus.
    p = PRESETS["riskpo"]
    assert p.advantage.name == "riskpo"
    want = dict(bundle_size=5, alpha=0.2, beta=0.9, lr_q=0.1, mode="track", measure="mvar", w_mix=1.5)
    want.update(natural_baseline=True, std_norm=True, credit="std")
    params = {**{k: v.default for k, v in _kwdefaults(ADVANTAGES["riskpo"]).items()}, **p.advantage.params}
    for k, v in want.items():
        assert params[k] == v, k
    assert p.aggregation == "token_mean"  # verl actor default loss_agg_mode
    assert p.regularizers == ()
    # verl's vanilla policy loss: clip 0.2 both sides and dual clip c = 3 for negative advantages
    assert p.loss.name == "ppo_clip" and p.loss.params.get("epsilon", 0.2) == 0.2
    assert p.loss.params.get("dual_clip") == 3.0


def _kwdefaults(fn):
    import inspect

    return {k: v for k, v in inspect.signature(fn).parameters.items() if v.kind == v.KEYWORD_ONLY}


# ================================================================================================ BNPO reference
def beta_pdf(p, a, b):
    """Beta(a, b) density with 0^0 = 1 (torch.distributions.Beta(a, b).log_prob(p).exp())."""
    if (p == 0.0 and a > 1) or (p == 1.0 and b > 1):
        return 0.0
    if (p == 0.0 and a < 1) or (p == 1.0 and b < 1):
        return math.inf
    la = (a - 1) * math.log(p) if a != 1 else 0.0
    lb = (b - 1) * math.log(1 - p) if b != 1 else 0.0
    return math.exp(la + lb + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))


def bnpo_column(group, reward, *, min_value=0.0, max_value=1.0, concentration=None, max_weight=1e6):
    P = max(group) + 1
    r = [(x - min_value) / (max_value - min_value) for x in reward]
    p = {}
    for g in range(P):
        rs = [r[i] for i in range(len(group)) if group[i] == g]
        p[g] = mean(rs) if len(rs) > 1 else 0.0  # the code: a group of one gets p = 0
    if concentration is None:
        ps = [p[g] for g in range(P)]
        if P > 1:
            mu = mean(ps)
            var = sum((x - mu) ** 2 for x in ps) / (P - 1)  # torch.var: unbiased
        else:
            mu, var = 0.0, 1.0
        if var == 0.0:
            al, be = 1.0, 1.0  # grpolab's documented departure (the code: NaN)
        else:
            k = mu * (1 - mu) / var - 1
            al, be = max(1.0, 1 + k * mu / 3), max(1.0, 1 + k * (1 - mu) / 3)
    else:
        al, be = concentration
    out = []
    for i in range(len(group)):
        pg = p[group[i]]
        pdf = beta_pdf(pg, al, be)
        w = min(max(1 / pdf if pdf > 0 else math.inf, 0.0), max_weight)
        out.append(w * (r[i] - pg))
    return out


BNPO_OPTIONS = [
    {},
    {"min_value": -1.0, "max_value": 2.0},
    {"concentration": (1.5, 1.5)},
    {"concentration": (1.0, 1.0)},
    {"concentration": (2.0, 3.0), "max_weight": 50.0},
]


@pytest.mark.parametrize("opts", BNPO_OPTIONS, ids=[str(o) or "defaults" for o in BNPO_OPTIONS])
def test_bnpo_matches_reference(opts):
    fn = ADVANTAGES["bnpo"]
    for seed in range(12):
        group, reward, mask = random_batch(200 + seed, binary=seed % 3 != 0, singletons=seed % 2 == 0)
        got = fn(to_rollout(group, reward, mask), **opts)
        assert torch.isfinite(got).all()
        assert_close(got, broadcast(bnpo_column(group, reward, **opts), mask))


def test_bnpo_decomposition_averages_columns():
    fn = ADVANTAGES["bnpo"]
    for seed in range(6):
        group, acc, mask = random_batch(300 + seed, P=5)
        fmt = [float(x > 0.3) for x in random_batch(400 + seed, P=5)[1]][: len(acc)]
        fmt += [1.0] * (len(acc) - len(fmt))
        rewards = torch.tensor([acc, fmt], dtype=torch.float64).T  # [B, 2]
        total = [a + f for a, f in zip(acc, fmt, strict=True)]
        r = to_rollout(group, total, mask, rewards=rewards, reward_names=("acc", "fmt"))
        got = fn(r, decompose=True)
        a1, a2 = bnpo_column(group, acc), bnpo_column(group, fmt)
        assert_close(got, broadcast([(x + y) / 2 for x, y in zip(a1, a2, strict=True)], mask))


def test_bnpo_degenerate_batches():
    fn = ADVANTAGES["bnpo"]
    # every prompt has the same p = 0.5: σ² = 0, the code gives NaN; grpolab falls back to Beta(1, 1) (documented)
    group, reward, mask = [0, 1, 0, 1], [1.0, 0.0, 0.0, 1.0], [[True, False]] * 4
    assert_close(fn(to_rollout(group, reward, mask)), broadcast([0.5, -0.5, -0.5, 0.5], mask))
    # one prompt: μ = 0, σ² = 1 -> Beta(1, 1) (the code's rule)
    assert_close(fn(to_rollout([0, 0, 0], [1.0, 0.0, 0.0], [[True]] * 3))[:, 0], [2 / 3, -1 / 3, -1 / 3])
    # groups of one only: p = 0 for all -> σ² = 0 -> Beta(1, 1): A = r'
    assert_close(fn(to_rollout([0, 1, 2], [1.0, 0.0, 1.0], [[True]] * 3))[:, 0], [1.0, 0.0, 1.0])
    # a group of one among others: p = 0, α > 1 -> pdf(0) = 0 -> weight clamped to 1e6
    group, reward = [0, 0, 1, 1, 1, 2], [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    got = fn(to_rollout(group, reward, [[True]] * 6))[:, 0]
    assert_close(got, bnpo_column(group, reward))
    assert got[5].item() == pytest.approx(1e6)
    with pytest.raises(ValueError, match="min_value"):
        fn(to_rollout([0, 0], [2.0, 2.0], [[True]] * 2))  # p = 2 outside [0, 1]: the code's assert


def test_bnpo_grpo_special_case():
    # α = β = 3/2: 1/pdf(p) = B(3/2, 3/2)/sqrt(p(1-p)) = (π/8)/sqrt(p(1-p)) -> GRPO with the population std
    group, reward, mask = [0, 0, 0, 1, 1, 1, 1], [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0], [[True]] * 7
    got = ADVANTAGES["bnpo"](to_rollout(group, reward, mask), concentration=(1.5, 1.5))[:, 0]
    want = [(1 - 1 / 3) * math.pi / 8 / math.sqrt(2 / 9)] + [(-1 / 3) * math.pi / 8 / math.sqrt(2 / 9)] * 2
    want += [0.25 * math.pi / 8 / math.sqrt(3 / 16)] * 2 + [-0.75 * math.pi / 8 / math.sqrt(3 / 16)]
    want += [0.25 * math.pi / 8 / math.sqrt(3 / 16)]
    assert_close(got, want)


def test_bnpo_preset_matches_official_run_sh():
    p = PRESETS["bnpo"]
    assert p.advantage.name == "bnpo"
    params = {**{k: v.default for k, v in _kwdefaults(ADVANTAGES["bnpo"]).items()}, **p.advantage.params}
    assert (params["min_value"], params["max_value"], params["decompose"]) == (0.0, 1.0, False)
    assert params["concentration"] is None and params["max_weight"] == 1e6
    assert p.loss.name == "clip_higher"
    assert dict(p.loss.params) == {"epsilon_low": 0.2, "epsilon_high": 0.28, "dual_clip": 10.0}
    assert p.aggregation == "seq_mean_token_sum" and p.regularizers == ()
    assert p.trainer.get("temperature", 1.0) == 1.0 and p.trainer.get("top_p", 1.0) == 1.0


# ================================================================================================ HRPO reference
def grpo_z(group, reward, eps=1e-6, ddof=1):
    out = []
    for i in range(len(group)):
        rs = [reward[j] for j in range(len(group)) if group[j] == group[i]]
        if len(rs) <= ddof:
            out.append(0.0)
            continue
        m = mean(rs)
        s = math.sqrt(sum((x - m) ** 2 for x in rs) / (len(rs) - ddof))
        out.append((reward[i] - m) / (s + eps))
    return out


@pytest.mark.parametrize("opts", [{}, {"step_weight": 0.3}, {"step_weight": 0.0}, {"ddof": 0, "eps": 1e-4}])
def test_hrpo_matches_reference(opts):
    fn = ADVANTAGES["hrpo"]
    lam = opts.get("step_weight", 1.0)
    for seed in range(8):
        group, reward, mask = random_batch(500 + seed, binary=seed % 2 == 0)
        g = torch.Generator().manual_seed(seed)
        tok = torch.randn(len(group), len(mask[0]), generator=g, dtype=torch.float64)
        tok_l = tok.tolist()
        tok = torch.where(torch.tensor(mask), tok, torch.full_like(tok, 1e9))  # padding must not leak
        z = grpo_z(group, reward, eps=opts.get("eps", 1e-6), ddof=opts.get("ddof", 1))
        want = [[(z[i] + lam * tok_l[i][t]) if m else 0.0 for t, m in enumerate(row)] for i, row in enumerate(mask)]
        assert_close(fn(to_rollout(group, reward, mask, token_reward=tok), **opts), want)
        # without step rewards HRPO is GRPO
        assert_close(fn(to_rollout(group, reward, mask), **opts), broadcast(z, mask))


# ============================================================================================= GRPO-S reference
def difficulty_reference(group, reward, hardness, *, a=1.0, b=1.0, reference=1.0, lo=0.5, hi=2.0, gap_of=None):
    """s_g = 1 + a·h_g + b·max(0, reference − mean_g r), normalised to mean 1 over prompts, clipped; r' = s·r.

    ``gap_of`` (default: the reward itself) is the per-completion value whose group mean gives the gap."""
    P = max(group) + 1
    gap_of = gap_of or reward
    s = []
    for g in range(P):
        idx = [i for i in range(len(group)) if group[i] == g]
        h = mean([hardness[i] for i in idx]) if hardness is not None else 0.0
        gap = max(0.0, reference - mean([gap_of[i] for i in idx]))  # grpolab: a negative gap counts as 0
        s.append(1 + a * h + b * gap)
    m = mean(s)
    s = [min(max(x / m, lo), hi) for x in s]
    return [s[group[i]] * reward[i] for i in range(len(group))]


@pytest.mark.parametrize(
    "opts",
    [{}, {"hardness_weight": 0.0}, {"gap_weight": 2.0, "hardness_weight": 0.5}, {"min_scale": 0.9, "max_scale": 1.1}],
)
def test_grpo_s_shaping_and_advantage_match_reference(opts):
    fn = SHAPING["difficulty_scale"]
    a, b = opts.get("hardness_weight", 1.0), opts.get("gap_weight", 1.0)
    lo, hi = opts.get("min_scale", 0.5), opts.get("max_scale", 2.0)
    for seed in range(8):
        group, reward, mask = random_batch(600 + seed, binary=seed % 2 == 0)
        rng = random.Random(seed)
        per_prompt = [rng.random() for _ in range(max(group) + 1)]
        hard = [per_prompt[g] for g in group]
        with_h = seed % 3 != 0
        extras = {"hardness": torch.tensor(hard, dtype=torch.float64)} if with_h else {}
        shaped, _ = fn(to_rollout(group, reward, mask, extras=extras), **opts)
        want = difficulty_reference(group, reward, hard if with_h else None, a=a, b=b, lo=lo, hi=hi)
        assert_close(shaped.reward, want)
        # the preset's advantage (Dr. GRPO on the scaled reward) = s·(r − mean_g r)
        adv = ADVANTAGES["dr_grpo"](shaped)
        dr = [want[i] - mean([want[j] for j in range(len(group)) if group[j] == group[i]]) for i in range(len(group))]
        assert_close(adv, broadcast(dr, mask))


def test_grpo_s_objective_column_and_rewards_above_the_reference():
    fn = SHAPING["difficulty_scale"]
    for seed in range(6):
        group, acc, mask = random_batch(650 + seed, P=6)
        rng = random.Random(seed)
        bonus = [rng.choice([0.0, 0.5, 1.5]) for _ in acc]  # combined reward up to 2.5 > reference 1
        total = [x + y for x, y in zip(acc, bonus, strict=True)]
        rewards = torch.tensor([acc, bonus], dtype=torch.float64).T  # [B, 2]
        r = to_rollout(group, total, mask, rewards=rewards, reward_names=("accuracy", "bonus"))
        shaped, _ = fn(r, objective="accuracy")
        assert_close(shaped.reward, difficulty_reference(group, total, None, gap_of=acc))
        shaped, _ = fn(r)  # gap from the combined reward, clamped at 0 where the group mean exceeds 1
        assert_close(shaped.reward, difficulty_reference(group, total, None))


# ====================================================================================== preset losses + gradients
def ref_policy_loss(logp, old, ref, adv, mask, *, eps_low, eps_high, dual, agg, kl_coef):
    """Per token −min(ρA, clip(ρ)A) (dual clip for A < 0) + kl_coef·k3, aggregated; autograd through ``logp``."""
    B, T = len(mask), len(mask[0])
    per_seq, n_tok, total = [], 0, 0.0
    for i in range(B):
        s, n = 0.0, 0
        for t in range(T):
            if not mask[i][t]:
                continue
            ratio = torch.exp(logp[i, t] - old[i][t])
            a = adv[i][t]
            lo = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a)
            if dual is not None and a < 0:
                lo = torch.minimum(lo, torch.tensor(-dual * a, dtype=torch.float64))
            x = ref[i][t] - logp[i, t]
            lo = lo + kl_coef * (torch.exp(x) - x - 1)
            s = s + lo
            n += 1
        per_seq.append((s, n))
        n_tok += n
        total = total + s
    if agg == "token_mean":
        return total / n_tok
    if agg == "seq_mean_token_mean":
        return sum(s / n for s, n in per_seq) / B
    if agg == "seq_mean_token_sum":
        return sum(s for s, _ in per_seq) / B
    raise AssertionError(agg)


LOSS_SETTINGS = {
    "riskpo": dict(eps_low=0.2, eps_high=0.2, dual=3.0, agg="token_mean", kl_coef=0.0),
    "bnpo": dict(eps_low=0.2, eps_high=0.28, dual=10.0, agg="seq_mean_token_sum", kl_coef=0.0),
    "hrpo": dict(eps_low=0.2, eps_high=0.2, dual=None, agg="seq_mean_token_mean", kl_coef=0.04),
    "grpo_s": dict(eps_low=0.2, eps_high=0.2, dual=None, agg="seq_mean_token_mean", kl_coef=0.04),
}


@pytest.mark.parametrize("name", sorted(LOSS_SETTINGS))
def test_preset_loss_values_and_gradients(name):
    preset = PRESETS[name]
    for seed in range(3):
        group, reward, mask = random_batch(700 + seed, P=7, singletons=False)
        B, T = len(group), len(mask[0])
        g = torch.Generator().manual_seed(seed)
        old = -torch.rand(B, T, generator=g, dtype=torch.float64) - 0.1  # [B, T]
        ref = old - 0.3 * torch.rand(B, T, generator=g, dtype=torch.float64)  # [B, T]
        # wide spread so that clipping and the dual clip both bind somewhere
        logp0 = old + 1.5 * torch.randn(B, T, generator=g, dtype=torch.float64)  # [B, T]
        hard = torch.rand(max(group) + 1, generator=g, dtype=torch.float64)[torch.tensor(group)]  # [B]
        tok = 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)  # [B, T]
        extras = {"hardness": hard}
        rollout = to_rollout(group, reward, mask, old_logp=old, ref_logp=ref, token_reward=tok, extras=extras)
        for part in preset.shaping:
            rollout, _ = SHAPING[part.name](rollout, **part.params)
        kw = {"state": {}} if "state" in _kwdefaults(ADVANTAGES[preset.advantage.name]) else {}
        adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params, **kw)  # [B, T]
        logp = logp0.clone().requires_grad_()
        agg = preset.aggregation
        loss, _ = POLICY_LOSSES[preset.loss.name](logp, rollout, adv, aggregation=agg, **preset.loss.params)
        for reg in preset.regularizers:
            extra, _ = REGULARIZERS[reg.name](logp, rollout, aggregation=agg, **reg.params)
            loss = loss + extra
        (grad,) = torch.autograd.grad(loss, logp)
        logp_r = logp0.clone().requires_grad_()
        want = ref_policy_loss(logp_r, old.tolist(), ref.tolist(), adv.tolist(), mask, **LOSS_SETTINGS[name])
        (grad_r,) = torch.autograd.grad(want, logp_r)
        assert abs(loss.item() - want.item()) <= TOL * max(1.0, abs(want.item()))
        assert_close(grad, grad_r.tolist())
        assert (grad[~torch.tensor(mask)] == 0).all()
