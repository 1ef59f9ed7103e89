"""DaGRPO: distinctiveness masking of sample pairs in the GRPO advantage, and which groups get expert anchors.

DaGRPO: Rectifying Gradient Conflict in Reasoning via Distinctiveness-Aware Group Relative Policy Optimization
(Xie, Wang, Wang, Chen, Lin; arXiv 2512.06337). Only the abstract and summaries were available (no code, no full
text), so the two mechanisms are implemented as *interpretations* (spec part A §6, "label this as unverified"):

1. **Sequence-level gradient rectification** ("fine-grained scoring to dynamically mask sample pairs with low
   distinctiveness"). The GRPO advantage decomposes into pairs of the group,
   ``A_i = (r_i − mean_g r)/(std_g + ε) = Σ_j (r_i − r_j) / (n_g·(std_g + ε))``; DaGRPO's masking drops the
   pairs (i, j) whose completions are not distinct enough: ``A_i = Σ_j m_ij (r_i − r_j) / (n_g·(std_g + ε))``
   with ``m_ij = 1[d_ij ≥ τ_d]``. The paper scores responses with an LLM, which is not available here; the
   default distinctiveness ``d_ij`` is model-free: the token edit (Levenshtein) distance between the two
   completions divided by the longer length (0 = identical, 1 = nothing in common). Near-duplicate completions
   with different rewards are exactly the "homogeneous samples" whose opposite updates on shared tokens the
   paper calls destructive gradient conflicts. The alternative ``distance="score"`` takes a per-completion
   score column s (e.g. an external judge's score) and uses ``d_ij = |s_i − s_j|``, the form the spec suggests.
   With every pair kept (τ_d = 0) the estimator is GRPO's advantage exactly.
2. **Off-policy data augmentation** ("high-quality anchors to recover training signals for challenging tasks").
   For groups where every completion scored 0, one expert completion built from the task's reference answer is
   appended (rollout strategy ``expert_anchors``, :mod:`grpolab.rollout.anchors`); :func:`hard_groups` is the
   pure test of which groups get one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.checks import check_choice, check_number
from grpolab.core.stats import group_count, group_max, group_std
from grpolab.core.types import Rollout

DISTANCES = ("edit", "score")


# ---------------------------------------------------------------------------------------------------- math
def compact_tokens(token_ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The valid tokens of each row moved to the left, in order: (ids [B, T], lengths long [B]).

    Positions past a row's length hold the row's other ids (ignore them).

    >>> ids, n = compact_tokens(torch.tensor([[5, 0, 6, 7]]), torch.tensor([[True, False, True, False]]))
    >>> ids[0, : n[0]].tolist()
    [5, 6]
    """
    order = torch.argsort((~mask).long(), dim=1, stable=True)  # [B, T]: valid positions first, in order
    return token_ids.gather(1, order), mask.sum(dim=-1)  # [B, T], [B]


def edit_distance(a: Tensor, a_len: Tensor, b: Tensor, b_len: Tensor) -> Tensor:
    """Levenshtein distance (insert, delete, substitute, each cost 1) between ``a[m, :a_len[m]]`` and
    ``b[m, :b_len[m]]``: long [M].

    Row-by-row dynamic programme, vectorised over the M pairs and over b's positions: with
    ``E_j = min(D[i−1][j] + 1, D[i−1][j−1] + [a_i ≠ b_j])`` the insertion chain ``D[i][j] = min(E_j, D[i][j−1] + 1)``
    is ``j + cummin_k≤j (E_k − k)``, so each of the max(a_len) rows is a handful of tensor ops.

    Args:
        a: long [M, Ta]; a_len: long [M] (0 <= a_len <= Ta); b: long [M, Tb]; b_len: long [M].

    >>> k, s = torch.tensor([[1, 2, 3, 3, 4, 5, 0]]), torch.tensor([[6, 2, 3, 3, 2, 5, 7]])  # kitten, sittin g
    >>> edit_distance(k, torch.tensor([6]), s, torch.tensor([7])).tolist()
    [3]
    """
    M, Tb = b.shape
    device = b.device
    j = torch.arange(Tb + 1, device=device)[None, :]  # [1, Tb + 1]
    prev = j.expand(M, Tb + 1).clone()  # [M, Tb + 1]: D[0][j] = j
    rows = int(a_len.max().item()) if M else 0
    for i in range(1, rows + 1):
        cost = (a[:, i - 1, None] != b).long()  # [M, Tb]: substitution cost of a_i against every b_j
        e = torch.empty_like(prev)  # [M, Tb + 1]
        e[:, 0] = i
        e[:, 1:] = torch.minimum(prev[:, 1:] + 1, prev[:, :-1] + cost)  # [M, Tb]: deletion or substitution
        cur = torch.cummin(e - j, dim=1).values + j  # [M, Tb + 1]: closes the insertion chain along j
        prev = torch.where((i <= a_len)[:, None], cur, prev)  # [M, Tb + 1]: finished rows keep their last row
    return prev.gather(1, b_len.long()[:, None]).squeeze(1)  # [M]


