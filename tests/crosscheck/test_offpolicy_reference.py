"""Independent cross-check of REC / OPMD / AsymRE, LOOP, MDPO and LLDS against plain-loop reference implementations.

Written from the papers and the official code, not from grpolab's implementation:

- REC / OPMD / AsymRE ("Group-Relative REINFORCE Is Secretly an Off-Policy Algorithm", arXiv 2509.24203; official
  code modelscope/Trinity-RFT: ``trinity/algorithm/policy_loss_fn/rec_policy_loss.py`` (clip modes, weights,
  regularisers, ``default_args``), ``opmd_policy_loss.py`` (−A·logp / (1 + τ)), ``advantage_fn/rec_advantage.py``,
  ``asymre_advantage.py`` (baseline mean + shift, shift −0.1), ``opmd_advantage.py`` (baseline τ·logavgexp(r/τ));
  ``examples/rec_gsm8k/README.md`` (the named variants REC-OneSide-NoIS, ..., AsymRE = forward-KL 0.1, Kimi's OPMD
  = k2 0.1) and ``gsm8k.yaml``).
- LOOP (arXiv 2502.01600; official code apple/ml-loop ``phi_agents/rl/train.py``: ``_compute_adv_estimates``
  (leave-one-out baseline, no normalisation), ``_filter_rollouts`` (keep |A| >= abs_adv_threshold), ``_ppo_loss``
  (clip band [1/(1+ε), 1+ε]), ``_surrogate_loss`` (per-token loss averaged over a rollout's output tokens);
  ``conf/rl/params/default.yaml``: ε 0.1, threshold 0.01, 6 rollouts per scenario, 2 epochs).
- MDPO (Tomar et al., arXiv 2005.09814; official code manantomar/Mirror-Descent-Policy-Optimization
  ``mdpo_on/mdpo.py``: surrogate ``mean(ρ·A) − KL(π_θ ‖ π_k) / t_k``, ``t_k = 1 − k/K`` annealed, no clipping,
  ``sgd_steps`` 10 in the README). The per-token KL estimate ρ·log ρ − (ρ − 1) is the library's documented LLM
  reading (the Gaussian code uses the closed form); checked here for unbiasedness on a toy categorical.
- LLDS (arXiv 2512.04220; official code vengdeng/LLDS-On-Group-Relative-Policy-Optimization-Collapse-in-Search-R1
  ``verl/workers/actor/dp_actor.py``: ``chunk_sums_vectorized`` / ``expand_chunk_mask`` and the
  ``chunk_noreduce`` branch; ``train_grpo_nqhot.sh``: λ 0.2, chunk gate on, KL 0.001 low_var_kl, n_agent 5).

Every reference is a slow, obvious Python loop; values and gradients (float64) are compared to 1e-6 on random
batches with shuffled, unequal groups (size-1 groups included), right padding holding garbage, reward ties and
holes in the mask (tool-output tokens).
"""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout

ATOL = 1e-6
AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_sum_const")


@pytest.fixture(autouse=True, scope="module")
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ------------------------------------------------------------------------------------------------- batch makers
def shuffled_groups(gen: torch.Generator, sizes: list[int]) -> torch.Tensor:
    g = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])  # [B]
    return g[torch.randperm(len(g), generator=gen)]


def make_mask(gen: torch.Generator, B: int, T: int, *, holes: bool) -> torch.Tensor:
    """Right padding; with ``holes`` some interior positions are False too (tool-output tokens)."""
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i in range(B):
        L = int(torch.randint(1, T + 1, (1,), generator=gen))
        mask[i, :L] = True
        if holes and L > 2:
            for t in range(1, L - 1):
                if float(torch.rand((), generator=gen)) < 0.25:
                    mask[i, t] = False
    return mask


def make_batch(seed: int, sizes: list[int], T: int = 7, *, holes: bool = False, binary: bool = True):
    gen = torch.Generator().manual_seed(seed)
    group = shuffled_groups(gen, sizes)
    B = len(group)
    mask = make_mask(gen, B, T, holes=holes)
    # binary: ties, and groups where all rewards agree (A = 0 exactly)
    reward = torch.randint(0, 2, (B,), generator=gen).double() if binary else torch.rand(B, generator=gen)
    old = -torch.rand(B, T, generator=gen) * 3  # [B, T]
    # log-ratios in [-1.2, 1.2]: ratios from 0.30 to 3.3, covering every clip region of every mode
    logp0 = old + (torch.rand(B, T, generator=gen) * 2.4 - 1.2)  # [B, T]
    garbage = torch.full((B, T), float("nan"))
    old = torch.where(mask, old, garbage)
    logp0 = torch.where(mask, logp0, torch.full((B, T), 55.0))
    rollout = Rollout(group=group, mask=mask, reward=reward, old_logp=old)
    return rollout, logp0


