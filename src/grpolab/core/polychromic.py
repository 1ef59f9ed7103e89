"""Polychromic objectives (set RL) with vine sampling: the pure math of Polychromic PPO.

Polychromic Objectives for Reinforcement Learning (Hamid, Orney, Xu, Finn, Sadigh; arXiv 2509.25424). A set of n
trajectories from the same state s is scored by ``f_poly(s, τ_1:n) = (1/n Σ_i R(τ_i)) · d(s, τ_1:n)``, the mean
reward times the set's diversity ``d ∈ [0, 1]``: a set scores high only when it is both successful and diverse.
Polychromic PPO estimates it by *vine sampling*: after the ordinary rollout, p "rollout states" s are picked along
the trajectories, N on-policy continuations are sampled from each, and M random subsets of size n are formed. A
set's advantage is ``A(s, g) = f_poly(s, g) − b(s)`` with ``b(s)`` the mean f_poly of the M sets at s; a
continuation's *marginal* advantage is the mean of ``A(s, g)`` over the sets g that contain it (so a failed but
novel continuation can be pushed up when its set-mates carry the reward). Other trajectories keep the standard
advantage (PPO with GAE in the paper).

The rollout side is the ``polychromic_vines`` strategy (:mod:`grpolab.rollout.vines`); it writes the extras the
``polychromic`` advantage below reads:

- ``poly_state`` long [B]: the vine state (0..K-1) a continuation was sampled from, -1 for an ordinary row;
- ``poly_outcome`` long [B]: an outcome id; two continuations of the same state are "the same" iff equal ids
  (-1 for ordinary rows);
- ``poly_member`` bool [B, M]: continuation i belongs to set m of its state (False for ordinary rows);
- ``prefix_len`` long [B]: tokens given rather than sampled (the prefix up to the vine state), 0 for ordinary rows.

Convention choices:

- Diversity d = (number of distinct outcomes in the set) / (set size). The strategy's outcome is the completion
  text with surrounding whitespace stripped (the whole text after the cut, since continuations of one state share
  their prefix); for the ``arith`` task that text is the answer, so "distinct texts" = "distinct answers".
- A set that lost members (a continuation whose reward failed left the batch) is scored on the members left; an
  empty set counts in no baseline. A continuation in no set gets marginal advantage 0.
- b(s) is the mean over the M sets (the paper's Monte-Carlo baseline; a learned V(s) is the alternative).
- Rewards are taken as given; the paper's are success rewards in [0, 1]. With a negative mean reward more
  diversity would lower f_poly, so a task with negative rewards should shift them to be non-negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.advantages import (
    ADVANTAGES,
    _check_ddof,
    _check_eps,
    _check_unit,
    compute_gae,
    outcome_token_rewards,
)
from grpolab.core.stats import group_count, group_sum, masked_whiten
from grpolab.core.types import Rollout

BASES = ("gae", "grpo", "dr_grpo")


# ---------------------------------------------------------------------------------------------- dense sets
def diversity(outcome: Tensor) -> Tensor:
    """Fraction of distinct outcomes in each set, float [...]: ``d = #distinct(outcome[..., :]) / n``.

    arXiv 2509.25424 §3 (d(s, τ_1:n) as the fraction of distinct trajectories/outcomes in the set).

    Args:
        outcome: long [..., n], outcome ids of the n members of each set.

    >>> diversity(torch.tensor([[3, 3], [3, 5], [1, 1]])).tolist()
    [0.5, 1.0, 0.5]
    """
    if outcome.dim() < 1 or outcome.shape[-1] < 1:
        raise ValueError(f"diversity: outcome must be [..., n] with n >= 1, got {list(outcome.shape)}")
    srt = outcome.sort(dim=-1).values  # [..., n]
    changes = (srt[..., 1:] != srt[..., :-1]).sum(-1)  # [...]: boundaries between runs of equal ids
    return (changes + 1).to(torch.get_default_dtype()) / outcome.shape[-1]  # [...]


def polychromic_objective(reward: Tensor, outcome: Tensor) -> Tensor:
    """``f_poly = mean reward × diversity`` of each set, float [...] (arXiv 2509.25424, the polychromic objective).

    Args:
        reward: float [..., n], rewards of the members.
        outcome: long [..., n], their outcome ids.

    Spec checks: two identical successes (n = 2) → d = 0.5, f = 0.5; a success and a distinct failure → 0.5 · 1.

    >>> polychromic_objective(torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([[7, 7], [7, 2]])).tolist()
    [0.5, 0.5]
    """
    if reward.shape != outcome.shape:
        raise ValueError(
            f"polychromic_objective: reward and outcome must have one shape, got {list(reward.shape)}, "
            f"{list(outcome.shape)}"
        )
    return reward.mean(-1) * diversity(outcome).to(reward)  # [...]


# ---------------------------------------------------------------------------------------------- vine sampling
def choose_vine_states(
    lengths: Tensor, group: Tensor, num_groups: int, *, num_states: int = 1, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Pick the vine (rollout) states: ``num_states`` per prompt, each a uniformly drawn trajectory of that prompt
    and a uniformly drawn cut ``c ∈ {0, ..., len − 1}`` (c = 0 is the prompt itself; the last token, usually EOS,
    is never part of a prefix). Random numbers come from ``torch.rand`` with ``generator`` (the global torch RNG
    when None), so a seeded run is reproducible.

    Args:
        lengths: long [B] completion lengths (>= 1).
        group: long [B] prompt ids 0..num_groups-1; every id present.
        num_groups: P.
        num_states: p per prompt, usually 1 to 4 (the paper's p; its value here is our choice, see the preset).
        generator: optional ``torch.Generator`` (CPU).

    Returns:
        ``(index long [P·p], cut long [P·p])``: the source row and cut of each state, prompts in order.

    >>> i, c = choose_vine_states(torch.tensor([3, 1, 2]), torch.tensor([0, 1, 0]), 2, num_states=2,
    ...                           generator=torch.Generator().manual_seed(0))
    >>> i.tolist()[2:], c.tolist()[2:], all(int(c[k]) < [3, 1, 2][int(i[k])] for k in range(4))
    ([1, 1], [0, 0], True)
    """
    if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 1:
        raise ValueError(f"choose_vine_states: num_states must be an int >= 1, got {num_states!r}; usually 1 to 4")
    B = lengths.shape[0]
    if group.shape != (B,) or bool((lengths < 1).any()):
        raise ValueError("choose_vine_states: lengths (>= 1) and group must both be [B]")
    dev = lengths.device
    count = group_count(group, num_groups).long()  # [P]
    if bool((count == 0).any()):
        raise ValueError("choose_vine_states: every prompt id 0..num_groups-1 needs at least one trajectory")
    order = torch.argsort(group, stable=True)  # [B]: rows grouped by prompt
    offset = torch.cumsum(count, 0) - count  # [P]: first position of each prompt in `order`
    g = torch.arange(num_groups, device=dev).repeat_interleave(num_states)  # [K]
    u = torch.rand(2, g.numel(), generator=generator).to(dev)  # [2, K]
    pick = offset[g] + (u[0] * count[g]).long().clamp(max=count[g] - 1)  # [K]: a uniform member of the prompt
    index = order[pick]  # [K]
    cut = (u[1] * lengths[index]).long().clamp(max=lengths[index] - 1)  # [K]: uniform in 0..len-1
    return index, cut


