"""D³S: dynamic dual-level down-sampling of rollouts (max-variance subset) and tokens (top |A|·H).

Learning More with Less: A Dynamic Dual-Level Down-Sampling Framework for Efficient Policy Optimization (Wang et
al., arXiv 2509.22115, ICLR 2026). Two levels, run as one selector (``SELECTORS["d3s"]``) after the advantage:

1. **Sample level.** Keep the subset S of m = ⌈ratio·n⌉ rollouts that maximises the variance of the kept
   advantages, within each group (D3S-I, "intra-group", default) or across the whole batch. The paper shows
   Var(A) of the kept set is positively correlated with the upper bound of the policy-gradient norm. The
   subset is found exactly by the PODS max-variance rule (Xu et al., "Not All Rollouts are Useful", arXiv
   2504.13818): sort by A and take the top-k plus the bottom-(m − k), scanning k = 0..m.
2. **Token level.** Among the tokens of the kept rollouts, score ``s_{i,t} = |A_{i,t}|·H_{i,t}`` (H the rollout
   policy's entropy, ``extras["old_entropy"]``) and keep the top ⌈ρ·N⌉ of them in the loss; the rest leave it.
3. **Dynamic schedule.** Both ratios start low ("aggressive down-sampling to accelerate early learning") and
   relax to 1.0 ("gradually relaxes to promote robust generalization"), linearly or along a half cosine, as a
   function of the run arguments ``step`` / ``total_steps``.

The ratios' start values and the schedule's form are not in the paper text available here (the code is in the
supplement): they are choices, documented in :func:`d3s` and the preset's notes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.checks import check_choice
from grpolab.core.selection import SELECTORS
from grpolab.core.stats import group_count, masked_mean
from grpolab.core.types import Rollout

SCHEDULES = ("linear", "cosine", "constant")
SAMPLE_SCOPES = ("group", "batch")
TOKEN_SCOPES = ("batch", "sequence")


# ---------------------------------------------------------------------------------------------------- checks
def _ratio(name: str, what: str, value: float) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 < value <= 1.0
    if not ok:
        raise ValueError(f"{name}: {what} must be a number in (0, 1] (a fraction kept), got {value!r}")


def _count(ratio: float, n: Tensor) -> Tensor:
    """⌈ratio·n⌉ clamped to [min(1, n), n] (long, same shape as n); the 1e-9 absorbs 0.3·10 = 3.0000000000000004."""
    m = torch.ceil(ratio * n.double() - 1e-9).long()  # [..]
    return torch.minimum(m.clamp(min=1), n.long())


# ---------------------------------------------------------------------------------------------------- math
def d3s_schedule(step: int, total_steps: int, *, start: float, end: float = 1.0, kind: str = "linear") -> float:
    """A down-sampling ratio at training step ``step`` of ``total_steps``: from ``start`` (first step) to ``end``
    (last step), monotone non-decreasing.

    D³S (arXiv 2509.22115), dynamic down-sampling schedule (curriculum: aggressive first, relaxed later). With
    progress ``p = step / (total_steps − 1)`` clipped to [0, 1] (p = 1 at the last step, so the last update sees
    ``end``): ``"linear"``: ``start + (end − start)·p``; ``"cosine"``: ``end − (end − start)·(1 + cos πp)/2``
    (slow start and finish); ``"constant"``: ``start`` throughout (static D²S-style down-sampling).

    Args:
        step: completed training steps before this one (0 at the first step), a run argument.
        total_steps: steps of the run (a run of one step uses ``end``).
        start: ratio at the first step, in (0, 1]; end: ratio at the last step, in [start, 1], default 1.0.
        kind: ``"linear"`` (default), ``"cosine"`` or ``"constant"``.

    >>> [d3s_schedule(s, 5, start=0.5) for s in range(5)]
    [0.5, 0.625, 0.75, 0.875, 1.0]
    >>> [round(d3s_schedule(s, 3, start=0.5, kind="cosine"), 4) for s in range(3)]
    [0.5, 0.75, 1.0]
    """
    _ratio("d3s_schedule", "start", start)
    _ratio("d3s_schedule", "end", end)
    check_choice("d3s_schedule", "kind", kind, SCHEDULES)
    if end < start:
        raise ValueError(f"d3s_schedule: end ({end}) must be >= start ({start}): the schedule only relaxes")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"d3s_schedule: step must be an int >= 0, got {step!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"d3s_schedule: total_steps must be an int >= 1, got {total_steps!r}")
    if kind == "constant":
        return float(start)
    p = min(1.0, step / (total_steps - 1)) if total_steps > 1 else 1.0
    if kind == "linear":
        return start + (end - start) * p
    return end - (end - start) * 0.5 * (1.0 + math.cos(math.pi * p))


def max_variance_subset(values: Tensor, group: Tensor, *, ratio: float) -> Tensor:
    """Per group, the ⌈ratio·n_g⌉ members whose values have the largest variance: keep bool [B].

    D³S sample-level down-sampling (arXiv 2509.22115) with the exact PODS rule (arXiv 2504.13818, max-variance
    down-sampling): for a set of m values drawn from a sorted list, the variance is maximal for some top-k plus
    bottom-(m − k) split, so scanning k = 0..m (prefix sums, O(n log n)) finds it. Ties: equal values are ordered
    by index (stable sort) and equal variances pick the smallest k (fewest top values). The variance is the
    population variance (ddof 0; ddof does not change the argmax for a fixed m), computed in float64.

    Args:
        values: float [B] (per-completion advantages).
        group: long [B] group ids 0..P-1 (pass zeros for one batch-wide set); unequal groups are fine.
        ratio: fraction kept per group in (0, 1]; m_g = ⌈ratio·n_g⌉, at least 1 (a group of 1 keeps its member).

    Example: A = [−2, −1, 0, 1, 2], m = 2 → k = 1 (variance 4) beats k = 0 or 2 (variance 0.25) → {−2, 2}.

    >>> max_variance_subset(torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]), torch.zeros(5, dtype=torch.long),
    ...                     ratio=0.4).tolist()
    [True, False, False, False, True]
    """
    _ratio("max_variance_subset", "ratio", ratio)
    B = values.shape[0]
    P = int(group.max().item()) + 1
    device = values.device
    # sort by (group, value): values ascending inside each group, groups contiguous, stable for ties
    by_value = torch.argsort(values, stable=True)  # [B]
    order = by_value[torch.argsort(group[by_value], stable=True)]  # [B]
    v = values[order].double()  # [B]
    n = group_count(group, P).long()  # [P]
    m = _count(ratio, n)  # [P]
    start = torch.cumsum(n, 0) - n  # [P]: first sorted position of each group
    zero = torch.zeros(1, dtype=v.dtype, device=device)
    c1 = torch.cat([zero, torch.cumsum(v, 0)])  # [B + 1]: prefix sums of values
    c2 = torch.cat([zero, torch.cumsum(v * v, 0)])  # [B + 1]: prefix sums of squares
    K = int(m.max().item())
    k = torch.arange(K + 1, device=device)[None, :]  # [1, K + 1]: number of top values taken
    valid = k <= m[:, None]  # [P, K + 1]
    kk = torch.minimum(k, m[:, None])  # [P, K + 1]
    s, e = start[:, None], (start + n)[:, None]  # [P, 1] each
    low_end = s + m[:, None] - kk  # [P, K + 1]: bottom (m − k) values are sorted positions s .. low_end − 1
    top_start = e - kk  # [P, K + 1]: top k values are sorted positions top_start .. e − 1
    sum1 = c1[low_end] - c1[s] + c1[e] - c1[top_start]  # [P, K + 1]
    sum2 = c2[low_end] - c2[s] + c2[e] - c2[top_start]  # [P, K + 1]
    mf = m[:, None].double()  # [P, 1]
    var = sum2 / mf - (sum1 / mf) ** 2  # [P, K + 1]: population variance of the kept set
    var = torch.where(valid, var, torch.full_like(var, -math.inf))  # [P, K + 1]
    best = torch.argmax(var, dim=1)  # [P]: first maximum = smallest k among ties
    sorted_group = group[order]  # [B]
    rank = torch.arange(B, device=device) - start[sorted_group]  # [B]: rank inside the group, ascending
    kb, mg, ng = best[sorted_group], m[sorted_group], n[sorted_group]  # [B] each
    keep_sorted = (rank < mg - kb) | (rank >= ng - kb)  # [B]: bottom (m − k) or top k
    keep = torch.zeros(B, dtype=torch.bool, device=device)  # [B]
    keep[order] = keep_sorted
    return keep


def top_token_mask(scores: Tensor, mask: Tensor, *, ratio: float, scope: str = "batch") -> Tensor:
    """The top ⌈ratio·N⌉ tokens by score among the ``mask`` tokens: keep bool [B, T].

    D³S token-level down-sampling (arXiv 2509.22115): scores are ``|A_{i,t}|·H_{i,t}``; the top fraction stays in
    the loss. ``scope="batch"`` (default) ranks all masked-in tokens of the batch together (N = their number, as
    the 80/20 high-entropy-token rule of arXiv 2506.01939 selects over the batch); ``"sequence"`` keeps
    ⌈ratio·L_i⌉ per completion. Ties: exactly ⌈ratio·N⌉ tokens are kept; equal scores are taken in row-major
    order (earlier completion, then earlier position), by a stable descending sort. Values of ``scores`` outside
    ``mask`` are ignored.

    Args:
        scores: float [B, T]; mask: bool [B, T] the candidate tokens.
        ratio: fraction kept in (0, 1]; at least one token of a non-empty set (of a non-empty row for
            ``"sequence"``) is kept.
        scope: ``"batch"`` or ``"sequence"``.

    Example: ρ = 0.5, scores [4, 1, 3, 0] → keep 2 tokens: positions 0 and 2.

    >>> top_token_mask(torch.tensor([[4.0, 1.0, 3.0, 0.0]]), torch.ones(1, 4, dtype=torch.bool), ratio=0.5).tolist()
    [[True, False, True, False]]
    """
    _ratio("top_token_mask", "ratio", ratio)
    check_choice("top_token_mask", "scope", scope, TOKEN_SCOPES)
    if scores.shape != mask.shape:
        raise ValueError(
            f"top_token_mask: scores must be [B, T] = {list(mask.shape)} like mask, got {list(scores.shape)}"
        )
    s = torch.where(mask, scores, torch.full_like(scores, -math.inf))  # [B, T]: candidates only
    B, T = mask.shape
    if scope == "batch":
        k = int(_count(ratio, mask.sum()).item())  # []
        order = torch.argsort(s.flatten(), descending=True, stable=True)  # [B·T]
        keep = torch.zeros(B * T, dtype=torch.bool, device=mask.device)  # [B·T]
        keep[order[:k]] = True
        return keep.view(B, T) & mask  # [B, T]
    order = torch.argsort(s, dim=1, descending=True, stable=True)  # [B, T]
    rank = torch.empty_like(order)  # [B, T]
    rank.scatter_(1, order, torch.arange(T, device=mask.device).expand(B, T))  # [B, T]: 0 = best of the row
    per_row = _count(ratio, mask.sum(dim=-1))  # [B]
    return (rank < per_row[:, None]) & mask  # [B, T]


# ---------------------------------------------------------------------------------------------------- selector
@SELECTORS.register("d3s", requires=("old_entropy",))
def d3s(
    rollout: Rollout,
    advantages: Tensor,
    *,
    step: int,
    total_steps: int,
    sample_ratio_start: float = 0.5,
    sample_ratio_end: float = 1.0,
    token_ratio_start: float = 0.2,
    token_ratio_end: float = 1.0,
    schedule: str = "linear",
    sample_scope: str = "group",
    token_scope: str = "batch",
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """D³S dual-level down-sampling: keep a max-Var(A) subset of rollouts, then the top |A|·H tokens of them.

    Learning More with Less: A Dynamic Dual-Level Down-Sampling Framework for Efficient Policy Optimization
    (arXiv 2509.22115). At this step the ratios are ``d3s_schedule(step, total_steps, start=…, end=…)``; the
    sample level (:func:`max_variance_subset`) runs on the per-completion advantage (the mean of ``advantages``
    over the completion's valid tokens: the broadcast value for grpo), the token level (:func:`top_token_mask`)
    on ``|A_{i,t}|·H_{i,t}`` over the tokens of the kept rollouts. ``keep`` narrows the loss mask (dropped
    rollouts have no kept token and leave the batch); the advantages are returned unchanged (0 at padding).

    Args:
        rollout: needs ``mask``, ``group`` and, when the token ratio is below 1, ``extras["old_entropy"]``.
        advantages: float [B, T].
        step, total_steps: run arguments (the trainer fills them).
        sample_ratio_start: m/n at the first step; not recovered from the paper, chosen 0.5 (PODS keeps m = n/2 of
            the rollouts in its main setting); usually 0.25 to 0.75.
        sample_ratio_end: m/n at the last step; 1.0 (the schedule "relaxes", spec part B §4).
        token_ratio_start: kept token fraction at the first step; not recovered, chosen 0.2 (the 20 % of
            high-entropy "forking" tokens of arXiv 2506.01939); usually 0.2 to 0.5.
        token_ratio_end: 1.0 (all tokens of the kept rollouts at the end).
        schedule: ``"linear"`` (default, chosen), ``"cosine"`` or ``"constant"``.
        sample_scope: ``"group"`` (D3S-I, intra-group: default; the variant the paper reports as the more robust)
            or ``"batch"`` (one max-variance subset of m = ⌈ratio·B⌉ over all rollouts, across groups).
        token_scope: ``"batch"`` (default) or ``"sequence"``, see :func:`top_token_mask`.

    Worked example (one group, first step of a long run, ratios 0.4 and 0.5): A = [−2, −1, 0, 1, 2] → rollouts 0
    and 4 kept; with H = 1 everywhere their 2·L tokens all score 2, ties → the first ⌈0.5·2L⌉ in row-major order.

    >>> r = Rollout(group=torch.zeros(5, dtype=torch.long), mask=torch.ones(5, 2, dtype=torch.bool),
    ...             reward=torch.zeros(5), extras={"old_entropy": torch.ones(5, 2)})
    >>> adv = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])[:, None].expand(5, 2)
    >>> _, keep, _ = d3s(r, adv, step=0, total_steps=10, sample_ratio_start=0.4, token_ratio_start=0.5)
    >>> keep.int().tolist()
    [[1, 1], [0, 0], [0, 0], [0, 0], [0, 0]]
    """
    if not isinstance(advantages, Tensor) or advantages.shape != rollout.mask.shape:
        got = list(advantages.shape) if isinstance(advantages, Tensor) else type(advantages).__name__
        raise ValueError(f"d3s: advantages must be float [B, T] = {list(rollout.mask.shape)}, got {got}")
    for what, value in (
        ("sample_ratio_start", sample_ratio_start),
        ("sample_ratio_end", sample_ratio_end),
        ("token_ratio_start", token_ratio_start),
        ("token_ratio_end", token_ratio_end),
    ):
        _ratio("d3s", what, value)
    check_choice("d3s", "sample_scope", sample_scope, SAMPLE_SCOPES)
    check_choice("d3s", "token_scope", token_scope, TOKEN_SCOPES)
    sample_ratio = d3s_schedule(step, total_steps, start=sample_ratio_start, end=sample_ratio_end, kind=schedule)
    token_ratio = d3s_schedule(step, total_steps, start=token_ratio_start, end=token_ratio_end, kind=schedule)
    mask = rollout.mask  # [B, T]
    adv = torch.where(mask, advantages, torch.zeros_like(advantages))  # [B, T]; padding may hold garbage
    seq_adv = masked_mean(adv, mask, dim=-1)  # [B]
    group = rollout.group if sample_scope == "group" else torch.zeros_like(rollout.group)  # [B]
    # D³S sample level: the max-Var(A) subset (PODS rule), per group (D3S-I) or across the batch
    kept_rows = max_variance_subset(seq_adv, group, ratio=sample_ratio)  # [B]
    candidates = mask & kept_rows[:, None]  # [B, T]
    if token_ratio < 1.0:
        ent = rollout.extras.get("old_entropy")
        if not isinstance(ent, Tensor) or ent.shape != mask.shape or not ent.is_floating_point():
            raise ValueError(
                "d3s: the token level needs rollout.extras['old_entropy'], float [B, T] (the trainer writes it for "
                "parts registered with requires=('old_entropy',)); set token_ratio_start=1.0 to skip the token level"
            )
        ent = torch.where(mask, ent.to(adv), torch.zeros_like(adv))  # [B, T]
        score = adv.abs() * ent  # [B, T]: D³S token score |A_{i,t}|·H_{i,t}
        keep = top_token_mask(score, candidates, ratio=token_ratio, scope=token_scope)  # [B, T]
    else:
        keep = candidates  # [B, T]
    metrics = {
        "d3s/sample_ratio": sample_ratio,
        "d3s/token_ratio": token_ratio,
        "d3s/kept_sample_frac": kept_rows.float().mean().item(),
        "d3s/kept_token_frac": (keep.sum() / mask.sum().clamp(min=1)).item(),
    }
    return adv, keep, metrics
