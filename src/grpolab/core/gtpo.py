"""GTPO: conflict-token weights and the entropy filter, as one selector (``SELECTORS["gtpo"]``).

GTPO: Trajectory-Based Policy Optimization in Large Language Models (Simoni, Fontana, Rossolini, Saracino; arXiv
2508.03772; retitled "GTPO: Stabilizing Group Relative Policy Optimization via Gradient and Entropy Control" in
v5; code winstonsmith1897/GTPO ``gtpo/gtpo_training.py::build_conflict_mask`` and ``UnslothEfficientGTPO``).

Two changes to GRPO, both applied to the advantages after the group-relative estimate:

1. **Conflict tokens.** Within a group, a token at position t is a conflict token if the same (position, token id)
   occurs in at least one completion with A > 0 and at least one with A < 0. Only the contiguous run of conflict
   tokens from the start of each completion counts (a cumulative product along t); the same test is repeated on
   the completions right-aligned at their last token (position counted from the end). Each direction gives a
   weight per token: 0 for a conflict token of a negative completion (GRPO would push it down although a correct
   completion shares it: skip that update), ``W = 2`` for a conflict token of a positive completion (amplify it),
   1 otherwise. The two directions' weights are *multiplied* (as the code does), so a token in both runs of a
   positive completion gets ``W² = 4``. Completions with A = 0 take no part and keep weight 1.
2. **Entropy filter and shaping.** With ``H̄_i`` the mean token entropy of completion i under the rollout policy:
   ``A_i ← 0`` if ``H̄_i > 0.7``, else ``A_i ← A_i − 0.1·H̄_i``.

The selector returns ``δ_{i,t}·A'_{i,t}`` (the code's loss is ``−1/L_i Σ_t δ_{i,t}·A'_i·ρ_{i,t}`` with ρ = 1
on-policy; with a ratio loss and ``seq_mean_token_mean`` aggregation that is the same gradient) and keeps every
valid token (weight-0 tokens still count in 1/L_i, as in the code).

Conventions (documented choices):

- The sign of a completion (positive / negative / inactive) comes from its per-completion advantage, the mean of
  ``advantages`` over its valid tokens (the broadcast value for sequence-level estimators such as grpo), *before*
  the entropy shaping, as in the code (``pos_flags = adv > 0`` is taken before ``adv − ENT_SCALE·entropy``).
- Positions are the completion's own token positions (t = 0 is the first generated token); a masked position
  is never a conflict and ends a run. The backward direction aligns completions at their last valid token.
- The code also divides each completion's loss by its number of conflict tokens (minimum 1). The paper's
  objective (as summarised in the spec, part A §7, and the abstract) weights tokens only; the division is a
  quirk of the code, so it is an option (``normalize_by_conflicts``, default False). Because every policy loss
  here is positively homogeneous in A, dividing the advantages of a completion by that count divides its loss.
- The entropy is ``rollout.extras["old_entropy"]`` (the trainer's per-token entropy of the rollout policy at the
  sampling temperature); the code uses the current policy's entropy at temperature 1, which equals it for the
  first on-policy update at temperature 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.selection import SELECTORS
from grpolab.core.stats import masked_mean
from grpolab.core.types import Rollout


# ---------------------------------------------------------------------------------------------------- checks
def _token_ids(name: str, rollout: Rollout, key: str) -> Tensor:
    ids = rollout.extras.get(key)
    if ids is None:
        raise ValueError(
            f"{name}: rollout.extras[{key!r}] is missing; it must hold the completion token ids, long [B, T]. Add the "
            f"rollout strategy 'token_ids' to the preset's rollout (have extras: {sorted(rollout.extras)})"
        )
    if not isinstance(ids, Tensor) or ids.shape != rollout.mask.shape or ids.is_floating_point() or ids.is_complex():
        got = f"{ids.dtype} {list(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(
            f"{name}: rollout.extras[{key!r}] must be integer [B, T] = {list(rollout.mask.shape)}, got {got}"
        )
    return ids.to(rollout.mask.device).long()  # [B, T]


def _entropy(name: str, rollout: Rollout) -> Tensor:
    ent = rollout.extras.get("old_entropy")
    if ent is None:
        raise ValueError(
            f"{name}: rollout.extras['old_entropy'] is missing; the part must be registered with "
            "requires=('old_entropy',) so the trainer computes the rollout policy's per-token entropy [B, T]"
        )
    if not isinstance(ent, Tensor) or ent.shape != rollout.mask.shape or not ent.is_floating_point():
        got = f"{ent.dtype} {list(ent.shape)}" if isinstance(ent, Tensor) else type(ent).__name__
        raise ValueError(
            f"{name}: rollout.extras['old_entropy'] must be float [B, T] = {list(rollout.mask.shape)}, got {got}"
        )
    return torch.where(rollout.mask, ent, torch.zeros_like(ent))  # [B, T]; padding may hold garbage


def _check_advantages(name: str, rollout: Rollout, advantages: Tensor) -> None:
    if not isinstance(advantages, Tensor) or advantages.shape != rollout.mask.shape:
        got = list(advantages.shape) if isinstance(advantages, Tensor) else type(advantages).__name__
        raise ValueError(f"{name}: advantages must be float [B, T] = {list(rollout.mask.shape)}, got {got}")
    if not advantages.is_floating_point():
        raise ValueError(f"{name}: advantages must be floating point, got {advantages.dtype}")


def _number(name: str, what: str, value: float, *, minimum: float, strict: bool, hint: str) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        sign = ">" if strict else ">="
        raise ValueError(f"{name}: {what} must be a number {sign} {minimum} ({hint}), got {value!r}")


# ---------------------------------------------------------------------------------------------------- math
def conflict_runs(token_ids: Tensor, mask: Tensor, group: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
    """Conflict tokens counted from the start of each completion: bool [B, T].

    GTPO (arXiv 2508.03772), conflict tokens: token t of completion i is *conflicting* when the pair (t, token id)
    occurs in some completion of i's group with A > 0 and in some completion of that group with A < 0, and i
    itself has A ≠ 0. Only the contiguous run from t = 0 counts (the code's ``cumprod`` over t); a masked
    position is never conflicting and ends the run.

    Args:
        token_ids: long [B, T] completion token ids (values at masked positions are ignored).
        mask: bool [B, T] valid tokens.
        group: long [B] group ids 0..P-1 (unequal, non-contiguous groups are fine).
        positive, negative: bool [B], completions with A > 0 and A < 0.

    Example (one group, ids ``[7, 3, 4]`` with A > 0 and ``[7, 5, 4]`` with A < 0): position 0 conflicts
    (7 in both), position 1 does not, so the run stops there and position 2 (4 in both) is not counted.

    >>> ids = torch.tensor([[7, 3, 4], [7, 5, 4]])
    >>> runs = conflict_runs(ids, torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 0]),
    ...                      torch.tensor([True, False]), torch.tensor([False, True]))
    >>> runs.int().tolist()
    [[1, 0, 0], [1, 0, 0]]
    """
    T = mask.shape[1]
    t = torch.arange(T, device=mask.device)  # [T]
    vocab = int(token_ids[mask].max().item()) + 1 if bool(mask.any()) else 1
    # one integer key per (group, position, token id): equal keys = same token at the same place in one group
    key = (group.long()[:, None] * T + t[None, :]) * vocab + token_ids.clamp(min=0)  # [B, T]
    pos_keys = key[mask & positive[:, None]]  # [N+]
    neg_keys = key[mask & negative[:, None]]  # [N-]
    active = (positive | negative)[:, None]  # [B, 1]: A = 0 completions take no part (the code's active_flags)
    raw = mask & active & torch.isin(key, pos_keys) & torch.isin(key, neg_keys)  # [B, T]
    return torch.cumprod(raw.long(), dim=1).bool()  # [B, T]: contiguous run from t = 0 only


def _from_end(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """x [B, T] re-indexed by distance from the last valid token (d = last − t): (x_rev, mask_rev, index)."""
    T = mask.shape[1]
    t = torch.arange(T, device=mask.device)  # [T]
    last = torch.where(mask, t, -1).max(dim=-1).values  # [B]
    index = last[:, None] - t[None, :]  # [B, T]: source position of distance d
    inside = index >= 0  # [B, T]
    index = index.clamp(min=0)  # [B, T]
    return x.gather(1, index), mask.gather(1, index) & inside, index


def gtpo_token_weights(
    token_ids: Tensor,
    mask: Tensor,
    group: Tensor,
    seq_advantage: Tensor,
    *,
    conflict_weight: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """GTPO token weights δ [B, T] and the conflict-token mask [B, T] (forward or backward run).

    GTPO (arXiv 2508.03772), conflict-aware gradient correction; code ``build_conflict_mask``. Per direction
    (from the start, and right-aligned from the end, see :func:`conflict_runs`): a conflict token weighs 0 in a
    negative completion, ``conflict_weight`` in a positive one, 1 elsewhere; ``δ = δ_forward · δ_backward`` and
    0 at masked positions.

    Args:
        token_ids: long [B, T]; mask: bool [B, T]; group: long [B].
        seq_advantage: float [B], the sign of each completion (> 0 positive, < 0 negative, 0 inactive).
        conflict_weight: W, the amplification of conflict tokens in positive completions; paper default 2.0
            (code ``W_RAW``), usually 1 to 3; 1 only skips the negative updates.

    Hand check: ids ``[[7, 3, 4, 9], [7, 9]]`` (A > 0, A < 0, one group): forward run {t=0} in both, backward run
    {last token 9} in both → positive δ = [2, 1, 1, 2], negative δ = [0, 0].

    >>> mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    >>> w, c = gtpo_token_weights(torch.tensor([[7, 3, 4, 9], [7, 9, 0, 0]]), mask, torch.tensor([0, 0]),
    ...                           torch.tensor([1.0, -1.0]))
    >>> w.tolist(), c.int().tolist()
    ([[2.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]], [[1, 0, 0, 1], [1, 1, 0, 0]])
    """
    _number("gtpo_token_weights", "conflict_weight", conflict_weight, minimum=0.0, strict=False, hint="usually 2")
    positive, negative = seq_advantage > 0, seq_advantage < 0  # [B], [B]
    forward = conflict_runs(token_ids, mask, group, positive, negative)  # [B, T]
    ids_rev, mask_rev, index = _from_end(token_ids, mask)  # [B, T] each
    back_rev = conflict_runs(ids_rev, mask_rev, group, positive, negative)  # [B, T] indexed by distance from end
    # the map t <-> last − t is its own inverse, so the same gather brings the run back to positions
    backward = back_rev.gather(1, index) & mask  # [B, T]
    w = torch.full(mask.shape, float(conflict_weight), dtype=seq_advantage.dtype, device=mask.device)  # [B, T]
    on_conflict = torch.where(positive[:, None], w, torch.zeros_like(w))  # [B, T]: W if positive, 0 if negative
    one = torch.ones_like(w)  # [B, T]
    delta = torch.where(forward, on_conflict, one) * torch.where(backward, on_conflict, one)  # [B, T]
    delta = torch.where(mask, delta, torch.zeros_like(delta))  # [B, T]
    return delta, (forward | backward) & mask


def gtpo_entropy_shaping(
    seq_advantage: Tensor, mean_entropy: Tensor, *, threshold: float = 0.7, coef: float = 0.1
) -> Tensor:
    """GTPO's entropy filter and shaping of the per-completion advantage, float [B].

    GTPO (arXiv 2508.03772), entropy-based regularisation (code ``ENT_THRESHOLD``, ``ENT_SCALE``):
    ``A ← 0`` where ``H̄ > threshold`` (the completion is too uncertain: filtered, policy-collapse guard), else
    ``A ← A − coef·H̄`` (a penalty on high-entropy completions, applied to every completion, inactive ones too).

    Args:
        seq_advantage: float [B]; mean_entropy: float [B], mean token entropy H̄ of each completion.
        threshold: paper/code default 0.7 nats (usually 0.5 to 1.0); a completion at exactly the threshold is kept.
        coef: paper/code default 0.1 (usually 0 to 0.2); 0 keeps only the filter.

    >>> a = gtpo_entropy_shaping(torch.tensor([1.0, -1.0, 0.0]), torch.tensor([0.5, 0.8, 0.2]))
    >>> [round(x, 4) for x in a.tolist()]
    [0.95, 0.0, -0.02]
    """
    _number("gtpo_entropy_shaping", "threshold", threshold, minimum=0.0, strict=False, hint="usually 0.7")
    _number("gtpo_entropy_shaping", "coef", coef, minimum=0.0, strict=False, hint="usually 0.1")
    shaped = seq_advantage - coef * mean_entropy  # [B]
    return torch.where(mean_entropy > threshold, torch.zeros_like(shaped), shaped)  # [B]


# ---------------------------------------------------------------------------------------------------- selector
@SELECTORS.register("gtpo", requires=("old_entropy", "token_ids"))
def gtpo(
    rollout: Rollout,
    advantages: Tensor,
    *,
    conflict_weight: float = 2.0,
    entropy_threshold: float = 0.7,
    entropy_coef: float = 0.1,
    normalize_by_conflicts: bool = False,
    token_ids_key: str = "token_ids",
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """GTPO's advantage correction: conflict-token weights δ times the entropy-shaped advantage, [B, T].

    GTPO: Trajectory-Based Policy Optimization in Large Language Models (arXiv 2508.03772); see the module
    docstring for the rules and the conventions. Output ``δ_{i,t} · A'_{i,t}`` with
    ``A'_{i,t} = 0`` if ``H̄_i > entropy_threshold`` else ``A_{i,t} − entropy_coef·H̄_i``; keep = mask (every
    valid token stays in the loss and its counts).

    Args:
        rollout: needs ``mask``, ``group``, ``extras[token_ids_key]`` (long [B, T], written by the rollout strategy
            ``token_ids``) and ``extras["old_entropy"]`` (float [B, T], from the trainer).
        advantages: float [B, T] (GTPO uses the GRPO advantage).
        conflict_weight: W for conflict tokens of positive completions; paper default 2.0, usually 1 to 3.
        entropy_threshold: mean-entropy cut-off in nats; paper default 0.7, usually 0.5 to 1.0.
        entropy_coef: entropy penalty on the advantage; paper default 0.1, usually 0 to 0.2.
        normalize_by_conflicts: divide completion i's advantages by max(1, its number of conflict tokens), as the
            official code divides its loss; default False (the paper's objective has no such division).
        token_ids_key: extras key of the token ids; default ``"token_ids"``.

    Worked example (one group): ids ``[7, 3, 4]`` with A = 1, H̄ = 0.5 and ``[7, 5, 6]`` with A = −1, H̄ = 0.6:
    the shared first token (``<reasoning>``) is a conflict token → δ = [2, 1, 1] and [0, 1, 1]; A' = 1 − 0.05 =
    0.95 and −1 − 0.06 = −1.06 → [1.9, 0.95, 0.95] and [0, −1.06, −1.06].

    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 3, dtype=torch.bool), reward=torch.tensor([1., 0.]),
    ...             extras={"token_ids": torch.tensor([[7, 3, 4], [7, 5, 6]]),
    ...                     "old_entropy": torch.tensor([[0.5] * 3, [0.6] * 3])})
    >>> adv, keep, _ = gtpo(r, torch.tensor([[1.0] * 3, [-1.0] * 3]))
    >>> [[round(a, 4) + 0.0 for a in row] for row in adv.tolist()], bool(keep.all())
    ([[1.9, 0.95, 0.95], [0.0, -1.06, -1.06]], True)
    """
    _check_advantages("gtpo", rollout, advantages)
    _number("gtpo", "entropy_threshold", entropy_threshold, minimum=0.0, strict=False, hint="usually 0.7")
    _number("gtpo", "entropy_coef", entropy_coef, minimum=0.0, strict=False, hint="usually 0.1")
    _number("gtpo", "conflict_weight", conflict_weight, minimum=0.0, strict=False, hint="usually 2")
    if not isinstance(normalize_by_conflicts, bool):
        raise ValueError(f"gtpo: normalize_by_conflicts must be True or False, got {normalize_by_conflicts!r}")
    mask = rollout.mask  # [B, T]
    ids = _token_ids("gtpo", rollout, token_ids_key)  # [B, T]
    ent = _entropy("gtpo", rollout)  # [B, T]
    adv = torch.where(mask, advantages, torch.zeros_like(advantages))  # [B, T]; padding may hold garbage
    seq_adv = masked_mean(adv, mask, dim=-1)  # [B]: the completion's sign, taken before the entropy shaping
    delta, conflicts = gtpo_token_weights(ids, mask, rollout.group, seq_adv, conflict_weight=conflict_weight)
    mean_ent = masked_mean(ent, mask, dim=-1).to(adv.dtype)  # [B]: H̄_i under the rollout policy
    filtered = mean_ent > entropy_threshold  # [B]
    # GTPO entropy filter (A = 0) and shaping (A − c·H̄), per token so token-level advantages keep their shape
    shaped = torch.where(filtered[:, None], torch.zeros_like(adv), adv - entropy_coef * mean_ent[:, None])  # [B, T]
    out = delta.to(adv.dtype) * shaped  # [B, T]: δ multiplies the advantage (0 skips, W amplifies)
    counts = conflicts.sum(dim=-1)  # [B]
    if normalize_by_conflicts:
        # official-code quirk: each completion's loss divided by its conflict-token count (at least 1)
        out = out / counts.clamp(min=1).to(out.dtype)[:, None]  # [B, T]
    out = torch.where(mask, out, torch.zeros_like(out))  # [B, T]
    metrics = {
        "gtpo/conflict_token_frac": (conflicts.sum() / mask.sum().clamp(min=1)).item(),
        "gtpo/entropy_filtered_frac": filtered.float().mean().item(),
        "gtpo/mean_entropy": mean_ent.mean().item(),
    }
    return out, mask.clone(), metrics