def seq_adv_to_tokens(adv: list[float], mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(mask.shape)
    for i in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if mask[i, t]:
                out[i, t] = adv[i]
    return out


def counts(rollout: Rollout) -> dict:
    return dict(num_tokens=float(rollout.mask.sum()), num_seqs=float(rollout.batch_size), norm_constant=9.0)


def ref_aggregate(per_token: list[list[float | torch.Tensor]], mask: torch.Tensor, mode: str, C: float = 9.0):
    """Loops over the valid tokens; per_token[i][t] is used only where mask[i, t]."""
    B, T = mask.shape
    total = 0.0
    n_tok = int(mask.sum())
    for i in range(B):
        row = [per_token[i][t] for t in range(T) if mask[i, t]]
        s = sum(row)
        if mode == "token_mean":
            total = total + s / n_tok
        elif mode == "seq_mean_token_mean":
            total = total + s / len(row) / B
        elif mode == "seq_mean_token_sum":
            total = total + s / B
        elif mode == "seq_sum_const":
            total = total + s / (C * B)
    return total


def grad_of(fn, logp0: torch.Tensor):
    x = logp0.clone().requires_grad_(True)
    value = fn(x)
    (g,) = torch.autograd.grad(value, x)
    return value.item(), g


def assert_same(ours, ref, mask):
    v1, g1 = ours
    v2, g2 = ref
    assert abs(v1 - v2) < ATOL, (v1, v2)
    assert torch.allclose(g1[mask], g2[mask], atol=ATOL), (g1, g2)
    assert torch.all(g1[~mask] == 0)


# ============================================================================================== advantages
def ref_group_lists(rollout: Rollout) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(rollout.group.tolist()):
        groups.setdefault(g, []).append(i)
    return groups


def ref_centred(rollout: Rollout, *, shift: float = 0.0) -> list[float]:
    """Trinity rec/asymre: A_i = r_i − (mean_g r − shift); a size-1 group has mean = r (the formula applied
    literally; Trinity sets its baseline to 0 instead, see the library's documented convention)."""
    r = rollout.reward.tolist()
    out = [0.0] * len(r)
    for rows in ref_group_lists(rollout).values():
        mean = sum(r[i] for i in rows) / len(rows)
        for i in rows:
            out[i] = r[i] - (mean - shift)
    return out


def ref_opmd_adv(rollout: Rollout, tau: float) -> list[float]:
    """Trinity opmd_advantage 'logavgexp': baseline τ·log(mean_j exp(r_j / τ))."""
    r = rollout.reward.tolist()
    out = [0.0] * len(r)
    for rows in ref_group_lists(rollout).values():
        base = tau * math.log(sum(math.exp(r[j] / tau) for j in rows) / len(rows))
        for i in rows:
            out[i] = r[i] - base
    return out


def ref_rloo(rollout: Rollout) -> list[float]:
    """ml-loop _compute_adv_estimates (Baseline.LOO): baseline = mean of the OTHER rollouts' returns."""
    r = rollout.reward.tolist()
    out = [0.0] * len(r)
    for rows in ref_group_lists(rollout).values():
        if len(rows) == 1:
            continue  # no other rollout (ml-loop asserts >= 2); library convention A = 0
        for i in rows:
            out[i] = r[i] - sum(r[j] for j in rows if j != i) / (len(rows) - 1)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_advantages_match_reference(seed):
    rollout, _ = make_batch(seed, [4, 1, 3, 5, 2], binary=seed != 1)
    m = rollout.mask
    for delta in (0.1, 0.37):
        ours = ADVANTAGES["asymre"](rollout, delta=delta)
        ref = seq_adv_to_tokens(ref_centred(rollout, shift=delta), m)
        assert torch.allclose(ours, ref, atol=ATOL)
        # the paper's identity: AsymRE − REC advantage = δ on every valid token (size-1 groups included)
        assert torch.allclose((ours - ADVANTAGES["dr_grpo"](rollout))[m], torch.full((int(m.sum()),), delta))
    for tau in (1.0, 0.3, 4.0):
        ours = ADVANTAGES["opmd"](rollout, tau=tau)
        assert torch.allclose(ours, seq_adv_to_tokens(ref_opmd_adv(rollout, tau), m), atol=ATOL)
    assert torch.allclose(ADVANTAGES["dr_grpo"](rollout), seq_adv_to_tokens(ref_centred(rollout), m), atol=ATOL)
    assert torch.allclose(ADVANTAGES["rloo"](rollout), seq_adv_to_tokens(ref_rloo(rollout), m), atol=ATOL)


def test_opmd_baseline_limits():
    """τ → ∞: logavgexp baseline → mean (REC); τ → 0: → max (only the best completion gets A = 0)."""
    r = Rollout(
        group=torch.tensor([0, 0, 0]), mask=torch.ones(3, 1, dtype=torch.bool), reward=torch.tensor([1.0, 0.0, 0.5])
    )
    assert torch.allclose(ADVANTAGES["opmd"](r, tau=1e4)[:, 0], torch.tensor([0.5, -0.5, 0.0]), atol=1e-4)
    assert torch.allclose(ADVANTAGES["opmd"](r, tau=1e-3)[:, 0], torch.tensor([0.0, -1.0, -0.5]), atol=1e-2)


# ============================================================================================== REC loss
def ref_rec_token(logp, old, a, *, clip_mode, el, eh, elp, ehp, weight, temp, regularizer, coef):
    """Trinity RECPolicyLossFn.__call__ for one token (logp a 0-dim tensor with gradient)."""
    ratio = math.exp(logp.item() - old)  # detached in Trinity
    if clip_mode == "two-side":
        keep = 1 - el <= ratio <= 1 + eh
    elif clip_mode == "one-side":
        keep = (a >= 0 and ratio <= 1 + eh) or (a <= 0 and ratio >= 1 - el)
    elif clip_mode == "ring":
        keep = (1 - el <= ratio <= 1 + eh) or (a >= 0 and ratio <= 1 - elp) or (a <= 0 and ratio >= 1 + ehp)
    else:
        keep = True
    if weight == "importance_sampling":
        a = a * ratio
    elif weight == "truncated_importance_sampling":
        a = a * min(max(ratio, 1 - elp), 1 + ehp)
    elif weight == "advantage":
        a = a * math.exp(a / temp)
    loss = -a * logp * (1.0 if keep else 0.0)
    if regularizer == "forward-kl":
        loss = loss - coef * logp
    elif regularizer == "k2":
        loss = loss + coef * (logp - old) ** 2
    return loss


REC_MODES = ("none", "one-side", "two-side", "ring")
REC_WEIGHTS = ("none", "importance_sampling", "truncated_importance_sampling", "advantage")
REC_REGS = (("none", 0.0), ("forward-kl", 0.1), ("k2", 0.1))


@pytest.mark.parametrize("clip_mode", REC_MODES)
def test_rec_loss_matches_trinity(clip_mode):
    rollout, logp0 = make_batch(10 + REC_MODES.index(clip_mode), [4, 1, 3, 2, 5], T=6)
    m = rollout.mask
    adv = ADVANTAGES["dr_grpo"](rollout)  # exact zeros in tied groups and the size-1 group
    adv_list = ref_centred(rollout)
    for i, g in enumerate(rollout.group.tolist()):
        if int((rollout.group == g).sum()) == 1:
            adv_list[i] = 0.0
    hp_sets = [dict(epsilon_low=0.2, epsilon_high=0.2, epsilon_low_prime=0.6, epsilon_high_prime=2.0)]
    hp_sets.append(dict(epsilon_low=0.1, epsilon_high=0.28, epsilon_low_prime=0.5, epsilon_high_prime=1.0))
    for k, hp in enumerate(hp_sets):
        # the second ε set: only where ε / ε' are read (the mask, truncated IS); the regularisers do not read them
        for weight in REC_WEIGHTS if k == 0 else ("none", "truncated_importance_sampling"):
            for reg, coef in REC_REGS if k == 0 else REC_REGS[:1]:
                for agg in ("token_mean", "seq_mean_token_mean") if weight == reg == "none" else ("token_mean",):

                    def ours(x, hp=hp, weight=weight, reg=reg, coef=coef, agg=agg):
                        loss, _ = POLICY_LOSSES["rec"](
                            x, rollout, adv, aggregation=agg, clip_mode=clip_mode, weight=weight,
                            temperature=0.7, regularizer=reg, regularizer_coef=coef, **hp, **counts(rollout),
                        )  # fmt: skip
                        return loss

                    def ref(x, hp=hp, weight=weight, reg=reg, coef=coef, agg=agg):
                        per_tok = [
                            [
                                ref_rec_token(
                                    x[i, t], float(rollout.old_logp[i, t]), adv_list[i], clip_mode=clip_mode,
                                    el=hp["epsilon_low"], eh=hp["epsilon_high"], elp=hp["epsilon_low_prime"],
                                    ehp=hp["epsilon_high_prime"], weight=weight, temp=0.7, regularizer=reg, coef=coef,
                                ) if m[i, t] else None
                                for t in range(m.shape[1])
                            ]
                            for i in range(m.shape[0])
                        ]  # fmt: skip
                        return ref_aggregate(per_tok, m, agg)

                    assert_same(grad_of(ours, logp0), grad_of(ref, logp0), m)


def test_rec_defaults_are_trinity_default_args():
    """rec's defaults = RECPolicyLossFn.default_args(): ε 0.2/0.2, ε' 0.6/2.0, clip none, weight none, temp 1."""
    rollout, logp0 = make_batch(3, [3, 2, 4])
    adv = ADVANTAGES["dr_grpo"](rollout)
    full = dict(clip_mode="none", weight="none", regularizer="none", regularizer_coef=0.0, temperature=1.0)
    full |= dict(epsilon_low=0.2, epsilon_high=0.2, epsilon_low_prime=0.6, epsilon_high_prime=2.0)
    a, _ = POLICY_LOSSES["rec"](logp0, rollout, adv, aggregation="token_mean", **counts(rollout))
    b, _ = POLICY_LOSSES["rec"](logp0, rollout, adv, aggregation="token_mean", **counts(rollout), **full)
    assert float(a) == float(b)
    for mode in ("one-side", "ring"):  # the named defaults also hold when a mode is switched on
        a, _ = POLICY_LOSSES["rec"](logp0, rollout, adv, aggregation="token_mean", clip_mode=mode, **counts(rollout))
        full["clip_mode"] = mode
        b, _ = POLICY_LOSSES["rec"](logp0, rollout, adv, aggregation="token_mean", **counts(rollout), **full)
        assert float(a) == float(b)


def test_rec_on_policy_equals_group_mean_reinforce():
    """ρ = 1, clip none (spec unit test): REC gradient = −Σ A ∇logp / N, whatever the clip mode."""
    rollout, logp0 = make_batch(4, [3, 5, 1, 2])
    rollout = rollout.replace(old_logp=torch.where(rollout.mask, logp0, torch.zeros_like(logp0)))
    adv = ADVANTAGES["dr_grpo"](rollout)
    n = float(rollout.mask.sum())
    for mode in REC_MODES:
        _, g = grad_of(
            lambda x, mode=mode: POLICY_LOSSES["rec"](
                x, rollout, adv, aggregation="token_mean", clip_mode=mode, **counts(rollout)
            )[0],
            logp0,
        )
        assert torch.allclose(g, -adv / n * rollout.mask, atol=ATOL)


@pytest.mark.parametrize(
    "bad",
    [
        dict(clip_mode="gspo"),
        dict(weight="is"),
        dict(regularizer="kl"),
        dict(epsilon_low=0.0),
        dict(epsilon_low=1.5),
        dict(epsilon_high=-0.1),
        dict(epsilon_low_prime=0.0),
        dict(epsilon_high_prime=0.0),
        dict(temperature=0.0),
        dict(regularizer_coef=-0.1),
    ],
)
def test_rec_rejects_what_trinity_asserts(bad):
    rollout, logp0 = make_batch(5, [2, 2])
    adv = ADVANTAGES["dr_grpo"](rollout)
    with pytest.raises(ValueError):
        POLICY_LOSSES["rec"](logp0, rollout, adv, aggregation="token_mean", **counts(rollout), **bad)


# ============================================================================================== OPMD loss
@pytest.mark.parametrize("tau", [1.0, 0.25])
@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_opmd_loss_matches_trinity(tau, agg):
    rollout, logp0 = make_batch(20, [3, 1, 4, 2], T=5)
    m = rollout.mask
    adv = ADVANTAGES["opmd"](rollout, tau=tau)
    adv_list = ref_opmd_adv(rollout, tau)
    for i, g in enumerate(rollout.group.tolist()):
        if int((rollout.group == g).sum()) == 1:
            adv_list[i] = 0.0

    def ours(x):
        return POLICY_LOSSES["opmd"](x, rollout, adv, aggregation=agg, tau=tau, **counts(rollout))[0]

    def ref(x):
        per_tok = [[-adv_list[i] * x[i, t] / (1 + tau) for t in range(m.shape[1])] for i in range(m.shape[0])]
        return ref_aggregate(per_tok, m, agg)

    assert_same(grad_of(ours, logp0), grad_of(ref, logp0), m)


def test_asymre_equivalences():
    """AsymRE: REINFORCE with baseline mean − δ == REC + forward-KL(δ) (paper) == 2 × Trinity's opmd loss at τ = 1."""
    rollout, logp0 = make_batch(21, [4, 3, 1, 2], T=5)
    rollout = rollout.replace(old_logp=torch.where(rollout.mask, logp0 - 0.3, torch.zeros_like(logp0)))
    kw = dict(aggregation="token_mean", **counts(rollout))
    a = grad_of(lambda x: POLICY_LOSSES["rec"](x, rollout, ADVANTAGES["asymre"](rollout, delta=0.1), **kw)[0], logp0)
    b = grad_of(
        lambda x: POLICY_LOSSES["rec"](
            x, rollout, ADVANTAGES["dr_grpo"](rollout), regularizer="forward-kl", regularizer_coef=0.1, **kw
        )[0],
        logp0,
    )
    c = grad_of(lambda x: 2 * POLICY_LOSSES["opmd"](x, rollout, ADVANTAGES["asymre"](rollout), tau=1.0, **kw)[0], logp0)
    assert torch.allclose(a[1], b[1], atol=ATOL) and torch.allclose(a[1], c[1], atol=ATOL)
    assert abs(a[0] - b[0]) < ATOL and abs(a[0] - c[0]) < ATOL


# ============================================================================================== LOOP
def ref_loop_loss(x, rollout, eps=0.1, threshold=0.01):
    """ml-loop: LOO advantage, drop |A| < threshold, per rollout mean over output tokens of
    −min(ρA, clip(ρ, 1/(1+ε), 1+ε)·A), averaged over the kept rollouts (this trainer's divisor)."""
    adv = ref_rloo(rollout)
    m = rollout.mask
    kept = [i for i in range(len(adv)) if abs(adv[i]) >= threshold]
    lo, hi = 1 / (1 + eps), 1 + eps
    total = 0.0
    for i in kept:
        toks = []
        for t in range(m.shape[1]):
            if m[i, t]:
                ratio = torch.exp(x[i, t] - rollout.old_logp[i, t])
                objective = torch.minimum(ratio * adv[i], torch.clamp(ratio, lo, hi) * adv[i])
                toks.append(-objective)
        total = total + sum(toks) / len(toks)
    return total / len(kept), kept


def trainer_path(preset_name, rollout, logp_full):
    """What the trainer does with a preset: advantage -> selectors -> loss with the kept batch's counts."""
    p = PRESETS[preset_name]
    adv = ADVANTAGES[p.advantage.name](rollout, **p.advantage.params)
    token_keep = rollout.mask
    for part in p.selectors:
        adv, kept, _ = SELECTORS[part.name](rollout, adv, **part.params)
        token_keep = token_keep & kept
    rows = token_keep.any(dim=-1)
    r2 = rollout.select(rows).replace(mask=token_keep[rows])
    adv2 = adv[rows] * r2.mask
    loss, _ = POLICY_LOSSES[p.loss.name](
        logp_full[rows], r2, adv2, aggregation=p.aggregation, **counts(r2), **p.loss.params
    )
    return loss, rows


@pytest.mark.parametrize("seed", [30, 31, 32])
def test_loop_preset_matches_ml_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    rollout, logp0 = make_batch(seed, [6, 6, 1, 6, 3], T=6, binary=False)
    # near-ties: rewards that give LOO advantages just below / above the 0.01 threshold
    r = rollout.reward.clone()
    g0 = (rollout.group == 0).nonzero().flatten()
    r[g0] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]) + torch.tensor([0.004, -0.004, 0.0, 0.02, -0.03, 0.0])
    g1 = (rollout.group == 1).nonzero().flatten()
    r[g1] = torch.randint(0, 2, (6,), generator=gen).double()
    rollout = rollout.replace(reward=r)

    x1 = logp0.clone().requires_grad_(True)
    ours, rows = trainer_path("loop", rollout, x1)
    (g1_,) = torch.autograd.grad(ours, x1)
    x2 = logp0.clone().requires_grad_(True)
    ref, kept = ref_loop_loss(x2, rollout)
    (g2_,) = torch.autograd.grad(ref, x2)
    assert rows.nonzero().flatten().tolist() == kept
    assert abs(ours.item() - ref.item()) < ATOL
    assert torch.allclose(g1_[rollout.mask], g2_[rollout.mask], atol=ATOL)