def group_pairs(group: Tensor) -> tuple[Tensor, Tensor]:
    """All unordered pairs (i < j) of completions in the same group: (i long [K], j long [K]).

    >>> [x.tolist() for x in group_pairs(torch.tensor([0, 1, 0, 0]))]
    [[0, 0, 2], [2, 3, 3]]
    """
    B = group.shape[0]
    same = (group[:, None] == group[None, :]) & torch.ones(B, B, dtype=torch.bool, device=group.device).triu(1)
    i, j = same.nonzero(as_tuple=True)  # [K], [K]
    return i, j


def pairwise_advantage(
    reward: Tensor,
    group: Tensor,
    pair_i: Tensor,
    pair_j: Tensor,
    pair_keep: Tensor,
    *,
    ddof: int = 1,
    eps: float = 1e-6,
) -> Tensor:
    """GRPO's advantage as a sum over the kept pairs of the group: float [B].

    ``A_i = Σ_{j ≠ i} m_ij (r_i − r_j) / (n_g·(std_g + eps))`` (DaGRPO's pairwise view of GRPO, arXiv 2512.06337;
    std over the whole group with ``ddof``, eps outside the root as ``ADVANTAGES["grpo"]``). Each unordered pair
    adds ``r_i − r_j`` to i and ``r_j − r_i`` to j. With every pair kept, ``Σ_j (r_i − r_j) = n_g (r_i − mean_g)``,
    so this is GRPO's ``(r_i − mean_g)/(std_g + eps)``; a group of one has no pair and gets 0.

    Args:
        reward: float [B]; group: long [B]; pair_i, pair_j: long [K] (i < j, same group); pair_keep: bool [K].
        ddof: of the group std, 1 (Bessel, default) or 0; eps: default 1e-6 (as grpo).

    Hand check: r = [1, 0, 0, 0] (std 0.5, n 4): all pairs → [1.5, −0.5, −0.5, −0.5]; without the pair (0, 1):
    A_0 = (1 + 1)/(4·0.5) = 1, A_1 = 0, A_2 = A_3 = −1/2 = −0.5.

    >>> i, j = group_pairs(torch.zeros(4, dtype=torch.long))
    >>> keep = ~((i == 0) & (j == 1))
    >>> [round(a, 4) for a in pairwise_advantage(torch.tensor([1.0, 0, 0, 0]), torch.zeros(4, dtype=torch.long),
    ...                                          i, j, keep).tolist()]
    [1.0, 0.0, -0.5, -0.5]
    """
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"pairwise_advantage: ddof must be 0 or 1, got {ddof!r}")
    if not eps > 0:
        raise ValueError(f"pairwise_advantage: eps must be > 0 (usually 1e-6), got {eps}")
    P = int(group.max().item()) + 1
    diff = torch.where(pair_keep, reward[pair_i] - reward[pair_j], torch.zeros_like(reward[pair_i]))  # [K]
    num = torch.zeros_like(reward).index_add(0, pair_i, diff).index_add(0, pair_j, -diff)  # [B]
    n = group_count(group, P).to(reward)[group]  # [B]
    std = group_std(reward, group, P, ddof=ddof)[group]  # [B]
    return num / (n * (std + eps))  # [B]: eps outside the root, as grpo


def hard_groups(signal: Tensor, group: Tensor, *, threshold: float = 0.0) -> Tensor:
    """Groups where every completion's ``signal`` is <= ``threshold`` ("every completion scored 0"): bool [P].

    DaGRPO's off-policy augmentation targets hard queries whose on-policy samples hold no positive (arXiv
    2512.06337, abstract); the rollout strategy ``expert_anchors`` appends one expert completion to each.

    >>> hard_groups(torch.tensor([0.0, 0.0, 1.0, 0.0]), torch.tensor([0, 0, 1, 1])).tolist()
    [True, False]
    """
    P = int(group.max().item()) + 1
    top = group_max(signal, group, P)  # [P]: best completion of each group
    return top <= threshold  # [P]


def first_member(group: Tensor, num_groups: int) -> Tensor:
    """Index of the first completion of each group, long [P].

    >>> first_member(torch.tensor([1, 0, 1, 0]), 2).tolist()
    [1, 0]
    """
    B = group.shape[0]
    idx = torch.arange(B, device=group.device)  # [B]
    first = torch.full((num_groups,), B, dtype=torch.long, device=group.device)  # [P]
    return first.scatter_reduce(0, group, idx, reduce="amin")  # [P]


