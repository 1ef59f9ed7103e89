"""Regularizers: extra loss terms added to the policy loss.

``REGULARIZERS`` entries share one signature::

    fn(logp [B, T], rollout, *, entropy: Tensor | None = None, aggregation="token_mean",
       num_tokens=None, num_seqs=None, norm_constant=None, **hparams) -> (loss: 0-dim Tensor, metrics)

``entropy`` is the per-token entropy [B, T] of the current policy (``core.logits.entropy_from_logits``), passed
by a trainer only to terms that need it. The aggregation arguments are those of the policy loss, so a term
and the surrogate are normalised the same way (and micro-batches sum to the full-batch loss).
"""

from __future__ import annotations

from torch import Tensor

from grpolab.core.aggregation import aggregate
from grpolab.core.kl import kl_estimate
from grpolab.core.registry import Registry
from grpolab.core.stats import masked_mean
from grpolab.core.types import Rollout

REGULARIZERS = Registry("regularizer")


@REGULARIZERS.register("kl", requires=("ref_logp",))
def kl(
    logp: Tensor,
    rollout: Rollout,
    *,
    entropy: Tensor | None = None,
    aggregation: str = "token_mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_constant: float | None = None,
    coef: float = 0.04,
    estimator: str = "k3",
) -> tuple[Tensor, dict[str, float]]:
    """β·KL(π_θ‖π_ref) in the loss, added per token before aggregation (GRPO, DeepSeekMath arXiv 2402.03300, Eq. 3).

    Gradient flows through ``logp``; ``rollout.ref_logp`` is a constant.

    Args:
        coef: β. DeepSeekMath: 0.04; usually 0.001 to 0.1; 0 disables (then no reference model is needed).
        estimator: "k3" (GRPO's unbiased non-negative estimator), "k1" or "k2".
    """
    if rollout.ref_logp is None:
        raise ValueError(
            "the kl regularizer needs rollout.ref_logp (load a reference model, or set coef to 0 and drop it)"
        )
    if coef < 0:
        raise ValueError(f"kl: coef must be >= 0, got {coef}")
    per_token = kl_estimate(logp, rollout.ref_logp, estimator=estimator, mask=rollout.mask)  # [B, T], 0 at padding
    loss = coef * aggregate(
        per_token, rollout.mask, aggregation, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant
    )
    return loss, {"kl": masked_mean(per_token.detach(), rollout.mask).item()}


@REGULARIZERS.register("entropy", requires=("entropy",))
def entropy_bonus(
    logp: Tensor,
    rollout: Rollout,
    *,
    entropy: Tensor | None = None,
    aggregation: str = "token_mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_constant: float | None = None,
    coef: float = 0.001,
) -> tuple[Tensor, dict[str, float]]:
    """Entropy bonus −c·H (PPO, arXiv 1707.06347, Eq. 9): the loss falls when the policy's entropy rises.

    Args:
        coef: c. Usually 0 to 0.01 (verl's former default 0.001; many LLM recipes use 0).
    """
    if entropy is None:
        raise ValueError("the entropy regularizer needs the per-token entropy [B, T] (pass entropy=...)")
    if entropy.shape != rollout.mask.shape:
        raise ValueError(f"entropy must be [B, T] = {list(rollout.mask.shape)}, got {list(entropy.shape)}")
    mean_entropy = aggregate(
        entropy, rollout.mask, aggregation, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant
    )
    return -coef * mean_entropy, {"entropy": masked_mean(entropy.detach(), rollout.mask).item()}