def test_loop_preset_hyper_parameters():
    p = PRESETS["loop"]
    assert p.arxiv == "2502.01600"
    assert p.advantage.name == "rloo" and dict(p.advantage.params) == {}  # baseline leave_one_out, no normalisation
    lo, hi = 1 - p.loss.params["epsilon_low"], 1 + p.loss.params["epsilon_high"]
    assert p.loss.name == "clip_higher" and abs(lo - 1 / 1.1) < 1e-12 and abs(hi - 1.1) < 1e-12  # ppo_epsilon 0.1
    assert p.aggregation == "seq_mean_token_mean"
    assert [(s.name, dict(s.params)) for s in p.selectors] == [("min_abs_advantage", {"threshold": 0.01})]
    assert p.regularizers == () and p.value_loss is None  # rloo_kl_lambda 0, no critic
    assert p.trainer["num_iterations"] == 2  # epochs_per_iteration
    assert p.trainer["num_generations"] == 6  # rollouts_per_scenario
    assert p.trainer["temperature"] == 1.0


# ============================================================================================== MDPO
def ref_mdpo_loss(x, rollout, adv, inv_t, agg):
    """Tomar et al.: maximise ρ·A − KL(π_θ ‖ π_k)/t_k, no clipping; per sampled token KL ≈ ρ log ρ − (ρ − 1)."""
    m = rollout.mask
    per_tok = [[None] * m.shape[1] for _ in range(m.shape[0])]
    for i in range(m.shape[0]):
        for t in range(m.shape[1]):
            if m[i, t]:
                log_ratio = x[i, t] - rollout.old_logp[i, t]
                ratio = torch.exp(log_ratio)
                per_tok[i][t] = -ratio * adv[i, t] + inv_t * (ratio * log_ratio - (ratio - 1))
    return ref_aggregate(per_tok, m, agg)


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_mdpo_loss_matches_reference(agg):
    rollout, logp0 = make_batch(40, [3, 1, 4, 2], T=6, binary=False)
    gen = torch.Generator().manual_seed(41)
    adv = torch.randn(rollout.mask.shape, generator=gen) * rollout.mask  # GAE-like per-token advantages
    K = 100
    for step in (0, 1, 37, 98, 99):
        t_k = 1 - step / K  # paper: t_k = 1 − k/K, annealed from 1 towards 0 (k = completed iterations)
        inv_t = 1 / max(t_k, 0.01)

        def ours(x, step=step):
            return POLICY_LOSSES["mdpo"](x, rollout, adv, aggregation=agg, step=step, total_steps=K, **counts(rollout))[
                0
            ]

        assert_same(
            grad_of(ours, logp0),
            grad_of(lambda x, s=inv_t: ref_mdpo_loss(x, rollout, adv, s, agg), logp0),
            rollout.mask,
        )
    # a fixed KL weight (MDLOO-style) replaces 1/t_k
    ours = grad_of(
        lambda x: POLICY_LOSSES["mdpo"](x, rollout, adv, aggregation=agg, kl_coef=0.3, **counts(rollout))[0], logp0
    )
    assert_same(ours, grad_of(lambda x: ref_mdpo_loss(x, rollout, adv, 0.3, agg), logp0), rollout.mask)


