"""Mirror Descent Policy Optimization (on-policy MDPO): the KL proximal term replaces PPO's clipping.

Mirror Descent Policy Optimization (Tomar, Shani, Efroni, Ghavamzadeh, arXiv 2005.09814, ICLR 2022; code
manantomar/Mirror-Descent-Policy-Optimization ``mdpo_on/mdpo.py``). Each iteration k approximately solves

    θ_{k+1} = argmax_θ E_{s∼ρ_{θ_k}} [ E_{a∼π_k}[ (π_θ/π_k)·A^{π_k}(s, a) ] − (1/t_k)·KL(π_θ(·|s) ‖ π_k(·|s)) ]

with m SGD steps on the same batch, π_k (the rollout policy, ``rollout.old_logp``) frozen, no ratio clipping.
Verified in the official code: the KL is ``policy_pi.kl(old_policy)`` = KL(π_θ ‖ π_k) (the reverse of what
some third-party ports use), the objective is ``mean(ratio·A) − meankl / t_k`` and the step size is annealed
``t_k = 1 − (k − 1)/K`` per iteration (``lr_now``), ``sgd_steps = 10`` (m), advantages GAE, standardised.

Language-model adaptation (this module): the KL over the vocabulary is estimated from the sampled tokens, which
come from π_k, per token with ρ = π_θ/π_k::

    f(ρ) = ρ·log ρ − (ρ − 1)

Unbiased: E_{π_k}[ρ log ρ] = Σ_a π_θ log(π_θ/π_k) = KL(π_θ ‖ π_k) and E_{π_k}[ρ − 1] = 0 (a control variate).
Non-negative (f is convex with f(1) = 0 = f'(1)), and f and its gradient ``ρ·log ρ·∇log π_θ`` vanish token by
token at θ = θ_k, so the first of the m steps is exactly the policy gradient. The gradient is also unbiased:
E_{π_k}[ρ log ρ ∇log π_θ] = Σ_a ∇π_θ log(π_θ/π_k) = ∇KL(π_θ ‖ π_k). States (prefixes) are those of π_k's
samples, which is the paper's E_{s∼ρ_{θ_k}}.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.losses import POLICY_LOSSES, _finish, _prepare
from grpolab.core.offpolicy import _ratio_metrics
from grpolab.core.stats import masked_mean
from grpolab.core.types import Rollout

Count = float | int | Tensor | None


def mdpo_step_size(step: int, total_steps: int, *, t_min: float = 0.01) -> float:
    """MDPO's annealed step size ``t_k = max(t_min, 1 − step / total_steps)`` (arXiv 2005.09814, on-policy MDPO;
    the code's ``lr_now``).

    The KL weight 1/t_k grows from 1 at the first step to total_steps at the last, so late updates stay closer
    to the rollout policy. The official code uses ``1 − (k − 1)/K`` with k counting from 0 (t slightly above 1 at
    the start, 2/K at the end); here ``step`` counts completed steps (0 first), so t goes 1, 1 − 1/K, …, 1/K.
    ``t_min`` only bites past the schedule (a run extended or resumed beyond ``total_steps``) or for very long
    runs: it caps the KL weight at 1/t_min.

    Args:
        step: training steps completed before this one (0 at the first step), >= 0.
        total_steps: steps of the run K, >= 1.
        t_min: floor of t_k; default 0.01 (KL weight ≤ 100), in (0, 1].

    >>> [round(mdpo_step_size(k, 4), 2) for k in range(5)]
    [1.0, 0.75, 0.5, 0.25, 0.01]
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"mdpo: step must be an int >= 0 (completed training steps), got {step!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"mdpo: total_steps must be an int >= 1 (steps of the run), got {total_steps!r}")
    if isinstance(t_min, bool) or not isinstance(t_min, (int, float)) or not 0 < t_min <= 1:
        raise ValueError(f"mdpo: t_min must be in (0, 1] (the floor of the annealed step size), got {t_min!r}")
    return max(t_min, 1.0 - step / total_steps)


def reverse_kl_from_behaviour(log_ratio: Tensor) -> Tensor:
    """Per-token estimate of KL(π_θ ‖ π_k) from tokens sampled from π_k: ``ρ·log ρ − (ρ − 1)``, ρ = exp(log_ratio).

    See the module docstring for why it is unbiased (in value and gradient) and non-negative. Computed as
    ``ρ·x − expm1(x)`` with x = log ρ (less cancellation near x = 0). Shapes: [B, T] in and out.

    >>> import math, torch
    >>> round(reverse_kl_from_behaviour(torch.tensor([math.log(2.0)])).item(), 5)   # 2 ln 2 − 1
    0.38629
    """
    return torch.exp(log_ratio) * log_ratio - torch.expm1(log_ratio)  # [B, T]