def sample_subsets(
    num_states: int, num_continuations: int, *, num_sets: int, set_size: int, generator: torch.Generator | None = None
) -> Tensor:
    """M random subsets of size n of the N continuations of each of K states (without replacement inside a
    set, independent across sets), as membership bool [K, N, M] (arXiv 2509.25424, vine sampling). Random numbers
    come from ``torch.rand`` with ``generator`` (the global torch RNG when None).

    Args:
        num_states: K.
        num_continuations: N, continuations per state; recalled paper value 8 (unverified).
        num_sets: M, sets per state; usually N or more (each continuation then lies in about M·n/N sets).
        set_size: n, members per set, 1 <= n <= N; recalled paper value 4 (unverified).

    >>> m = sample_subsets(2, 4, num_sets=3, set_size=2, generator=torch.Generator().manual_seed(0))
    >>> m.shape, m.sum(1).tolist()
    (torch.Size([2, 4, 3]), [[2, 2, 2], [2, 2, 2]])
    """
    for name, v in (("num_states", num_states), ("num_continuations", num_continuations), ("num_sets", num_sets)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "num_states" else 1):
            raise ValueError(f"sample_subsets: {name} must be a positive int, got {v!r}")
    if isinstance(set_size, bool) or not isinstance(set_size, int) or not 1 <= set_size <= num_continuations:
        raise ValueError(
            f"sample_subsets: set_size must be an int in 1..num_continuations ({num_continuations}), got {set_size!r}"
        )
    keys = torch.rand(num_states, num_sets, num_continuations, generator=generator)  # [K, M, N]
    chosen = keys.argsort(dim=-1)[..., :set_size]  # [K, M, n]: a uniform n-subset per set
    member = torch.zeros(num_states, num_sets, num_continuations, dtype=torch.bool)  # [K, M, N]
    member.scatter_(-1, chosen, True)
    return member.transpose(1, 2).contiguous()  # [K, N, M]