def test_mdpo_first_step_is_policy_gradient():
    """At θ = θ_k the KL term and its gradient vanish: the gradient is −A ∇logp (spec unit test)."""
    rollout, logp0 = make_batch(42, [3, 3, 2])
    rollout = rollout.replace(old_logp=torch.where(rollout.mask, logp0, torch.zeros_like(logp0)))
    adv = torch.randn(rollout.mask.shape, generator=torch.Generator().manual_seed(0)) * rollout.mask
    v, g = grad_of(
        lambda x: POLICY_LOSSES["mdpo"](
            x, rollout, adv, aggregation="token_mean", step=5, total_steps=10, **counts(rollout)
        )[0],
        logp0,
    )
    n = float(rollout.mask.sum())
    assert torch.allclose(g, -adv / n, atol=ATOL)
    assert abs(v + float(adv.sum()) / n) < ATOL


def test_mdpo_kl_estimate_is_unbiased_reverse_kl():
    """E_{a∼π_k}[ρ log ρ − (ρ − 1)] = KL(π_θ ‖ π_k) exactly (checked by enumerating a categorical)."""
    p_k = torch.tensor([0.5, 0.3, 0.2])
    p_t = torch.tensor([0.2, 0.2, 0.6])
    rho = p_t / p_k
    est = float((p_k * (rho * rho.log() - (rho - 1))).sum())
    exact = float((p_t * (p_t / p_k).log()).sum())
    assert abs(est - exact) < 1e-12
    # the loss of each enumerated action as a one-token batch (A = 0, KL weight 1), weighted by π_k, is the KL, and
    # its gradient w.r.t. log π_θ(a) is π_k(a)·ρ_a·log ρ_a = π_θ(a)·log ρ_a (the sampled-token part of ∇KL)
    x = p_t.log().clone().requires_grad_(True)  # [3]
    kl = 0.0
    for a in range(3):
        one = Rollout(
            group=torch.zeros(1, dtype=torch.long), mask=torch.ones(1, 1, dtype=torch.bool),
            reward=torch.zeros(1), old_logp=p_k[a].log().reshape(1, 1),
        )  # fmt: skip
        term, _ = POLICY_LOSSES["mdpo"](
            x[a].reshape(1, 1), one, torch.zeros(1, 1), aggregation="token_mean", kl_coef=1.0, num_tokens=1.0
        )
        kl = kl + p_k[a] * term
    assert abs(kl.item() - exact) < 1e-12
    (g,) = torch.autograd.grad(kl, x)
    assert torch.allclose(g, p_t * rho.log(), atol=1e-12)