@POLICY_LOSSES.register("mdpo", requires=("old_logp",))
def mdpo(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    step: int | None = None,
    total_steps: int | None = None,
    kl_coef: float | None = None,
    t_min: float = 0.01,
) -> tuple[Tensor, dict[str, float]]:
    """On-policy MDPO loss (Mirror Descent Policy Optimization, arXiv 2005.09814, the on-policy
    MDPO update).

    Per token, with ρ = exp(logp − old_logp) (π_k = the rollout policy, frozen during the iteration):
    ``l = −ρ·A + (1/t_k)·(ρ·log ρ − ρ + 1)``, then aggregated. No clipping: the KL term is the trust region. The
    KL estimator is :func:`reverse_kl_from_behaviour` (unbiased for KL(π_θ ‖ π_k) under π_k's samples, 0 with
    zero gradient at θ = θ_k). Where the KL enters: per token in the loss, before aggregation (like GRPO's KL),
    so it is averaged the same way as the surrogate. Run it for m passes over each batch (trainer setting
    ``num_iterations``; paper m = 10).

    Args:
        logp: current log-probs of the sampled tokens, float [B, T], carries the gradient.
        rollout: needs ``mask`` and ``old_logp`` [B, T] (π_k's log-probs at rollout time).
        advantages: float [B, T] (paper: GAE, standardised).
        aggregation, num_tokens, num_seqs, norm_constant: see :mod:`grpolab.core.aggregation`.
        step, total_steps: run arguments (the trainer fills them) for the annealed ``t_k =
            mdpo_step_size(step, total_steps, t_min=t_min)``; paper schedule 1 − k/K.
        kl_coef: a fixed KL weight 1/t instead of the schedule (None = anneal, the paper's choice); the
            third-party fixed value is 0.1, usually 0.1 to 10.
        t_min: floor of t_k, default 0.01 (KL weight ≤ 100); in (0, 1].

    Returns:
        (loss, metrics): ``loss``, ``adv_mean``, ``kl`` (mean per-token estimate of KL(π_θ ‖ π_k)), ``kl_coef``
        (1/t_k), ``ratio_mean``, ``ratio_min``, ``ratio_max``, ``approx_kl`` (k3 of KL(π_k ‖ π_θ)).

    Worked example (one token, A = 1, ρ = 2, t_k = 0.5): −2 + 2·(2 ln 2 − 1) = −1.22741.

    >>> import math, torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 1, dtype=torch.bool), reward=torch.zeros(1),
    ...             old_logp=torch.zeros(1, 1))
    >>> loss, m = mdpo(torch.full((1, 1), math.log(2.0)), r, torch.ones(1, 1), step=1, total_steps=2)
    >>> round(loss.item(), 5), m["kl_coef"]
    (-1.22741, 2.0)
    """
    if kl_coef is None:
        if step is None or total_steps is None:
            raise ValueError(
                "mdpo: the annealed KL weight 1/t_k needs the run arguments step and total_steps (a trainer passes "
                "them); or set a fixed kl_coef"
            )
        coef = 1.0 / mdpo_step_size(step, total_steps, t_min=t_min)
    else:
        if isinstance(kl_coef, bool) or not isinstance(kl_coef, (int, float)) or not math.isfinite(kl_coef):
            raise ValueError(f"mdpo: kl_coef must be None (annealed) or a number >= 0, got {kl_coef!r}")
        if kl_coef < 0:
            raise ValueError(f"mdpo: kl_coef must be >= 0 (usually 0.1 to 10), got {kl_coef}")
        coef = float(kl_coef)
    mask, logp, old, adv = _prepare("mdpo", logp, rollout, advantages, needs_old=True)
    assert old is not None
    log_ratio = logp - old  # [B, T]; 0 at padding
    ratio = torch.exp(log_ratio)  # [B, T]; ρ = π_θ / π_k, carries the gradient (no clipping in MDPO)
    kl = reverse_kl_from_behaviour(log_ratio)  # [B, T]; KL(π_θ ‖ π_k) per token, sampled from π_k
    per_token = -ratio * adv + coef * kl  # [B, T]; MDPO: linearised objective + (1/t_k)·Bregman (KL) term
    with torch.no_grad():
        metrics = _ratio_metrics(ratio, log_ratio, mask)
        metrics["kl"] = masked_mean(kl.detach(), mask).item()
        metrics["kl_coef"] = coef
    return _finish(per_token, mask, adv, aggregation, num_tokens, num_seqs, norm_constant, metrics)
