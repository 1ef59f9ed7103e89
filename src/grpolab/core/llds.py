"""LLDS: the likelihood-preserving regularizer against Lazy Likelihood Displacement in GRPO.

On GRPO Collapse in Search-R1: The Lazy Likelihood-Displacement Death Spiral (Deng, Li, Gong, Ren, Thrampoulidis,
Li; arXiv 2512.04220; v2 title "On Group Relative Policy Optimization Collapse in Agent Search: The Lazy
Likelihood-Displacement"). Code: vengdeng/LLDS-On-Group-Relative-Policy-Optimization-Collapse-in-Search-R1,
``verl/workers/actor/dp_actor.py`` (``chunk_noreduce``, ``no_reduce_lambda``) and ``train_grpo_nqhot.sh``.

In tool-integrated GRPO the likelihood of responses stalls and then falls (LLD); low-confidence responses have
large gradients, which feed a collapse. LLDS penalises the drop ``max(0, log π_old − log π_θ)`` of a token's
log-prob, but only where it matters: on responses with A ≥ 0 (the *preserving set*: their likelihood should not
fall), and only on the response actions whose likelihood fell as a whole (the gate).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.aggregation import aggregate
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.stats import masked_mean
from grpolab.core.types import Rollout

LLDS_GATES = ("action", "response")


def action_chunks(mask: Tensor) -> Tensor:
    """Chunk id of every position, long [B, T]: 1, 2, … for the contiguous runs of True in each row, 0 elsewhere.

    A run of loss-mask tokens between two tool observations is one *action* of a multi-turn response (LLDS
    code ``chunk_sums_vectorized``).

    >>> import torch
    >>> action_chunks(torch.tensor([[True, True, False, True, False]])).tolist()
    [[1, 1, 0, 2, 0]]
    """
    previous = torch.nn.functional.pad(mask[:, :-1], (1, 0), value=False)  # [B, T]
    starts = mask & ~previous  # [B, T]: first token of each run
    return torch.cumsum(starts.long(), dim=1) * mask.long()  # [B, T]


@REGULARIZERS.register("llds", requires=("old_logp",))
def llds(
    logp: Tensor,
    rollout: Rollout,
    *,
    advantages: Tensor,
    entropy: Tensor | None = None,
    aggregation: str = "token_mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_constant: float | None = None,
    coef: float = 0.2,
    gate: str = "action",
) -> tuple[Tensor, dict[str, float]]:
    """LLDS penalty ``λ·agg( gate·max(0, log π_old − log π_θ) )`` (arXiv 2512.04220, the LLDS regularizer).

    Per token t of response i, with d_t = log π_old − log π_θ (the likelihood drop since the rollout):

    - preserving set: tokens with A ≥ 0 (the code tests the token's advantage; with GRPO's broadcast advantage
      that is "responses with A ≥ 0", including A = 0). Negative-advantage responses are never penalised.
    - ``gate="action"`` (A-gate, the paper's default and best): split the preserving tokens of each response into
      contiguous chunks (runs of the loss mask between tool observations); a chunk is active when
      ``Σ_{t∈chunk} d_t > 0`` (its likelihood fell). ``gate="response"`` (R-gate): the whole response is active
      when the sum over all its preserving tokens is > 0.
    - penalty on active tokens: ``max(0, d_t)`` (tokens whose own log-prob rose are not pushed).

    The per-token penalty is aggregated over *all* valid response tokens (negative-advantage ones count in the
    denominator with 0) with the loss's ``aggregation`` and counts, times λ. The LLDS code uses verl's token mean
    (``masked_mean(weighted_penalty, response_mask)``), so pair it with ``aggregation="token_mean"``. The gate is
    not differentiated (a 0/1 mask); the gradient flows through ``max(0, d_t)``, i.e. −λ·∇log π_θ on active
    tokens whose log-prob fell. At π_θ = π_old (the first update of an on-policy batch) the penalty and its
    gradient are 0; it acts on later mini-batches / epochs of the same batch. The code's optional smaller weight
    on answer tokens (``answer_no_reduce_lambda``, off by default) is not implemented.

    Args:
        logp: current log-probs of the sampled tokens, float [B, T], carries the gradient.
        rollout: needs ``mask`` and ``old_logp`` [B, T].
        advantages: the batch advantages, float [B, T] (a run argument: the trainer passes them).
        entropy: ignored (accepted as by every regularizer).
        aggregation, num_tokens, num_seqs, norm_constant: those of the policy loss.
        coef: λ; paper default 0.2 (``NO_REDUCE_LAMBDA``), usually 0.05 to 0.5; >= 0.
        gate: ``action`` (A-gate, default) or ``response`` (R-gate).

    Returns:
        (loss, metrics) with ``llds`` (mean per-token penalty over valid tokens) and ``llds_active_frac`` (valid
        tokens in an active chunk).

    Hand example (the spec's): one response with A > 0 whose 2 tokens each lost 0.1 of log-prob, N = 4 valid
    tokens in the batch: chunk sum 0.2 > 0 → active; penalty λ·(0.1 + 0.1)/4 = 0.2·0.2/4 = 0.01.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 2, dtype=torch.bool), reward=torch.zeros(2),
    ...             old_logp=torch.zeros(2, 2))
    >>> logp = torch.tensor([[-0.1, -0.1], [-0.3, -0.3]])          # row 1 has A < 0: never penalised
    >>> loss, m = llds(logp, r, advantages=torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    >>> round(loss.item(), 6)
    0.01
    """
    if gate not in LLDS_GATES:
        raise ValueError(f"llds: gate must be one of {list(LLDS_GATES)}, got {gate!r}")
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not math.isfinite(coef) or coef < 0:
        raise ValueError(f"llds: coef (λ) must be a number >= 0 (paper 0.2), got {coef!r}")
    if rollout.old_logp is None:
        raise ValueError("llds needs rollout.old_logp (the rollout policy's log-probs) to measure the likelihood drop")
    mask = rollout.mask  # [B, T]
    for name, x in (("logp", logp), ("advantages", advantages)):
        if not isinstance(x, Tensor) or x.shape != mask.shape or not x.is_floating_point():
            got = f"{x.dtype} {list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"llds: {name} must be a float tensor [B, T] = {list(mask.shape)}, got {got}")
    zero = torch.zeros_like(logp)  # [B, T]
    lp = torch.where(mask, logp, zero)  # [B, T]; padding may hold garbage
    old = torch.where(mask, rollout.old_logp.detach().to(logp.dtype), zero)  # [B, T]
    adv = torch.where(mask, advantages.detach().to(logp.dtype), zero)  # [B, T]
    drop = old - lp  # [B, T]; d_t = log π_old − log π_θ, > 0 where the token's likelihood fell
    preserve = mask & (adv >= 0)  # [B, T]; LLDS preserving set: non-negative advantage
    with torch.no_grad():
        d = torch.where(preserve, drop.detach(), zero)  # [B, T]
        if gate == "action":
            # A-gate: one decision per contiguous action chunk of the preserving tokens
            chunk = action_chunks(preserve)  # [B, T]
            sums = torch.zeros(mask.shape[0], mask.shape[1] + 1, dtype=d.dtype, device=d.device)  # [B, T+1]
            sums.scatter_add_(1, chunk, d)  # [B, T+1]; column 0 collects the non-chunk positions (all 0)
            active = preserve & (sums.gather(1, chunk) > 0)  # [B, T]
        else:
            # R-gate: one decision per response
            active = preserve & (d.sum(dim=-1, keepdim=True) > 0)  # [B, T]
    per_token = torch.where(active, torch.clamp(drop, min=0.0), zero)  # [B, T]; max(0, d_t) on active tokens
    loss = coef * aggregate(
        per_token, mask, aggregation, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant
    )  # []
    with torch.no_grad():
        metrics = {
            "llds": masked_mean(per_token.detach(), mask).item(),
            "llds_active_frac": masked_mean(active.to(logp.dtype), mask).item(),
        }
    return loss, metrics