def test_mdpo_preset_hyper_parameters():
    p = PRESETS["mdpo"]
    assert p.arxiv == "2005.09814"
    assert p.loss.name == "mdpo" and "kl_coef" not in p.loss.params  # annealed 1/t_k, not a fixed coefficient
    assert p.advantage.name == "gae" and p.advantage.params["lam"] == 0.95  # run_mujoco.py: lam=0.95
    assert p.trainer["num_iterations"] == 10  # README: on-policy --sgd_steps=10 (full-batch steps)
    assert p.regularizers == ()


# ============================================================================================== LLDS
def ref_llds(x, rollout, adv, *, gate, coef, agg):
    """dp_actor.py: d_t = max(0, old − logp); preserving set = tokens with A >= 0; A-gate: contiguous runs of
    (mask & A >= 0) whose Σ(old − logp) > 0; R-gate: the whole response's Σ over its A >= 0 tokens > 0.
    Penalty = coef · (aggregated gate·d) over all response tokens."""
    m = rollout.mask
    B, T = m.shape
    per_tok = [[None] * T for _ in range(B)]
    for i in range(B):
        pos = [bool(m[i, t]) and float(adv[i, t]) >= 0 for t in range(T)]
        gate_row = [False] * T
        if gate == "action":
            t = 0
            while t < T:
                if pos[t]:
                    run = []
                    while t < T and pos[t]:
                        run.append(t)
                        t += 1
                    if sum(float(rollout.old_logp[i, s]) - x[i, s].item() for s in run) > 0:
                        for s in run:
                            gate_row[s] = True
                else:
                    t += 1
        else:
            total = sum(float(rollout.old_logp[i, s]) - x[i, s].item() for s in range(T) if pos[s])
            if total > 0:
                gate_row = pos
        for t in range(T):
            if m[i, t]:
                d = torch.clamp(rollout.old_logp[i, t] - x[i, t], min=0.0)
                per_tok[i][t] = coef * d * (1.0 if gate_row[t] else 0.0)
    return ref_aggregate(per_tok, m, agg)