def outcome_ids(texts: list[str], state: Tensor) -> Tensor:
    """Outcome ids, long [B]: rows with the same state and the same text (surrounding whitespace stripped) share an
    id; rows with state < 0 get -1. Ids are 0..U-1 in order of first appearance.

    >>> outcome_ids(["12", " 12", "13", "12", "x"], torch.tensor([0, 0, 0, 1, -1])).tolist()
    [0, 0, 1, 2, -1]
    """
    if len(texts) != state.shape[0]:
        raise ValueError(f"outcome_ids: {len(texts)} texts but state has {state.shape[0]} rows")
    seen: dict[tuple[int, str], int] = {}
    out = []
    for text, s in zip(texts, state.tolist(), strict=True):
        out.append(-1 if s < 0 else seen.setdefault((s, text.strip()), len(seen)))
    return torch.tensor(out, dtype=torch.long, device=state.device)  # [B]


# ---------------------------------------------------------------------------------------------- set advantages
def set_scores(
    reward: Tensor, state: Tensor, outcome: Tensor, member: Tensor, num_states: int
) -> tuple[Tensor, Tensor]:
    """``f_poly`` and size of every set of every vine state: ``(score float [K, M], size long [K, M])``.

    Set (k, m) holds the rows i with ``state[i] = k`` and ``member[i, m]``; its score is the mean reward of its
    members times the fraction of distinct outcomes among them (``polychromic_objective``, vectorised over sets of
    any size). Empty sets score 0 with size 0. Rows with state < 0 belong to no set.

    Args:
        reward: float [B]; state: long [B]; outcome: long [B]; member: bool [B, M]; num_states: K.

    >>> f, n = set_scores(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0, 0, 0]), torch.tensor([5, 5, 6]),
    ...                   torch.tensor([[True, True], [True, False], [False, True]]), 1)
    >>> f.tolist(), n.tolist()
    ([[0.5, 0.5]], [[2, 2]])
    """
    B = reward.shape[0]
    if state.shape != (B,) or outcome.shape != (B,) or member.dim() != 2 or member.shape[0] != B:
        raise ValueError("set_scores: reward, state, outcome must be [B] and member [B, M]")
    M = member.shape[1]
    member = member & (state >= 0)[:, None]  # [B, M]: ordinary rows are in no set
    rows, sets = member.nonzero(as_tuple=True)  # [E], [E]: one entry per (row, set) membership
    cell = state[rows].long() * M + sets  # [E]: flat (state, set) index
    size = group_count(cell, num_states * M).long()  # [K·M]
    mean = group_sum(reward[rows], cell, num_states * M) / size.clamp(min=1).to(reward)  # [K·M]
    width = int(outcome.max().item()) + 2 if B else 1  # outcome ids (>= -1) shifted by 1 fit in [0, width)
    pair = torch.unique(cell * width + (outcome[rows].long() + 1))  # [U]: distinct (set, outcome) pairs
    distinct = group_count(pair // width, num_states * M).to(reward)  # [K·M]
    d = distinct / size.clamp(min=1).to(reward)  # [K·M]
    score = torch.where(size > 0, mean * d, torch.zeros_like(mean))  # [K·M]: f_poly = mean reward × diversity
    return score.view(num_states, M), size.view(num_states, M)


def set_advantages(score: Tensor, size: Tensor) -> Tensor:
    """``A(s, g) = f_poly(s, g) − b(s)``, float [K, M], with ``b(s)`` the mean score of the non-empty sets at s
    (arXiv 2509.25424, Polychromic PPO's set advantage); 0 for empty sets.

    >>> set_advantages(torch.tensor([[0.5, 1.0, 0.0]]), torch.tensor([[2, 2, 0]])).tolist()
    [[-0.25, 0.25, 0.0]]
    """
    if score.shape != size.shape or score.dim() != 2:
        raise ValueError(
            f"set_advantages: score and size must both be [K, M], got {list(score.shape)}, {list(size.shape)}"
        )
    present = size > 0  # [K, M]
    n = present.sum(-1, keepdim=True).clamp(min=1).to(score)  # [K, 1]
    base = torch.where(present, score, torch.zeros_like(score)).sum(-1, keepdim=True) / n  # [K, 1]: b(s)
    return torch.where(present, score - base, torch.zeros_like(score))  # [K, M]


def marginal_advantages(set_adv: Tensor, state: Tensor, member: Tensor) -> Tensor:
    """Marginal advantage of each continuation, float [B]: the mean of ``A(s, g)`` over the sets g of its state
    that contain it (arXiv 2509.25424; the "marginal advantage" of a trajectory). 0 for rows in no set (ordinary
    rows, state < 0).

    >>> marginal_advantages(torch.tensor([[-0.25, 0.25]]), torch.tensor([0, 0, -1]),
    ...                     torch.tensor([[True, True], [False, True], [True, True]])).tolist()
    [0.0, 0.25, 0.0]
    """
    B = state.shape[0]
    if member.dim() != 2 or member.shape != (B, set_adv.shape[1]):
        raise ValueError(f"marginal_advantages: member must be [B, M] = [{B}, {set_adv.shape[1]}]")
    vine = state >= 0  # [B]
    member = member & vine[:, None]  # [B, M]
    rows_adv = set_adv[state.clamp(min=0)]  # [B, M]: the set advantages of each row's state
    total = torch.where(member, rows_adv, torch.zeros_like(rows_adv)).sum(-1)  # [B]
    return total / member.sum(-1).clamp(min=1).to(total)  # [B]


@ADVANTAGES.register("polychromic", requires=("poly_state", "poly_outcome", "poly_member", "prefix_len"))
def polychromic(
    rollout: Rollout,
    *,
    base: str = "gae",
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten: bool = True,
    ddof: int = 1,
    eps: float = 1e-8,
) -> Tensor:
    """Polychromic PPO advantage, float [B, T]: set-level marginal advantages on the sampled tokens of vine
    continuations, the standard advantage on every other completion.

    Polychromic Objectives for Reinforcement Learning (arXiv 2509.25424), Polychromic PPO: ``set_scores`` →
    ``set_advantages`` → ``marginal_advantages`` for rows with ``poly_state >= 0`` (placed on positions >=
    ``prefix_len``, 0 on the given prefix); ordinary rows get ``base``. Then, as PPO does, the advantages are
    whitened over all trained tokens (valid and not given) of the batch.

    Args:
        base: advantage of the ordinary rows. ``"gae"`` (paper: PPO with a critic; needs ``rollout.value``, i.e. a
            preset with ``value_loss``), or, without a critic, ``"grpo"`` / ``"dr_grpo"`` group advantages computed
            over the ordinary rows only (vine rows would bias the group mean).
        gamma, lam: GAE discount and λ, defaults 1.0 and 0.95 (PPO for language models); in [0, 1]. The trainer
            reads them for the value targets too.
        whiten: whiten the combined advantages over the trained tokens (``stats.masked_whiten``), default True
            (PPO's advantage normalisation).
        ddof, eps: of the whitening (unbiased variance, eps inside the root), defaults 1 and 1e-8.

    Worked example (one state, continuations with rewards [1, 1, 0], outcomes [a, a, b], sets {0, 1} and {0, 2}):
    f = [1·0.5, 0.5·1] = [0.5, 0.5] → A = [0, 0] → marginal [0, 0, 0]; the identical pair does not beat the
    diverse pair of lower mean reward.
    """
    if base not in BASES:
        raise ValueError(f"polychromic: base must be one of {list(BASES)}, got {base!r}")
    _check_unit("polychromic", "gamma", gamma)
    _check_unit("polychromic", "lam", lam)
    _check_ddof("polychromic", ddof)
    _check_eps("polychromic", eps)
    ex = rollout.extras
    missing = [k for k in ("poly_state", "poly_outcome", "poly_member", "prefix_len") if k not in ex]
    if missing:
        raise ValueError(
            f"polychromic: rollout.extras lacks {missing}; add the 'polychromic_vines' rollout strategy to the preset"
        )
    B, mask = rollout.batch_size, rollout.mask
    dev = mask.device
    state = ex["poly_state"].to(dev).long()  # [B]
    outcome = ex["poly_outcome"].to(dev).long()  # [B]
    member = ex["poly_member"].to(dev).bool()  # [B, M]
    prefix = ex["prefix_len"].to(dev).long()  # [B]
    if (
        state.shape != (B,)
        or outcome.shape != (B,)
        or prefix.shape != (B,)
        or member.dim() != 2
        or member.shape[0] != B
    ):
        raise ValueError(
            f"polychromic: extras poly_state, poly_outcome, prefix_len must be [B] = [{B}], poly_member [B, M]"
        )
    vine = state >= 0  # [B]
    reward = rollout.reward  # [B]
    adv = torch.zeros(mask.shape, dtype=reward.dtype, device=dev)  # [B, T]

    main = ~vine  # [B]
    if bool(main.any()):
        if base == "gae":
            if rollout.value is None:
                raise ValueError(
                    "polychromic: base='gae' needs critic values (rollout.value); give the preset a value_loss, "
                    "or use base='grpo' without a critic"
                )
            # standard PPO elsewhere: unwhitened GAE here, the whole batch is whitened below
            tok = outcome_token_rewards(rollout)  # [B, T]
            gae_adv, _ = compute_gae(tok, rollout.value, mask, gamma=gamma, lam=lam)  # [B, T]
            adv = torch.where(main[:, None], gae_adv.to(adv), adv)  # [B, T]
        else:
            sub = rollout.select(main)  # ordinary rows only, groups renumbered
            adv[main] = ADVANTAGES[base](sub).to(adv)  # [Bm, T]

    if bool(vine.any()):
        K = int(state.max().item()) + 1
        score, size = set_scores(reward, state, outcome, member, K)  # [K, M], [K, M]
        a = marginal_advantages(set_advantages(score, size), state, member)  # [B]
        t = torch.arange(mask.shape[1], device=dev)  # [T]
        own = vine[:, None] & (t[None, :] >= prefix[:, None])  # [B, T]: the continuation's sampled tokens
        adv = torch.where(own, a[:, None].to(adv), torch.where(vine[:, None], torch.zeros_like(adv), adv))  # [B, T]

    t = torch.arange(mask.shape[1], device=dev)  # [T]
    trained = mask & (t[None, :] >= prefix[:, None])  # [B, T]: what mask_prefix keeps
    if whiten:
        adv = masked_whiten(adv, trained, ddof=ddof, eps=eps)  # [B, T]: PPO advantage normalisation
    return torch.where(trained, adv, torch.zeros_like(adv))  # [B, T]
