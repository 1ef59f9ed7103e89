"""BRPO: Budget Relative Policy Optimization (AnytimeReasoner), the pure math.

Optimizing Anytime Reasoning via Budget Relative Policy Optimization (Qi et al., arXiv 2505.13438), read together
with the official code (sail-sg/AnytimeReasoner, ``verl/verl/trainer/ppo/brpo.py``).

A "thinking" completion g of length ``len_g`` is cut at S token budgets ``b_j = j·L/S`` (L = the generation limit);
after each cut the model writes ``n_summary`` short summaries (answers), scored by the task. Their mean is the
budget reward ``r̄_{g,j}``. The thinking tokens between ``b_{s-1}`` and ``b_s`` form segment s; with a prior
``p_j`` over budgets the return of segment s is ``Ret_{g,s} = Σ_{j≥s} p_j r̄_{g,j}`` (a token influences every
later budget's answer, never an earlier one), and the advantage is ``A_{g,s} = Ret_{g,s} − b_{g,s}`` with the BRPO
baseline ``b = (s·V1 + (S−s)·V2)/S`` (s counted from 0, as in the code). Summary tokens get their own advantage
``r_summary − mean of the summaries at the same (trajectory, budget)`` (the decoupled summary policy).

The rollout side (cutting, sampling the summaries) is the ``brpo_budgets`` strategy in ``grpolab.rollout.budgets``;
it writes the extras the ``brpo`` advantage below reads:

- ``brpo_budget_reward`` float [B, S]: ``r̄_{g,j}`` of the row's thinking trajectory (a summary row repeats its
  source's);
- ``brpo_cuts`` long [B, S]: ``c_{g,j} = min(b_j, len_g)``, the end of segment j (a summary row repeats its
  source's);
- ``brpo_budget`` long [B]: -1 for a thinking row, the budget index j (0-based) of a summary row;
- ``brpo_source`` long [B]: the thinking row a summary was written for (a thinking row names itself); any ids
  that are equal for the same trajectory (they are compared, not used as positions);
- ``prefix_len`` long [B]: tokens of a summary row that were given (thinking prefix and marker), 0 for thinking.

Convention choices (each with its source):

- Budgets are ``b_j = ⌊j·L/S⌋``: the code's ``L // S * j`` whenever S divides L (the paper's 8000 and 16000 with
  S = 1, 2, 4, 8). Otherwise the code generates only ``L // S · S`` tokens; here the last budget is always the
  generation limit L, so no sampled token lies beyond it. The "linear" prior is ``p_j ∝ j`` (the code's ∝ b_j,
  which is ∝ j with its budgets), also when S does not divide L.
- V1 (the code's ``last_cot_return``) is the discounted mean of the trajectory's own earlier budget rewards with
  weights ``2^j`` (``discount_factor = 2.0``: later, better-informed budgets weigh more), times ``Σ_{j≥s} p_j``;
  V1 = 0 for the first segment. V2 is the mean of ``Ret_{·,s}`` over the G thinking trajectories of the prompt.
- A thinking completion that *ended* (EOS) within budget j already holds its answer: its budget reward there is
  its own reward and no summary is sampled (the paper's thinking ends at ``</think>`` and always gets a summary;
  in a task with no separate answer phase the end of the completion is the answer).
- A prompt group with one thinking trajectory gets V2 = its own return (library convention: a lone completion
  has advantage 0 under a mean baseline); the code sets V2 = 0 when the configured G is 1.
- Summary baseline: the mean of the summaries at the same (trajectory, budget) when there are at least two; with
  a single one (``n_summary = 1``) the mean budget reward of the prompt's trajectories at that budget, as the
  code does for ``n_summary = 1``.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.stats import group_count, group_mean, group_sum
from grpolab.core.types import Rollout

PRIORS = ("uniform", "linear", "base")
VARIANCE_REDUCTIONS = ("brpo", "v1only", "v2only", "none")
SUMMARY_METHODS = ("brpo", "grpo")


# ---------------------------------------------------------------------------------------------- budgets
def budget_positions(max_len: int, num_budgets: int) -> list[int]:
    """The S thinking budgets ``b_j = ⌊j·L/S⌋``, j = 1..S (arXiv 2505.13438 §3). Equal to the code's ``L // S * j``
    when S divides L; otherwise the last budget is still L (the code would generate only ``L // S · S`` tokens).

    Args:
        max_len: L, the generation limit of the thinking completions (the run's max_new_tokens).
        num_budgets: S, paper default 4 (2k/4k/6k/8k of L = 8000); usually 1 to 8; at most L so b_1 >= 1.

    >>> budget_positions(8, 4), budget_positions(4, 4), budget_positions(5, 2)
    ([2, 4, 6, 8], [1, 2, 3, 4], [2, 5])
    """
    if isinstance(num_budgets, bool) or not isinstance(num_budgets, int) or num_budgets < 1:
        raise ValueError(f"budget_positions: num_budgets must be an int >= 1, got {num_budgets!r}; usually 1 to 8")
    if not isinstance(max_len, int) or max_len < num_budgets:
        raise ValueError(
            f"budget_positions: max_len ({max_len}) must be an int >= num_budgets ({num_budgets}) so every budget "
            "holds at least one token; lower num_budgets or raise max_new_tokens"
        )
    return [j * max_len // num_budgets for j in range(1, num_budgets + 1)]


def budget_prior(num_budgets: int, *, prior: str = "linear") -> Tensor:
    """Prior probabilities ``p_j`` of the S budgets, float [S] summing to 1 (arXiv 2505.13438 §3, Fig. 1).

    Args:
        num_budgets: S.
        prior: ``"uniform"`` (p_j = 1/S), ``"linear"`` (p_j ∝ b_j ∝ j; the paper's AR-linear run) or ``"base"``
            (all mass on the last budget: the standard fixed-budget objective). All three are the paper's main
            results; default ``"linear"``.

    >>> [round(p, 4) for p in budget_prior(4, prior="linear").tolist()], budget_prior(2, prior="base").tolist()
    ([0.1, 0.2, 0.3, 0.4], [0.0, 1.0])
    """
    if prior not in PRIORS:
        raise ValueError(f"budget_prior: prior must be one of {list(PRIORS)}, got {prior!r}")
    if isinstance(num_budgets, bool) or not isinstance(num_budgets, int) or num_budgets < 1:
        raise ValueError(f"budget_prior: num_budgets must be an int >= 1, got {num_budgets!r}")
    j = torch.arange(1, num_budgets + 1, dtype=torch.get_default_dtype())  # [S]
    if prior == "uniform":
        p = torch.ones_like(j)  # [S]
    elif prior == "linear":
        p = j  # [S]: b_j = j·L/S, so p_j ∝ b_j ∝ j
    else:
        p = torch.zeros_like(j)  # [S]
        p[-1] = 1.0
    return p / p.sum()  # [S]


def budget_cuts(lengths: Tensor, ended: Tensor, budgets: list[int]) -> tuple[Tensor, Tensor]:
    """Where each thinking completion is cut at each budget, and which (completion, budget) needs summaries.

    ``cuts[g, j] = min(b_j, len_g)`` (the code's ``partial_lens``: a completion shorter than a budget is taken
    whole). ``needs[g, j]`` is False only where completion g *ended* (EOS or stop string, not truncated) within
    budget j: its answer is already written, so its own reward is the budget reward (see the module docstring).
    A truncated completion needs summaries at every budget, the last one included (its thinking was cut by L).

    Args:
        lengths: long [N] completion lengths (>= 1).
        ended: bool [N], True where the completion ended by itself (``~truncated``).
        budgets: the S budgets ``b_j`` (``budget_positions``), increasing.

    Returns:
        ``(cuts long [N, S], needs bool [N, S])``.

    >>> c, n = budget_cuts(torch.tensor([3, 4]), torch.tensor([True, False]), [2, 4])
    >>> c.tolist(), n.tolist()
    ([[2, 3], [2, 4]], [[True, False], [True, True]])
    """
    if lengths.dim() != 1 or ended.shape != lengths.shape or ended.dtype != torch.bool:
        raise ValueError(
            f"budget_cuts: lengths must be long [N] and ended bool [N], got {list(lengths.shape)}, "
            f"{ended.dtype} {list(ended.shape)}"
        )
    if not budgets or any(b2 <= b1 for b1, b2 in itertools.pairwise(budgets)) or budgets[0] < 1:
        raise ValueError(f"budget_cuts: budgets must be increasing positive token counts, got {budgets}")
    b = torch.tensor(budgets, dtype=torch.long, device=lengths.device)  # [S]
    cuts = torch.minimum(b[None, :], lengths.long()[:, None])  # [N, S]
    needs = ~(ended[:, None] & (lengths.long()[:, None] <= b[None, :]))  # [N, S]
    return cuts, needs


def budget_rewards(
    thinking_reward: Tensor,
    needs: Tensor,
    summary_reward: Tensor,
    summary_source: Tensor,
    summary_budget: Tensor,
    summary_valid: Tensor | None = None,
) -> Tensor:
    """Budget rewards ``r̄_{g,j}``, float [N, S]: the mean reward of the summaries written after cut (g, j), or the
    completion's own reward where it ended within the budget (``needs`` False).

    Args:
        thinking_reward: float [N], rewards of the thinking completions.
        needs: bool [N, S] from ``budget_cuts``.
        summary_reward: float [M], rewards of the summaries.
        summary_source: long [M], the thinking row (0..N-1) of each summary.
        summary_budget: long [M], the budget index (0..S-1) of each summary.
        summary_valid: bool [M] or None: summaries whose reward failed are left out of the mean; a cell with no
            valid summary gets 0 (no evidence of a right answer).

    >>> budget_rewards(torch.tensor([1.0, 0.0]), torch.tensor([[True, False], [True, True]]),
    ...                torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1, 1, 1]),
    ...                torch.tensor([0, 0, 0, 0, 1, 1])).tolist()
    [[0.5, 1.0], [0.0, 1.0]]
    """
    N, S = needs.shape
    if thinking_reward.shape != (N,):
        raise ValueError(f"budget_rewards: thinking_reward must be [N] = [{N}], got {list(thinking_reward.shape)}")
    M = summary_reward.shape[0]
    if summary_source.shape != (M,) or summary_budget.shape != (M,):
        raise ValueError("budget_rewards: summary_reward, summary_source and summary_budget must all be [M]")
    valid = torch.ones(M, dtype=torch.bool, device=summary_reward.device) if summary_valid is None else summary_valid
    cell = summary_source.long() * S + summary_budget.long()  # [M] flat (g, j) index
    w = valid.to(summary_reward.dtype)  # [M]
    total = group_sum(summary_reward * w, cell, N * S).view(N, S)  # [N, S]
    count = group_sum(w, cell, N * S).view(N, S)  # [N, S]
    mean = total / count.clamp(min=1)  # [N, S]: 0 where no valid summary
    own = thinking_reward[:, None].to(mean).expand(N, S)  # [N, S]
    return torch.where(needs, mean, own)  # [N, S]


# ---------------------------------------------------------------------------------------------- advantages
def segment_returns(budget_reward: Tensor, prior: Tensor) -> Tensor:
    """Thinking-segment returns ``Ret_{g,s} = Σ_{j≥s} p_j r̄_{g,j}``, float [B, S] (arXiv 2505.13438, §3.2).

    >>> segment_returns(torch.tensor([[0.0, 1.0]]), torch.tensor([0.5, 0.5])).tolist()
    [[0.5, 0.5]]
    """
    if budget_reward.dim() != 2 or prior.shape != (budget_reward.shape[1],):
        raise ValueError(
            f"segment_returns: budget_reward must be [B, S] and prior [S], got {list(budget_reward.shape)}, "
            f"{list(prior.shape)}"
        )
    weighted = budget_reward * prior.to(budget_reward)[None, :]  # [B, S]
    return weighted.flip(-1).cumsum(-1).flip(-1)  # [B, S]: suffix sums over j >= s


def brpo_baseline(
    budget_reward: Tensor,
    group: Tensor,
    num_groups: int,
    prior: Tensor,
    *,
    variance_reduction: str = "brpo",
    discount: float = 2.0,
) -> Tensor:
    """The BRPO baseline ``b_{g,s} = (s·V1 + (S−s)·V2)/S`` of every thinking segment, float [B, S].

    arXiv 2505.13438 §3.3 (Budget Relative Policy Optimization) and the code's ``compute_cot_advantage``:

    - ``V1_{g,s} = (Σ_{j<s} w_j r̄_{g,j} / Σ_{j<s} w_j) · Σ_{j≥s} p_j`` with ``w_j = discount^j`` (0 at s = 0):
      what the trajectory has already achieved, carried forward;
    - ``V2_{g,s} = mean over the prompt's trajectories g' of Ret_{g',s}`` (a GRPO-style group mean).

    s counts the budgets before the segment (0-based), so the first segment uses V2 alone and later segments lean
    on the trajectory's own progress.

    Args:
        budget_reward: float [B, S], ``r̄`` of B thinking trajectories.
        group: long [B], prompt ids 0..num_groups-1 (a group may be missing or of size 1: V2 = its own return).
        num_groups: P.
        prior: float [S], ``p_j`` (``budget_prior``).
        variance_reduction: ``"brpo"`` (paper), ``"v1only"``, ``"v2only"`` (GRPO baseline; the paper's ablations)
            or ``"none"`` (b = 0); the code's ``VARIANCE_REDUCTION`` options.
        discount: the ``2^j`` weighting base of V1, code default 2.0; must be > 0 (1.0 = plain mean).

    Hand check (S = 2, p = [0.5, 0.5], one group): r̄ = [[0, 1], [1, 1]] → Ret = [[0.5, 0.5], [1, 0.5]],
    V2 = [0.75, 0.5], V1 at s = 1 = [0·0.5, 1·0.5] = [0, 0.5] → b = [[0.75, 0.25], [0.75, 0.5]].

    >>> brpo_baseline(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 0]), 1,
    ...               torch.tensor([0.5, 0.5])).tolist()
    [[0.75, 0.25], [0.75, 0.5]]
    """
    if variance_reduction not in VARIANCE_REDUCTIONS:
        raise ValueError(
            f"brpo: variance_reduction must be one of {list(VARIANCE_REDUCTIONS)}, got {variance_reduction!r}"
        )
    if not discount > 0:
        raise ValueError(f"brpo: discount must be > 0 (V1 weights discount^j), got {discount}; the code uses 2.0")
    B, S = budget_reward.shape
    if group.shape != (B,):
        raise ValueError(f"brpo_baseline: group must be [B] = [{B}], got {list(group.shape)}")
    ret = segment_returns(budget_reward, prior)  # [B, S]
    # V2: the mean return of the prompt's trajectories at the same segment
    v2 = torch.stack([group_mean(ret[:, s], group, num_groups)[group] for s in range(S)], dim=-1)  # [B, S]
    # V1: the 2^j-discounted mean of the earlier budget rewards, scaled by the prior mass still ahead
    w = discount ** torch.arange(S, dtype=budget_reward.dtype, device=budget_reward.device)  # [S]
    seen = torch.cumsum(budget_reward * w, dim=-1) - budget_reward * w  # [B, S]: Σ_{j<s} w_j r̄_j
    seen_w = torch.cumsum(w, dim=-1) - w  # [S]: Σ_{j<s} w_j (0 at s = 0)
    prev = torch.where(seen_w > 0, seen / seen_w.clamp(min=1e-30), torch.zeros_like(seen))  # [B, S]
    tail = prior.to(budget_reward).flip(-1).cumsum(-1).flip(-1)  # [S]: Σ_{j≥s} p_j
    v1 = prev * tail  # [B, S]
    if variance_reduction == "v1only":
        return v1
    if variance_reduction == "v2only":
        return v2
    if variance_reduction == "none":
        return torch.zeros_like(ret)
    s = torch.arange(S, dtype=budget_reward.dtype, device=budget_reward.device)  # [S]
    return (s * v1 + (S - s) * v2) / S  # [B, S]: BRPO mixes progress (V1) and the group mean (V2)


def segment_token_advantages(segment_adv: Tensor, cuts: Tensor, mask: Tensor) -> Tensor:
    """Spread segment advantages over tokens: token t of a thinking row belongs to the first segment s whose end
    ``cuts[s]`` lies beyond t (segments of a completion that ended early are empty). Float [B, T], 0 where masked.

    Args:
        segment_adv: float [B, S].
        cuts: long [B, S], non-decreasing segment ends (``budget_cuts``).
        mask: bool [B, T].

    >>> segment_token_advantages(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1, 3, 3]]),
    ...                          torch.tensor([[True, True, True, False]])).tolist()
    [[1.0, 2.0, 2.0, 0.0]]
    """
    B, S = segment_adv.shape
    if cuts.shape != (B, S) or mask.dim() != 2 or mask.shape[0] != B:
        raise ValueError(
            f"segment_token_advantages: segment_adv [B, S], cuts [B, S] and mask [B, T] must agree, got "
            f"{list(segment_adv.shape)}, {list(cuts.shape)}, {list(mask.shape)}"
        )
    t = torch.arange(mask.shape[1], device=mask.device)  # [T]
    seg = (cuts[:, None, :] <= t[None, :, None]).sum(-1).clamp(max=S - 1)  # [B, T]: segments that ended by t
    adv = segment_adv.gather(1, seg)  # [B, T]
    return torch.where(mask, adv, torch.zeros_like(adv))  # [B, T]


def summary_baselines(
    summary_reward: Tensor, summary_key: Tensor, group_budget_mean: Tensor, *, min_count: int = 2
) -> Tensor:
    """Baseline of each summary, float [M]: the mean reward of the summaries sharing its (trajectory, budget)
    ``summary_key`` when there are at least ``min_count`` of them, else ``group_budget_mean`` (the prompt's mean
    budget reward at that budget; the code's ``n_summary = 1`` case).

    >>> b = summary_baselines(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([4, 4, 7]), torch.tensor([0.2, 0.2, 0.25]))
    >>> b.tolist()
    [0.5, 0.5, 0.25]
    """
    M = summary_reward.shape[0]
    if summary_key.shape != (M,) or group_budget_mean.shape != (M,):
        raise ValueError("summary_baselines: summary_reward, summary_key and group_budget_mean must all be [M]")
    if M == 0:
        return summary_reward.clone()
    _, cell = torch.unique(summary_key, return_inverse=True)  # [M] ids 0..K-1
    K = int(cell.max()) + 1
    mean = group_mean(summary_reward, cell, K)[cell]  # [M]
    count = group_count(cell, K)[cell]  # [M]
    return torch.where(count >= min_count, mean, group_budget_mean.to(mean))  # [M]


@ADVANTAGES.register("brpo", requires=("brpo_budget_reward", "brpo_cuts", "brpo_budget", "brpo_source", "prefix_len"))
def brpo(
    rollout: Rollout,
    *,
    prior: str = "linear",
    variance_reduction: str = "brpo",
    summary_method: str = "brpo",
    discount: float = 2.0,
) -> Tensor:
    """BRPO token advantages for thinking completions and their budget summaries, float [B, T].

    Optimizing Anytime Reasoning via Budget Relative Policy Optimization (arXiv 2505.13438), §3 and the code's
    ``compute_token_level_advantage``: thinking row g, token in segment s → ``Ret_{g,s} − b_{g,s}``
    (``segment_returns``, ``brpo_baseline``, ``segment_token_advantages``); summary row → ``r − baseline``
    (``summary_baselines``) on its sampled tokens (positions >= ``prefix_len``), 0 on the given prefix. No std
    normalisation (as the code). Reads the extras written by the ``brpo_budgets`` rollout strategy (module
    docstring).

    Args:
        prior: budget prior ``"uniform"`` / ``"linear"`` / ``"base"`` (``budget_prior``); default ``"linear"``.
        variance_reduction: ``"brpo"`` (paper) / ``"v1only"`` / ``"v2only"`` / ``"none"`` (``brpo_baseline``).
        summary_method: ``"brpo"`` (paper: every summary is trained, the decoupled summary policy) or ``"grpo"``
            (the code's GRPO recipe: only the summaries of the last budget are trained). The README pairs
            ``"grpo"`` with ``n_summary = 1``; with more summaries the code would train only the last-sampled one
            of the last budget, here all of them are trained (their order carries no meaning).
        discount: V1's weighting base, code default 2.0.

    Invariant (spec): with S = 1 and ``n_summary`` = 1 the thinking advantage is ``r − mean_G r`` (Dr. GRPO).

    Worked example (S = 2, uniform prior, one prompt, thinking rows with r̄ = [[0, 1], [1, 1]], cuts [[1, 2],
    [1, 2]]): segment advantages [[0.5 − 0.75, 0.5 − 0.25], [1 − 0.75, 0.5 − 0.5]] = [[−0.25, 0.25], [0.25, 0]],
    so the tokens get [[−0.25, 0.25], [0.25, 0.0]].
    """
    if summary_method not in SUMMARY_METHODS:
        raise ValueError(f"brpo: summary_method must be one of {list(SUMMARY_METHODS)}, got {summary_method!r}")
    ex = rollout.extras
    missing = [k for k in sorted(ADVANTAGES.requires("brpo")) if k not in ex]
    if missing:
        raise ValueError(f"brpo: rollout.extras lacks {missing}; add the 'brpo_budgets' rollout strategy to the preset")
    B, mask = rollout.batch_size, rollout.mask
    dev = mask.device
    rbar = ex["brpo_budget_reward"].to(dev, rollout.reward.dtype)  # [B, S]
    cuts = ex["brpo_cuts"].to(dev).long()  # [B, S]
    budget = ex["brpo_budget"].to(dev).long()  # [B]
    source = ex["brpo_source"].to(dev).long()  # [B]
    prefix = ex["prefix_len"].to(dev).long()  # [B]
    if rbar.dim() != 2 or rbar.shape[0] != B or cuts.shape != rbar.shape:
        raise ValueError(
            f"brpo: extras brpo_budget_reward and brpo_cuts must be [B, S] with B = {B}, got {list(rbar.shape)}, "
            f"{list(cuts.shape)}"
        )
    if budget.shape != (B,) or source.shape != (B,) or prefix.shape != (B,):
        raise ValueError(f"brpo: extras brpo_budget, brpo_source and prefix_len must be long [B] = [{B}]")
    S = rbar.shape[1]
    if bool((budget >= S).any()):
        raise ValueError(f"brpo: extras brpo_budget holds an index >= S = {S}")
    p = budget_prior(S, prior=prior).to(rbar)  # [S]
    think = budget < 0  # [B]
    summ = ~think  # [B]
    P = rollout.num_groups
    adv = torch.zeros(mask.shape, dtype=rbar.dtype, device=dev)  # [B, T]

    if bool(think.any()):
        g = rollout.group[think]  # [Bt]
        base = brpo_baseline(rbar[think], g, P, p, variance_reduction=variance_reduction, discount=discount)
        seg_adv = segment_returns(rbar[think], p) - base  # [Bt, S]: A_{g,s} = Ret − b
        adv[think] = segment_token_advantages(seg_adv, cuts[think], mask[think])  # [Bt, T]

    if bool(summ.any()):
        # the prompt's mean budget reward at each budget, over its thinking rows (n_summary = 1 baseline)
        g_all = torch.where(think, rollout.group, torch.full_like(rollout.group, P))  # [B]: summaries → spare id P
        counts = group_count(g_all, P + 1)[:P]  # [P]
        think_rbar = torch.where(think[:, None], rbar, torch.zeros_like(rbar))  # [B, S]
        sums = torch.stack([group_sum(think_rbar[:, j], g_all, P + 1)[:P] for j in range(S)], dim=-1)  # [P, S]
        table = sums / counts.clamp(min=1)[:, None].to(rbar)  # [P, S]
        r_s = rollout.reward[summ].to(rbar)  # [Bs]
        j_s = budget[summ]  # [Bs]
        key = source[summ] * S + j_s  # [Bs]: one id per (trajectory, budget)
        fallback = table[rollout.group[summ], j_s]  # [Bs]
        a_s = r_s - summary_baselines(r_s, key, fallback)  # [Bs]: decoupled summary advantage
        if summary_method == "grpo":
            a_s = torch.where(j_s == S - 1, a_s, torch.zeros_like(a_s))  # [Bs]: only the final answer is trained
        t = torch.arange(mask.shape[1], device=dev)  # [T]
        sampled = mask[summ] & (t[None, :] >= prefix[summ][:, None])  # [Bs, T]: the summary's own tokens
        adv[summ] = torch.where(sampled, a_s[:, None], torch.zeros_like(adv[summ]))  # [Bs, T]
    return torch.where(mask, adv, torch.zeros_like(adv))  # [B, T]