@pytest.mark.parametrize("gate", ["action", "response"])
@pytest.mark.parametrize("seed", [50, 51])
def test_llds_matches_official(gate, seed):
    rollout, logp0 = make_batch(seed, [5, 1, 4, 3], T=9, holes=True)
    # small log-ratios of both signs so that chunk sums land on both sides of 0
    gen = torch.Generator().manual_seed(seed + 100)
    logp0 = torch.where(rollout.mask, rollout.old_logp + torch.randn(rollout.mask.shape, generator=gen) * 0.2, logp0)
    adv = ADVANTAGES["grpo"](rollout)  # exact zeros (tied groups, size-1 group) count as A >= 0
    for agg in ("token_mean",):
        for coef in (0.2, 1.3):

            def ours(x, coef=coef, agg=agg):
                return REGULARIZERS["llds"](
                    x, rollout, advantages=adv, aggregation=agg, coef=coef, gate=gate, **counts(rollout)
                )[0]

            def ref(x, coef=coef, agg=agg):
                return ref_llds(x, rollout, adv, gate=gate, coef=coef, agg=agg)

            assert_same(grad_of(ours, logp0), grad_of(ref, logp0), rollout.mask)


def test_llds_hand_example():
    """Spec unit test: a positive-A chunk that drops log-prob by 0.1 on each of 2 tokens, N = 5 tokens → λ·0.2/5."""
    rollout = Rollout(
        group=torch.tensor([0, 0]), mask=torch.tensor([[1, 1, 0, 1], [1, 1, 0, 0]]).bool(),
        reward=torch.tensor([1.0, 0.0]), old_logp=torch.zeros(2, 4),
    )  # fmt: skip
    logp = torch.tensor([[-0.1, -0.1, 0.0, 0.05], [-0.5, -0.5, 0.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0, 0.0, 1.0], [-1.0, -1.0, 0.0, 0.0]])
    loss, _ = REGULARIZERS["llds"](logp, rollout, advantages=adv, aggregation="token_mean", num_tokens=5.0)
    assert abs(float(loss) - 0.2 * 0.2 / 5) < 1e-12  # chunk {0, 1} active; chunk {3} rose; row 1 has A < 0