# ---------------------------------------------------------------------------------------------------- advantage
@ADVANTAGES.register("dagrpo", requires=("token_ids",))
def dagrpo(
    rollout: Rollout,
    *,
    threshold: float = 0.1,
    distance: str = "edit",
    key: str = "token_ids",
    score_key: str = "distinct_score",
    ddof: int = 1,
    eps: float = 1e-6,
) -> Tensor:
    """DaGRPO advantage: GRPO's pairwise decomposition with low-distinctiveness pairs masked, float [B, T].

    DaGRPO: Rectifying Gradient Conflict in Reasoning via Distinctiveness-Aware Group Relative Policy Optimization
    (arXiv 2512.06337), sequence-level gradient rectification, as interpreted in the module docstring:
    ``A_i = Σ_j 1[d_ij ≥ threshold]·(r_i − r_j) / (n_g·(std_g + eps))`` (:func:`pairwise_advantage`), broadcast
    to every valid token. Interpretation (no code or full text): the paper's LLM scorer is replaced by a
    model-free distinctiveness.

    Args:
        rollout: needs ``reward``, ``group``, ``mask`` and ``extras[key]`` (token ids long [B, T], from the rollout
            strategy ``token_ids``) for ``distance="edit"``, or ``extras[score_key]`` (float [B]) for ``"score"``.
        threshold: τ_d; pairs with ``d_ij < τ_d`` are masked. Not in the available text: default 0.1 for the edit
            distance (completions that differ in fewer than 10 % of their tokens are near-duplicates); 0 keeps
            every pair (= grpo). Usually 0.05 to 0.3 for ``"edit"``; in the score's units for ``"score"``.
        distance: ``"edit"`` (default): token Levenshtein distance / longer length, in [0, 1]; ``"score"``:
            ``|s_i − s_j|`` of a per-completion score column (the form the spec suggests).
        key: extras key of the token ids (``"edit"``); score_key: extras key of the score column (``"score"``).
        ddof, eps: of the group std, as ``ADVANTAGES["grpo"]`` (ddof 1, eps 1e-6 outside the root).

    Worked example (one group): completions [5, 6, 7] (r = 1), [5, 6, 8] (r = 0), [9, 9, 9] (r = 0); distances
    1/3, 1, 1 → all ≥ 0.1 → grpo's [1.1547, −0.5774, −0.5774]; with τ_d = 0.5 the near-duplicate pair (0, 1) is
    masked: std = 0.57735, A_0 = (1 − 0)/(3·std) = 0.5774, A_1 = 0, A_2 = (0 − 1)/(3·std) = −0.5774.

    >>> r = Rollout(group=torch.zeros(3, dtype=torch.long), mask=torch.ones(3, 3, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0, 0.0]),
    ...             extras={"token_ids": torch.tensor([[5, 6, 7], [5, 6, 8], [9, 9, 9]])})
    >>> [round(a, 3) + 0.0 for a in dagrpo(r, threshold=0.5)[:, 0].tolist()]
    [0.577, 0.0, -0.577]
    """
    check_choice("dagrpo", "distance", distance, DISTANCES)
    hint = "0 keeps every pair; usually 0.1"
    check_number("threshold", threshold, minimum=0, finite=False, where="dagrpo", hint=hint)  # inf drops every pair
    mask, reward, group = rollout.mask, rollout.reward, rollout.group  # [B, T], [B], [B]
    B = rollout.batch_size
    pair_i, pair_j = group_pairs(group)  # [K], [K]
    if distance == "edit":
        ids = rollout.extras.get(key)
        if not isinstance(ids, Tensor) or ids.shape != mask.shape or ids.is_floating_point():
            got = f"{ids.dtype} {list(ids.shape)}" if isinstance(ids, Tensor) else repr(ids)
            raise ValueError(
                f"dagrpo: rollout.extras[{key!r}] must hold the completion token ids, integer [B, T] = "
                f"{list(mask.shape)} (add the rollout strategy 'token_ids' last in the preset's rollout), got {got}"
            )
        compact, length = compact_tokens(ids.to(mask.device).long(), mask)  # [B, T], [B]
        lev = edit_distance(compact[pair_i], length[pair_i], compact[pair_j], length[pair_j])  # [K]
        longer = torch.maximum(length[pair_i], length[pair_j]).clamp(min=1)  # [K]
        d = lev.to(reward.dtype) / longer.to(reward.dtype)  # [K]: 0 identical .. 1 nothing shared
    else:
        s = rollout.extras.get(score_key)
        if not isinstance(s, Tensor) or s.shape != (B,) or not s.is_floating_point():
            got = f"{s.dtype} {list(s.shape)}" if isinstance(s, Tensor) else repr(s)
            raise ValueError(
                f"dagrpo: rollout.extras[{score_key!r}] must be a float score per completion [{B}], got {got}"
            )
        s = s.to(reward)  # [B]
        d = (s[pair_i] - s[pair_j]).abs()  # [K]
    keep = d >= threshold  # [K]: DaGRPO mask of low-distinctiveness pairs
    adv = pairwise_advantage(reward, group, pair_i, pair_j, keep, ddof=ddof, eps=eps)  # [B]
    return torch.where(mask, adv[:, None], torch.zeros((), dtype=adv.dtype, device=adv.device))  # [B, T]
