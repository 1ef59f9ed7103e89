"""Loss aggregation: how a per-token loss ``l[i, t]`` becomes the one number that is minimised.

Every entry of :data:`AGGREGATIONS` has the signature::

    fn(values [B, T], mask bool [B, T], *, num_tokens=None, num_seqs=None, norm_constant=None) -> 0-dim tensor

and ignores the keyword arguments it does not use. The modes (``m`` is the mask, ``L_i = Σ_t m[i, t]``):

========================  ===========================================  ==========================================
mode                      formula                                      used by
========================  ===========================================  ==========================================
``token_mean``            Σ_{i,t} m·l / N_tok                          DAPO (arXiv 2503.14476), "token-level loss"
``seq_mean_token_mean``   Σ_i (Σ_t m·l / L_i) / N_seq                  GRPO (DeepSeekMath, arXiv 2402.03300)
``seq_mean_token_sum``    Σ_i Σ_t m·l / N_seq                          BNPO, verl's "seq-mean-token-sum"
``seq_sum_const``         Σ_i Σ_t m·l / (C · N_seq)                    Dr. GRPO (arXiv 2503.20783)
========================  ===========================================  ==========================================

``N_tok`` is ``num_tokens`` if given, else ``mask.sum()``; ``N_seq`` is ``num_seqs`` if given, else ``B``;
``C`` is ``norm_constant`` (the generation limit, e.g. ``max_new_tokens``), required by ``seq_sum_const``.

Conventions (the same in every mode):

- Masked positions never influence the result, even if they hold NaN or inf: values are selected with
  ``torch.where`` (not multiplied by the mask), so neither the value nor the gradient sees them, and the
  gradient at masked positions is exactly 0.
- Micro-batches and data-parallel ranks: pass the WHOLE batch's ``num_tokens`` (total valid tokens) and
  ``num_seqs`` (total completions). Then every mode is a plain sum over sequences, so the micro-batch losses
  summed (or all-reduced with SUM over ranks) equal the full-batch loss, in value and gradient, whatever the
  split. With the local defaults the result depends on the split (the bug verl and TRL fixed with global
  token counts). Counts may be Python numbers or 1-element tensors (e.g. all-reduced ones); they must be > 0.
- A row with no valid token (the Rollout contract forbids it, but aggregation is usable alone) contributes 0
  to ``seq_mean_token_mean`` rather than NaN; it still counts in the default ``N_seq = B``.
- Every mode is linear in ``values`` for a fixed mask and counts, so ``aggregate(a + b) == aggregate(a) +
  aggregate(b)``: a KL term may be aggregated separately with the same mode and counts and added.

>>> import torch
>>> values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, float("nan")]])  # [B=2, T=3]; the NaN is padding
>>> mask = torch.tensor([[True, True, True], [True, True, False]])      # [B, T]
>>> [aggregate(values, mask, mode, norm_constant=10).item() for mode in sorted(AGGREGATIONS)]
[3.25, 7.5, 0.75, 3.0]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.registry import Registry
from grpolab.core.stats import masked_sum

AGGREGATIONS = Registry("aggregation")

Number = float | int | Tensor
Count = Number | None


def _check_inputs(values: Tensor, mask: Tensor) -> None:
    if not isinstance(values, Tensor) or not isinstance(mask, Tensor):
        raise ValueError(
            f"aggregation: values and mask must be tensors, got {type(values).__name__}, {type(mask).__name__}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"aggregation: mask must be bool [B, T], got {mask.dtype}; convert with mask.bool()")
    if values.dim() != 2 or values.shape != mask.shape:
        raise ValueError(
            f"aggregation: values must be [B, T] like mask {list(mask.shape)}, got {list(values.shape)}; "
            "aggregate a per-token loss before any reduction"
        )


def _positive(name: str, count: Number) -> Number:
    """Validate a user-given global count (> 0, finite)."""
    if isinstance(count, Tensor):
        if count.numel() != 1:
            raise ValueError(
                f"aggregation: {name} must be a number or a 1-element tensor, got shape {list(count.shape)}"
            )
        ok = bool(torch.isfinite(count).all()) and bool((count > 0).all())
        shown = count.detach().flatten()[0].item()
    elif isinstance(count, bool) or not isinstance(count, (int, float)):
        raise ValueError(f"aggregation: {name} must be a positive number, got {type(count).__name__}")
    else:
        ok = math.isfinite(count) and count > 0
        shown = count
    if not ok:
        raise ValueError(
            f"aggregation: {name} must be > 0 and finite, got {shown}; pass the whole batch's count "
            "(total valid tokens / total completions), or None for this micro-batch's own count"
        )
    return count


def _seq_count(values: Tensor, num_seqs: Count) -> Number:
    return values.shape[0] if num_seqs is None else _positive("num_seqs", num_seqs)


@AGGREGATIONS.register("token_mean")
def token_mean(
    values: Tensor,
    mask: Tensor,
    *,
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> Tensor:
    """DAPO's token-level policy-gradient loss (DAPO, arXiv 2503.14476, Sec. 3.3): Σ_{i,t} m·l / N_tok.

    Every valid token weighs the same, so long completions are not down-weighted per token.

    Args:
        values: per-token loss, float [B, T].
        mask: valid tokens, bool [B, T].
        num_tokens: N_tok, the number of valid tokens of the WHOLE batch (for micro-batching / data
            parallelism); default ``mask.sum()`` of this batch.
        num_seqs, norm_constant: ignored (accepted so that every mode takes the same arguments).

    Returns:
        0-dim tensor.

    >>> v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    >>> m = torch.tensor([[True, True, True], [True, True, False]])
    >>> token_mean(v, m).item(), token_mean(v, m, num_tokens=10).item()
    (3.0, 1.5)
    """
    _check_inputs(values, mask)
    n_tok = mask.sum() if num_tokens is None else _positive("num_tokens", num_tokens)  # [] or scalar
    return masked_sum(values, mask) / n_tok  # []


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(
    values: Tensor,
    mask: Tensor,
    *,
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> Tensor:
    """Original GRPO (DeepSeekMath, arXiv 2402.03300, the GRPO objective): Σ_i (Σ_t m·l / L_i) / N_seq.

    Each completion's tokens are averaged first (the 1/|o_i| of the GRPO objective), then completions are
    averaged; this is the length bias Dr. GRPO removes.

    Args:
        values: per-token loss, float [B, T].
        mask: valid tokens, bool [B, T].
        num_seqs: N_seq, the number of completions of the WHOLE batch; default B of this batch.
        num_tokens, norm_constant: ignored.

    Returns:
        0-dim tensor.

    >>> v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    >>> m = torch.tensor([[True, True, True], [True, True, False]])
    >>> seq_mean_token_mean(v, m).item()  # (2 + 4.5) / 2
    3.25
    """
    _check_inputs(values, mask)
    n_seq = _seq_count(values, num_seqs)
    lengths = mask.sum(dim=-1).clamp(min=1)  # [B]; an empty row gives 0 / 1 = 0, not NaN
    per_seq = masked_sum(values, mask, dim=-1) / lengths  # [B]
    return per_seq.sum() / n_seq  # []


@AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(
    values: Tensor,
    mask: Tensor,
    *,
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> Tensor:
    """Sum over each completion's tokens, mean over completions: Σ_i Σ_t m·l / N_seq.

    verl's ``seq-mean-token-sum`` (used by BNPO). The loss scale grows with completion length.

    Args:
        values: per-token loss, float [B, T].
        mask: valid tokens, bool [B, T].
        num_seqs: N_seq, the number of completions of the WHOLE batch; default B of this batch.
        num_tokens, norm_constant: ignored.

    Returns:
        0-dim tensor.

    >>> v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    >>> m = torch.tensor([[True, True, True], [True, True, False]])
    >>> seq_mean_token_sum(v, m).item()  # (6 + 9) / 2
    7.5
    """
    _check_inputs(values, mask)
    n_seq = _seq_count(values, num_seqs)
    return masked_sum(values, mask) / n_seq  # []


@AGGREGATIONS.register("seq_sum_const")
def seq_sum_const(
    values: Tensor,
    mask: Tensor,
    *,
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> Tensor:
    """Dr. GRPO's constant normaliser (Understanding R1-Zero-Like Training: A Critical Perspective,
    arXiv 2503.20783, the Dr. GRPO objective): Σ_i Σ_t m·l / (C · N_seq).

    "Dr. GRPO modification 2: remove the length bias": each completion's token losses are summed and divided
    by a constant C (the generation limit, ``generate_max_length``: 3000 in the paper's recipe) instead of by
    its own length, so a long wrong answer is not penalised less per token. TRL's ``dr_grpo`` loss divides by
    ``B · max_completion_length`` the same way. The result does not depend on how far a row is padded.

    Args:
        values: per-token loss, float [B, T].
        mask: valid tokens, bool [B, T].
        norm_constant: C, required; the generation limit (e.g. ``max_new_tokens``), the same for every batch.
        num_seqs: N_seq, the number of completions of the WHOLE batch; default B of this batch.
        num_tokens: ignored.

    Returns:
        0-dim tensor.

    >>> v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    >>> m = torch.tensor([[True, True, True], [True, True, False]])
    >>> seq_sum_const(v, m, norm_constant=10).item()  # (6 + 9) / (10 * 2)
    0.75
    """
    _check_inputs(values, mask)
    if norm_constant is None:
        raise ValueError(
            "aggregation 'seq_sum_const' (Dr. GRPO) needs norm_constant: pass the generation limit "
            "(e.g. norm_constant=max_new_tokens), a constant that does not depend on the batch"
        )
    c = _positive("norm_constant", norm_constant)
    n_seq = _seq_count(values, num_seqs)
    return masked_sum(values, mask) / (c * n_seq)  # []


def aggregate(
    values: Tensor,
    mask: Tensor,
    mode: str,
    *,
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> Tensor:
    """Aggregate a per-token loss ``values`` [B, T] over ``mask`` [B, T] with the named ``mode``.

    ``mode`` is one of :data:`AGGREGATIONS` (``token_mean``, ``seq_mean_token_mean``, ``seq_mean_token_sum``,
    ``seq_sum_const``); an unknown name raises the registry's ``UnknownNameError`` listing the known ones.
    Counts given must be > 0 (``ValueError`` otherwise); see the module docstring for their meaning.

    >>> v = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    >>> m = torch.tensor([[True, True], [True, False]])
    >>> aggregate(v, m, "token_mean").item(), aggregate(v, m, "seq_mean_token_sum", num_seqs=4).item()
    (2.0, 1.5)
    """
    fn = AGGREGATIONS[mode]
    return fn(values, mask, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant)