def test_llds_preset_hyper_parameters():
    p = PRESETS["grpo_llds"]
    assert p.arxiv == "2512.04220"
    assert p.advantage.name == "grpo"
    assert p.loss.name == "ppo_clip" and p.loss.params["epsilon"] == 0.2  # verl clip_ratio 0.2
    assert p.aggregation == "token_mean"
    regs = {r.name: dict(r.params) for r in p.regularizers}
    assert regs["llds"] == {"coef": 0.2, "gate": "action"}  # NO_REDUCE_LAMBDA=0.2, ISCHUNK=true
    assert regs["kl"]["coef"] == 0.001 and regs["kl"]["estimator"] == "k3"  # kl_loss_coef, low_var_kl
    assert regs["entropy"] == {"coef": 0.001}  # verl ppo_trainer.yaml entropy_coeff 0.001, not overridden
    assert p.trainer["num_generations"] == 5  # rollout.n_agent=5
    assert p.trainer["temperature"] == 1.0 and p.trainer["top_p"] == 0.95  # rollout config defaults
    # official: 2560 completions / ppo_mini_batch_size 256 = 10 steps per batch; the preset keeps 2 (documented) so
    # that it runs on tiny batches while the penalty (0 on the first mini-batch) still acts
    assert p.trainer["minibatches"] == 2 and "--minibatches 10" in p.notes


