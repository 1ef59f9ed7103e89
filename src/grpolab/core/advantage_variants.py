"""Advantage estimators that reshape GRPO's group-relative signal: RiskPO, BNPO and HRPO.

Registered in ``ADVANTAGES`` with the common signature ``fn(rollout, *, <hyper-parameters>) -> Tensor [B, T]``
(0 at masked positions):

- ``riskpo``: risk measures (RVaR / MVaR) of *bundle* scores with tracked quantiles (RiskPO, arXiv 2510.00911).
  It keeps cross-step state (the tracked quantile grid) in the run argument ``state``.
- ``bnpo``: the group-centred reward divided by an adaptive Beta density (BNPO, arXiv 2506.02864).
- ``hrpo``: GRPO's group z-score plus a weighted per-action reward (MasHost's HRPO, arXiv 2506.08507).

>>> import torch
>>> from grpolab.core.types import Rollout
>>> r = Rollout(group=torch.tensor([0, 0, 1, 1]), mask=torch.ones(4, 1, dtype=torch.bool),
...             reward=torch.tensor([1.0, 0.0, 1.0, 0.0]))
>>> [round(a, 4) for a in ADVANTAGES["bnpo"](r)[:, 0].tolist()]  # one spread of p: Beta(1, 1), REINFORCE
[0.5, -0.5, 0.5, -0.5]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES, grpo
from grpolab.core.stats import group_count, group_mean, group_std, group_sum, masked_var
from grpolab.core.types import Rollout

# ============================================================================================== RiskPO
#: RiskPO's quantile-tracking grid α_k = 0.05, 0.10, ..., 0.95 (RTkenny/RiskPO ``ray_trainer.py``).
RISK_LEVELS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
RISK_MODES = ("track", "batch", "mix")
RISK_MEASURES = ("rvar", "cvar", "mvar", "risk_seeking")
RISK_CREDITS = ("uniform", "std", "sum-mean")
#: A std at or below this is replaced by 1 (RiskPO's per-question std rule, also applied to the bundle std).
_STD_FLOOR = 1e-3
#: sum-mean credit falls back to an equal split when the paper's summed centred rewards are this close to 0.
_SUM_FLOOR = 1e-6


def risk_paper_advantage(
    scores: Tensor,
    q_down: Tensor | float,
    q_up: Tensor | float,
    *,
    alpha: float = 0.2,
    beta: float = 0.9,
    measure: str = "mvar",
    w_mix: float = 1.5,
    natural_baseline: bool = True,
) -> Tensor:
    """RiskPO's per-paper advantage before any std normalisation: the gradient weight of a risk measure, [N].

    RiskPO: Risk-based Policy Optimization via Verifiable Reward for LLM Post-Training (arXiv 2510.00911); the
    formulas follow the official code (RTkenny/RiskPO ``core_algos.py::compute_grpo_bundle_rvar_outcome_advantage_
    quantile_tracking``), which the paper's closed-form MVaR could not be checked against.

    - RVaR_{α,β} weight: ``g(S) = [(S − q_down)_+ − (S − q_up)_+ + c·(q_down − q_up)] / (β − α)``, c = 1 with
      ``natural_baseline`` (then g ≤ 0, = 0 above q_up), else c = 0 (then g ≥ 0, = 0 below q_down).
    - CVaR_α (lower tail) weight: ``cvar(S) = −(q_down − S)_+ / α``.
    - MVaR (``measure="mvar"``, paper): ``(w·cvar + g) / (w + 1)``; ``"risk_seeking"`` (the repo's risk-seeking
      run) replaces the lower tail by the upper one: ``(w·(S − q_up)_+ / (1 − β) + g) / (w + 1)``; there ``w_mix``
      plays the code's separate ``upper_weight`` (1.5 in the risk-seeking script, the same value as ``w_mix``).
    - ``"cvar"`` (the CVaR_α weight alone) is an extension for analysis; the code has no such switch.

    The code divides by ``β − α + 1e-6`` and ``α + 1e-6``; here the divisions are exact (α, β are checked to
    satisfy 0 < α < β < 1), a relative difference below 1e-5.

    Args:
        scores: paper scores S, float [N].
        q_down, q_up: the α- and β-quantile values (scalars or float [N], one per paper).
        alpha: lower quantile level α; paper default 0.2 (MATH script), usually 0.1 to 0.2.
        beta: upper quantile level β; 0.9 (MATH script; 0.8 in the DAPO-Math script), usually 0.8 to 0.9.
        measure: ``"rvar"``, ``"cvar"``, ``"mvar"`` (paper) or ``"risk_seeking"``.
        w_mix: weight of the tail term against the RVaR one; paper 1.5 (> 1 favours the tail), usually 1 to 2.
        natural_baseline: c = 1 in g (MATH script: True; DAPO-Math script: False).

    Hand check (the spec's test): q_down 1, q_up 3, α 0.2, β 0.8, S = [0, 2, 4] → g = [−2, −1, 0] / 0.6 and
    cvar = [−5, 0, 0].

    >>> import torch
    >>> S = torch.tensor([0.0, 2.0, 4.0])
    >>> [round(x, 4) for x in risk_paper_advantage(S, 1.0, 3.0, alpha=0.2, beta=0.8, measure="rvar").tolist()]
    [-3.3333, -1.6667, 0.0]
    >>> risk_paper_advantage(S, 1.0, 3.0, alpha=0.2, beta=0.8, measure="cvar").tolist()
    [-5.0, -0.0, -0.0]
    """
    _check_risk_levels("risk_paper_advantage", alpha, beta)
    if measure not in RISK_MEASURES:
        raise ValueError(f"risk_paper_advantage: measure must be one of {list(RISK_MEASURES)}, got {measure!r}")
    if not w_mix >= 0:
        raise ValueError(f"risk_paper_advantage: w_mix must be >= 0, got {w_mix}; paper 1.5, usually 1 to 2")
    q_down = torch.as_tensor(q_down, dtype=scores.dtype, device=scores.device)  # [N] or []
    q_up = torch.as_tensor(q_up, dtype=scores.dtype, device=scores.device)  # [N] or []
    c = 1.0 if natural_baseline else 0.0
    # RVaR_{α,β}: the derivative of the risk measure puts weight only between the two quantiles
    g = ((scores - q_down).clamp(min=0) - (scores - q_up).clamp(min=0) + c * (q_down - q_up)) / (beta - alpha)  # [N]
    lower = -(q_down - scores).clamp(min=0) / alpha  # [N]: CVaR_α, the lower tail
    if measure == "rvar":
        return g  # [N]
    if measure == "cvar":
        return lower  # [N]
    if measure == "mvar":
        # RiskPO change: Mixed VaR = weighted CVaR_α + RVaR_{α,β}, more weight on the hard (low-score) tail
        return (w_mix * lower + g) / (w_mix + 1)  # [N]
    upper = (scores - q_up).clamp(min=0) / (1 - beta)  # [N]: the upper tail (risk seeking)
    return (w_mix * upper + g) / (w_mix + 1)  # [N]


def _check_risk_levels(name: str, alpha: float, beta: float) -> None:
    if not 0 < alpha < beta < 1:
        raise ValueError(f"{name}: quantile levels must satisfy 0 < alpha < beta < 1, got alpha={alpha}, beta={beta}")


def _rank_in_group(group: Tensor, num_groups: int) -> Tensor:
    """Position of each completion among the members of its group, in batch order: long [B] (0, 1, ...)."""
    order = torch.sort(group, stable=True).indices  # [B]: members of a group stay in batch order
    counts = torch.bincount(group, minlength=num_groups)  # [P]
    start = torch.cumsum(counts, 0) - counts  # [P]: first sorted position of each group
    rank = torch.empty_like(group)  # [B]
    rank[order] = torch.arange(group.shape[0], device=group.device) - start[group[order]]
    return rank  # [B]


def _floor_std(std: Tensor) -> Tensor:
    """RiskPO's rule: a std at or below 1e-3 (a constant set, or a single element: std 0) becomes 1."""
    return torch.where(std > _STD_FLOOR, std, torch.ones_like(std))


def _tracked_quantiles(state: dict[str, Any], dtype: torch.dtype, device: torch.device) -> Tensor | None:
    q = state.get("quantiles")
    if q is None:
        return None
    q = torch.as_tensor(q, dtype=dtype, device=device)  # [K]
    if q.shape != (len(RISK_LEVELS),) or not bool(torch.isfinite(q).all()):
        raise ValueError(
            f"riskpo: state['quantiles'] must hold {len(RISK_LEVELS)} finite tracked quantiles (one per level of "
            f"RISK_LEVELS), got {list(q.shape)}; pass a fresh dict to start tracking again"
        )
    return q


@ADVANTAGES.register("riskpo")
def riskpo(
    rollout: Rollout,
    *,
    state: dict,
    bundle_size: int = 5,
    alpha: float = 0.2,
    beta: float = 0.9,
    lr_q: float = 0.1,
    mode: str = "track",
    measure: str = "mvar",
    w_mix: float = 1.5,
    natural_baseline: bool = True,
    std_norm: bool = True,
    credit: str = "std",
    eps: float = 1e-6,
) -> Tensor:
    """RiskPO advantage: a risk measure of bundle ("paper") scores, credited to each completion: float [B, T].

    RiskPO: Risk-based Policy Optimization via Verifiable Reward for LLM Post-Training (arXiv 2510.00911),
    following the official code (RTkenny/RiskPO, ``compute_grpo_bundle_rvar_outcome_advantage_quantile_tracking``
    and the quantile tracking in ``ray_trainer.py``):

    1. Bundling: prompt groups ``[k·bundle_size, (k+1)·bundle_size)`` form bundle k (the last bundle is partial
       when P is not a multiple of ``bundle_size``). Paper j of a bundle takes the j-th completion (in batch order)
       of every prompt in it; its score is ``S_j = Σ_q r_{q,j}``. A bundle has ``min_q G_q`` papers: with unequal
       groups, the completions beyond that (``rank ≥ min_q G_q``) belong to no paper and get advantage 0.
    2. Quantiles q_down, q_up at levels α, β. ``mode="batch"``: per bundle, the empirical quantiles of its paper
       scores (linear interpolation; a single paper gives q = S). ``"track"`` (MATH script): the tracked quantiles
       of the grid ``RISK_LEVELS`` nearest to α and β. ``"mix"``: the mean of the two. Before anything is tracked
       (the first call) ``track`` and ``mix`` use the batch quantiles, as the code does.
    3. Paper advantage ``risk_paper_advantage(S, q_down, q_up, ...)`` (RVaR g, MVaR ``(w·cvar + g)/(w + 1)``),
       divided by ``std + eps`` of the bundle's paper scores (ddof 1) when ``std_norm``.
    4. Credit to the completions of a paper: ``"uniform"`` all get A; ``"std"`` A / (std of the completion's own
       group, ddof 1, + eps); ``"sum-mean"`` A·(r_i − mean_g r) / Σ_paper (r − mean_g r), an equal split A / n when
       that sum is within 1e-6 of 0. Group statistics use all members of the group, paper or not.
    5. Tracking update, after the advantage (so this batch is scored with the quantiles known before it): on the
       first call ``state["quantiles"]`` = empirical quantiles of all paper scores of the batch at ``RISK_LEVELS``;
       on later calls one pinball-loss SGD step ``q_k ← q_k + lr_q·(α_k − mean_j 1[S_j < q_k])`` over all papers.

    Convention choices (documented departures from the code):

    - A std at or below 1e-3 is replaced by 1 for the bundle's paper-score std too, not only for the per-group
      std of ``credit="std"`` (the code's rule there). The code divides a constant bundle by ``0 + eps``; with batch
      quantiles its advantage is exactly 0 anyway, but with tracked quantiles it is not (a bundle that failed every
      question sits below q_down), and the division would give ~1e6 advantages.
    - In the code the tracked values reach the advantage only through the batch's ``meta_info``, which is written
      after the advantage of the same batch; here they are used from the next call on, as the spec describes.
    - ``use_mean_as_baseline`` (off in every released script) is not implemented.

    Args:
        state: run argument: the part's private dict for the whole run (the trainer supplies it and saves it in
            checkpoints); holds ``"quantiles"`` (float [19], CPU) and ``"updates"`` (int). Pass ``{}`` to start.
        bundle_size: prompts per bundle; paper default 5, usually 2 to 8.
        alpha, beta: quantile levels; MATH-script defaults 0.2 and 0.9 (see ``risk_paper_advantage``).
        lr_q: learning rate of the quantile tracker; paper default 0.1, usually 0.01 to 0.1; > 0.
        mode: ``"track"`` (MATH script), ``"batch"`` or ``"mix"`` (the yaml default).
        measure: ``"mvar"`` (paper), ``"rvar"``, ``"cvar"`` or ``"risk_seeking"``.
        w_mix: tail weight in MVaR; paper 1.5, usually 1 to 2.
        natural_baseline: c = 1 in RVaR's g; True in the MATH script.
        std_norm: divide by the std of the bundle's paper scores (``norm_adv_by_std_in_grpo``); default True.
        credit: ``"std"`` (MATH script), ``"uniform"`` (yaml) or ``"sum-mean"`` (DAPO-Math script).
        eps: added to every std outside the root; 1e-6 as the code (verl); usually 1e-8 to 1e-4.

    Worked example (``mode="batch"``, ``measure="rvar"``, α 0.2, β 0.9, no std division, uniform credit): bundle
    size 2, group 0 rewards [1, 0], group 1 rewards [1, 1] → papers S = [2, 1]; q_0.2 = 1.2, q_0.9 = 1.9 →
    g(2) = (0.8 − 0.1 − 0.7)/0.7 = 0, g(1) = (0 − 0 − 0.7)/0.7 = −1 → advantages [0, −1, 0, −1].

    >>> import torch
    >>> r = Rollout(group=torch.tensor([0, 0, 1, 1]), mask=torch.ones(4, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0, 1.0, 1.0]))
    >>> adv = riskpo(r, state={}, bundle_size=2, mode="batch", measure="rvar", std_norm=False, credit="uniform")
    >>> [round(a, 4) for a in adv[:, 0].tolist()]
    [0.0, -1.0, 0.0, -1.0]
    """
    if not isinstance(state, dict):
        raise ValueError(f"riskpo: state must be a dict (the trainer's per-part state), got {type(state).__name__}")
    if isinstance(bundle_size, bool) or not isinstance(bundle_size, int) or bundle_size < 1:
        raise ValueError(f"riskpo: bundle_size must be a positive int, got {bundle_size!r}; paper 5")
    _check_risk_levels("riskpo", alpha, beta)
    if not lr_q > 0:
        raise ValueError(f"riskpo: lr_q must be > 0, got {lr_q}; paper 0.1, usually 0.01 to 0.1")
    if mode not in RISK_MODES:
        raise ValueError(f"riskpo: mode must be one of {list(RISK_MODES)}, got {mode!r}")
    if measure not in RISK_MEASURES:
        raise ValueError(f"riskpo: measure must be one of {list(RISK_MEASURES)}, got {measure!r}")
    if credit not in RISK_CREDITS:
        raise ValueError(f"riskpo: credit must be one of {list(RISK_CREDITS)}, got {credit!r}")
    if not eps > 0:
        raise ValueError(f"riskpo: eps must be > 0 (it keeps the division finite), got {eps}; usually 1e-8 to 1e-4")

    r, g, P = rollout.reward, rollout.group, rollout.num_groups  # [B], [B], int
    device, dtype = r.device, r.dtype
    K = -(-P // bundle_size)  # number of bundles; the last one is partial when P % bundle_size != 0
    counts = torch.bincount(g, minlength=P)  # [P]
    bundle_of_group = torch.arange(P, device=device) // bundle_size  # [P]
    # RiskPO bundling without replacement: a bundle has as many papers as its smallest group has completions
    n_papers = torch.full((K,), counts.max().item(), dtype=counts.dtype, device=device).scatter_reduce(
        0, bundle_of_group, counts, reduce="amin"
    )  # [K]
    prompts_per_bundle = torch.bincount(bundle_of_group, minlength=K)  # [K]
    G = int(n_papers.max().item())  # papers of the largest bundle
    rank = _rank_in_group(g, P)  # [B]: j, the paper a completion belongs to
    bundle = bundle_of_group[g]  # [B]
    in_paper = rank < n_papers[bundle]  # [B]: completions beyond min_q G_q are in no paper (advantage 0)
    paper = bundle * G + rank.clamp(max=G - 1)  # [B]: flat paper id k·G + j (meaningful where in_paper)
    paper_valid = (torch.arange(G, device=device)[None, :] < n_papers[:, None]).flatten()  # [K·G]
    scores = torch.zeros(K * G, dtype=dtype, device=device).index_add(0, paper[in_paper], r[in_paper])  # [K·G]
    valid_ids = paper_valid.nonzero().flatten()  # [N]: the papers that exist
    S = scores[valid_ids]  # [N]: S_j = Σ_q r_{q,j}
    paper_bundle = valid_ids // G  # [N]

    # per-bundle empirical quantiles at (α, β): NaN pads the missing papers of smaller bundles
    table = torch.where(paper_valid, scores, torch.full_like(scores, math.nan)).view(K, G)  # [K, G]
    levels_ab = torch.tensor([alpha, beta], dtype=dtype, device=device)  # [2]
    batch_q = torch.nanquantile(table, levels_ab, dim=1)  # [2, K]
    tracked = _tracked_quantiles(state, dtype, device)  # [19] or None
    if tracked is None or mode == "batch":
        q_down, q_up = batch_q[0], batch_q[1]  # [K], [K]
    else:
        grid = torch.tensor(RISK_LEVELS, dtype=dtype, device=device)  # [19]
        t_down = tracked[(grid - alpha).abs().argmin()]  # []: the tracked quantile nearest to level α
        t_up = tracked[(grid - beta).abs().argmin()]  # []
        if mode == "track":
            q_down, q_up = t_down.expand(K), t_up.expand(K)  # [K], [K]
        else:  # mix
            q_down, q_up = (t_down + batch_q[0]) / 2, (t_up + batch_q[1]) / 2  # [K], [K]

    adv_paper = risk_paper_advantage(
        S,
        q_down[paper_bundle],
        q_up[paper_bundle],
        alpha=alpha,
        beta=beta,
        measure=measure,
        w_mix=w_mix,
        natural_baseline=natural_baseline,
    )  # [N]
    if std_norm:
        bundle_std = _floor_std(group_std(S, paper_bundle, K, ddof=1))  # [K]: one paper or constant -> 1
        adv_paper = adv_paper / (bundle_std[paper_bundle] + eps)  # [N]
    per_paper = torch.zeros(K * G, dtype=dtype, device=device)  # [K·G]
    per_paper[valid_ids] = adv_paper
    a = per_paper[paper]  # [B]: the advantage of the completion's paper

    if credit == "std":
        a = a / (_floor_std(group_std(r, g, P, ddof=1))[g] + eps)  # [B]
    elif credit == "sum-mean":
        centred = r - group_mean(r, g, P)[g]  # [B]
        total = torch.zeros(K * G, dtype=dtype, device=device).index_add(0, paper[in_paper], centred[in_paper])
        total = total[paper]  # [B]: Σ over the completion's paper of (r − mean_g r)
        share = a / prompts_per_bundle[bundle].to(dtype)  # [B]: equal split A / n
        a = torch.where(total.abs() > _SUM_FLOOR, a * centred / torch.where(total == 0, 1.0, total), share)  # [B]
    a = torch.where(in_paper, a, torch.zeros_like(a))  # [B]

    # quantile tracking (after the advantage): initialise from the batch, then one pinball SGD step per call
    grid = torch.tensor(RISK_LEVELS, dtype=dtype, device=device)  # [19]
    if tracked is None:
        new_q = torch.quantile(S, grid)  # [19]
    else:
        below = (S[None, :] < tracked[:, None]).to(dtype).mean(dim=1)  # [19]: empirical CDF at each q_k
        new_q = tracked + lr_q * (grid - below)  # [19]: q ← q − lr·∂pinball/∂q
    state["quantiles"] = new_q.detach().cpu()
    state["updates"] = int(state.get("updates", 0)) + 1
    return torch.where(rollout.mask, a[:, None], torch.zeros((), dtype=dtype, device=device))  # [B, T]


# ============================================================================================== BNPO
def beta_log_pdf(p: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """log of the Beta(a, b) density at p ∈ [0, 1], elementwise; −inf at p = 0 (a > 1) or p = 1 (b > 1).

    Uses ``xlogy`` so that an exponent of 0 at the boundary gives 0 (Beta(1, b) at p = 0 has density b).

    >>> import torch
    >>> [round(x, 4) for x in beta_log_pdf(torch.tensor([0.0, 0.5]), 1.0, 2.0).exp().tolist()]
    [2.0, 1.0]
    """
    a = torch.as_tensor(a, dtype=p.dtype, device=p.device)
    b = torch.as_tensor(b, dtype=p.dtype, device=p.device)
    log_norm = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)  # log B(a, b)
    return torch.xlogy(a - 1, p) + torch.xlogy(b - 1, 1 - p) - log_norm


def _bnpo_column(
    reward: Tensor,
    group: Tensor,
    num_groups: int,
    *,
    min_value: float,
    max_value: float,
    concentration: tuple[float, float] | None,
    max_weight: float,
    what: str,
) -> Tensor:
    """BNPO's per-completion advantage [B] for one reward vector (float [B])."""
    r = (reward - min_value) / (max_value - min_value)  # [B]: step 1, affine map onto [0, 1]
    n = group_count(group, num_groups).to(r)  # [P]
    # step 2: p(q) = mean_G r'; a group of one completion gets p = 0 (as the code, inherited from verl)
    p = torch.where(n > 1, group_sum(r, group, num_groups) / n, torch.zeros_like(n))  # [P]
    if bool((p < -1e-6).any()) or bool((p > 1 + 1e-6).any()):
        raise ValueError(
            f"bnpo: group mean rewards of {what} must lie in [0, 1] after (r − min_value)/(max_value − min_value) "
            f"with min_value={min_value}, max_value={max_value}; got p in [{p.min().item():.4g}, "
            f"{p.max().item():.4g}]. Set min_value/max_value to the reward's range"
        )
    p = p.clamp(0.0, 1.0)  # [P]: rounding only
    if concentration is None:
        # step 3: batch μ and σ² of p over prompts (σ² unbiased, as torch.var); one prompt: μ = 0, σ² = 1
        if num_groups > 1:
            mu = p.mean()  # []
            var = masked_var(p, torch.ones_like(p, dtype=torch.bool), ddof=1)  # []
        else:
            mu, var = torch.zeros((), dtype=r.dtype), torch.ones((), dtype=r.dtype)
        if bool(var > 0):
            # step 4: method-of-moments Beta fit (a, b) of the p distribution
            k = mu * (1 - mu) / var - 1  # []
            a_fit, b_fit = k * mu, k * (1 - mu)  # [], []
            # step 5: the paper's optimal normaliser Beta(α, β) with α = max(1, 1 + a/3), β = max(1, 1 + b/3)
            a_n = (1 + a_fit / 3).clamp(min=1.0)  # []
            b_n = (1 + b_fit / 3).clamp(min=1.0)  # []
        else:
            # every prompt has the same p: the moment fit divides by 0 (NaN or inf); use Beta(1, 1), the
            # REINFORCE mean baseline that BNPO also falls back to with a single prompt
            a_n = b_n = torch.ones((), dtype=r.dtype)
    else:
        a_n, b_n = (torch.tensor(c, dtype=r.dtype) for c in concentration)
    # step 6: A = (r' − p) / f_N(p; α, β), 1/pdf clamped to [0, max_weight] *before* the multiply
    weight = torch.exp(-beta_log_pdf(p, a_n.to(r.device), b_n.to(r.device))).clamp(0.0, max_weight)  # [P]
    centred = r - p[group]  # [B]
    lo = torch.full_like(p, math.inf).scatter_reduce(0, group, r, reduce="amin")  # [P]
    hi = torch.full_like(p, -math.inf).scatter_reduce(0, group, r, reduce="amax")  # [P]
    constant = (hi == lo) & (n > 1)  # [P]: all rewards equal -> r' − p is 0 exactly, not a rounding residue
    centred = torch.where(constant[group], torch.zeros_like(centred), centred)  # [B]
    return centred * weight[group]  # [B]


@ADVANTAGES.register("bnpo")
def bnpo(
    rollout: Rollout,
    *,
    min_value: float = 0.0,
    max_value: float = 1.0,
    decompose: bool = False,
    concentration: tuple[float, float] | None = None,
    max_weight: float = 1e6,
) -> Tensor:
    """BNPO advantage ``(r' − p(q)) / f_N(p(q); α, β)``, broadcast to every valid token: float [B, T].

    BNPO: Beta Normalization Policy Optimization (Xiao et al., arXiv 2506.02864), following the official code
    (changyi7231/BNPO ``compute_bnpo_outcome_advantage``):

    1. ``r' = (r − min_value) / (max_value − min_value)`` (the theory is for binary rewards in [0, 1]).
    2. ``p(q) = mean_G r'`` per group; a group of size 1 gets p = 0 (the code's rule; its advantage is then
       ``r'·min(1/f_N(0), max_weight)``, up to 1e6·r' when α > 1).
    3. Over the P prompts of the batch: μ = mean p, σ² = var p (ddof 1); with one prompt μ = 0, σ² = 1.
    4. Method of moments: ``a = (μ(1 − μ)/σ² − 1)·μ``, ``b = (μ(1 − μ)/σ² − 1)·(1 − μ)``.
    5. Normaliser ``α = max(1, 1 + a/3)``, ``β = max(1, 1 + b/3)`` (the paper's variance-optimal choice).
    6. ``A = (r' − p) · clamp(1 / Beta_pdf(p; α, β), 0, max_weight)``.

    Special cases: α = β = 1 (uniform density) is REINFORCE with the group-mean baseline; α = β = 3/2 gives
    ``pdf = (8/π)·√(p(1 − p))``, so A = (π/8)·(r' − p)/std_G (ddof 0), GRPO up to the constant 8/π.

    Convention choices: when every prompt has the same p (σ² = 0) the moment fit is undefined (the code returns
    NaN advantages); here the normaliser falls back to Beta(1, 1), as for a single prompt. A group whose rewards
    are all equal gets exactly 0 even where the pdf is 0 (1/pdf is clamped first, and r' − p is set to 0 exactly).

    Args:
        min_value, max_value: the reward range mapped onto [0, 1]; paper default 0 and 1 (binary rewards).
        decompose: the paper's advantage decomposition for multi-part rewards (accuracy + format): compute the
            advantage for each column of ``rollout.rewards`` separately (same min/max map, own Beta fit) and
            average them; default False (paper). Needs ``rollout.rewards``.
        concentration: fixed normaliser (α, β) instead of the batch fit, for analysis: (1, 1) = REINFORCE with
            a mean baseline, (1.5, 1.5) ∝ GRPO. Default None (the paper's adaptive fit).
        max_weight: upper clamp of 1/pdf; 1e6 as the code.

    Hand check (three groups of four, rewards with p = 0.25, 0.5, 0.75): μ = 0.5, σ² = 0.0625, a = b = 1.5 →
    α = β = 1.5 → weight π/(8·√(p(1 − p))) = 0.9069 at p = 0.25 → the first group [1, 0, 0, 0] gets
    [0.6802, −0.2267, −0.2267, −0.2267].
    """
    if not max_value > min_value:
        raise ValueError(f"bnpo: max_value must exceed min_value, got min_value={min_value}, max_value={max_value}")
    if not max_weight > 0:
        raise ValueError(f"bnpo: max_weight must be > 0, got {max_weight}; the code uses 1e6")
    if concentration is not None:
        if len(concentration) != 2 or not all(c > 0 for c in concentration):
            raise ValueError(f"bnpo: concentration must be a pair (α, β) of positive numbers, got {concentration!r}")
        concentration = (float(concentration[0]), float(concentration[1]))
    g, P = rollout.group, rollout.num_groups  # [B], int
    kwargs: dict[str, Any] = dict(
        min_value=min_value, max_value=max_value, concentration=concentration, max_weight=max_weight
    )
    if decompose:
        if rollout.rewards is None:
            raise ValueError(
                "bnpo: decompose=True needs rollout.rewards [B, K] (one column per reward part, e.g. accuracy and "
                "format); the trainer fills it from the task's reward functions"
            )
        columns = [
            _bnpo_column(rollout.rewards[:, k].to(rollout.reward), g, P, what=f"reward {name!r}", **kwargs)
            for k, name in enumerate(rollout.reward_names)
        ]  # K x [B]
        adv = torch.stack(columns).mean(dim=0)  # [B]: BNPO advantage decomposition, the mean over parts
    else:
        adv = _bnpo_column(rollout.reward, g, P, what="reward", **kwargs)  # [B]
    return torch.where(rollout.mask, adv[:, None], torch.zeros((), dtype=adv.dtype, device=adv.device))  # [B, T]


# ============================================================================================== HRPO
@ADVANTAGES.register("hrpo")
def hrpo(rollout: Rollout, *, step_weight: float = 1.0, ddof: int = 1, eps: float = 1e-6) -> Tensor:
    """HRPO advantage ``A_{i,t} = A_i^group + λ·r_{i,t}``: GRPO's z-score plus the action-wise reward, [B, T].

    MasHost Builds It All: Autonomous Multi-Agent System Directed by Reinforcement Learning (Yang et al., arXiv
    2506.08507): Hierarchical Relative Policy Optimization "collaboratively integrates group-relative advantages
    and action-wise rewards". The paper's equations could not be read (no code is released); the form used here is
    the one the spec assumes, with λ = ``step_weight``:

    - ``A_i^group``: GRPO's group z-score of the outcome reward ``rollout.reward`` (``advantages.grpo`` with
      ``scale="group"``: ddof 1, eps outside the root, 0 for a group of one).
    - ``r_{i,t}``: ``rollout.token_reward``, the reward of the action token t belongs to (MasHost's per-action
      "rationality" reward), written on *every* token of that action's span by the rollout or reward code.
      The step rewards are used as they are, not normalised: each action's advantage moves only with its own
      reward (a z-score over the group would make one action's reward shift every other action's advantage), and
      their scale against the z-scored outcome is set by λ. Absent ``token_reward`` → pure GRPO.

    Args:
        step_weight: λ, weight of the action-wise reward; not reported (assumed 1.0), usually 0.1 to 1; >= 0.
        ddof, eps: of GRPO's group std (``advantages.grpo``): ddof 1 (Bessel), eps 1e-6 outside the root.

    Example: one group with rewards [1, 0] → A^group = [0.7071, −0.7071]; a step reward 0.5 on token 1 of
    completion 0 (λ = 1) → [[0.7071, 1.2071], [−0.7071, −0.7071]].

    >>> import torch
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 2, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0]), token_reward=torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    >>> [[round(a, 4) for a in row] for row in hrpo(r).tolist()]
    [[0.7071, 1.2071], [-0.7071, -0.7071]]
    """
    if not (isinstance(step_weight, (int, float)) and math.isfinite(step_weight) and step_weight >= 0):
        raise ValueError(f"hrpo: step_weight (λ) must be a finite number >= 0, got {step_weight!r}")
    adv = grpo(rollout, scale="group", ddof=ddof, eps=eps)  # [B, T]: group-relative outcome advantage
    if rollout.token_reward is None or step_weight == 0:
        return adv  # [B, T]
    step = torch.where(rollout.mask, rollout.token_reward.to(adv), torch.zeros_like(adv))  # [B, T]
    # HRPO: the action-wise reward refines each action's advantage on top of the trajectory-level one
    return adv + step_weight * step  # [B, T]; 0 at masked positions (both terms are)