# ============================================================================================== REC-family presets
def test_rec_family_presets():
    rec, opmd, asym = PRESETS["rec"], PRESETS["opmd"], PRESETS["asymre"]
    for p in (rec, opmd, asym):
        assert p.arxiv == "2509.24203"
        assert p.aggregation == "token_mean"  # loss_agg_mode token-mean
        assert p.regularizers == ()
        assert p.trainer.get("num_generations", 8) == 8  # gsm8k.yaml repeat_times 8
        assert p.trainer["temperature"] == 1.0
    # REC-OneSide-NoIS with ε 0.2 / 0.2, no std normalisation
    assert rec.advantage.name == "dr_grpo"
    assert rec.loss.name == "rec" and rec.loss.params["clip_mode"] == "one-side"
    assert rec.loss.params.get("weight", "none") == "none"
    assert rec.loss.params.get("epsilon_low", 0.2) == 0.2 and rec.loss.params.get("epsilon_high", 0.2) == 0.2
    # Trinity's 'opmd' algorithm: policy loss opmd (τ = 1) on the mean-baseline advantage
    assert opmd.loss.name == "opmd" and opmd.loss.params.get("tau", 1.0) == 1.0
    assert opmd.advantage.name == "dr_grpo"
    # AsymRE: baseline shift −0.1 with plain REINFORCE
    assert asym.advantage.name == "asymre" and asym.advantage.params.get("delta", 0.1) == 0.1
    assert asym.loss.name == "rec" and asym.loss.params.get("clip_mode", "none") == "none"
