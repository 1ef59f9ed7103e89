"""Per-token estimators of KL(π_θ ‖ π_ref) from tokens sampled from the current policy π_θ.

From J. Schulman, "Approximating KL Divergence" (2020, http://joschu.net/blog/kl-approx.html). With
``x = ref_logp − logp = log(π_ref / π_θ)`` at a sampled token (so that KL(π_θ‖π_ref) = E_θ[−x]):

- ``k1 = −x = logp − ref_logp``: unbiased, high variance, can be negative per token.
- ``k2 = ½ x²``: biased (low bias when the policies are close), low variance, non-negative.
- ``k3 = exp(x) − x − 1 = π_ref/π_θ − log(π_ref/π_θ) − 1``: unbiased (E_θ[exp(x)] = 1), non-negative,
  low variance; the estimator of GRPO (DeepSeekMath, arXiv 2402.03300, Eq. 4).

Every entry of :data:`KL_ESTIMATORS` is ``fn(logp [B, T], ref_logp [B, T]) -> [B, T]``, the exact formula with
no clamping (k3 is computed as ``expm1(x) − x``, the same number with less rounding near x = 0).

Where the KL enters (two conventions; the trainer picks one, this module only estimates):

- **In the loss** (GRPO): add ``β · k3`` to the per-token policy loss before aggregation, with ``logp`` the
  current log-probs carrying the gradient (``ref_logp`` comes from a frozen model, no gradient). Because every
  aggregation is linear, ``policy_loss + β · aggregate(k3, mask, mode, same counts)`` is the same thing.
  GRPO uses β = 0.04; Dr. GRPO and DAPO use β = 0.
- **In the reward** (PPO's RLHF setup, REINFORCE++ arXiv 2501.03262): subtract ``β · k1`` computed from the
  *behaviour* log-probs ``old_logp`` and ``ref_logp``, detached, from the token rewards before computing
  returns / advantages: ``token_reward − β · kl_estimate(old_logp, ref_logp, estimator="k1").detach()``.
  No gradient flows through this KL; it shapes the reward only.

>>> import math, torch
>>> logp = torch.tensor([[0.0, -1.0]])                     # [B=1, T=2]
>>> ref = torch.tensor([[math.log(2.0), -1.0]])            # x = ln 2 at t = 0, x = 0 at t = 1
>>> [round(v, 4) for v in kl_estimate(logp, ref).flatten().tolist()]   # k3 = 2 - ln 2 - 1
[0.3069, 0.0]
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.registry import Registry

KL_ESTIMATORS = Registry("kl estimator")


def _check(logp: Tensor, ref_logp: Tensor) -> None:
    if not isinstance(logp, Tensor) or not isinstance(ref_logp, Tensor):
        raise ValueError(f"kl: logp and ref_logp must be tensors, got {type(logp).__name__}, {type(ref_logp).__name__}")
    if logp.shape != ref_logp.shape:
        raise ValueError(
            f"kl: logp {list(logp.shape)} and ref_logp {list(ref_logp.shape)} must have the same shape [B, T]; "
            "both are log-probs of the same sampled tokens"
        )


@KL_ESTIMATORS.register("k1")
def k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = logp − ref_logp = −x (Schulman 2020): unbiased, high variance, negative when π_ref > π_θ.

    The estimator of the KL-in-reward penalty (PPO for RLHF, REINFORCE++). Shapes: [B, T] in and out.

    >>> k1(torch.tensor([[-1.0]]), torch.tensor([[-3.0]])).item()
    2.0
    """
    _check(logp, ref_logp)
    return logp - ref_logp  # [B, T]


@KL_ESTIMATORS.register("k2")
def k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = ½ (ref_logp − logp)² (Schulman 2020): biased, low variance, non-negative.

    Its gradient with respect to ``logp`` (on-policy samples) is the gradient of the true KL. Shapes: [B, T].

    >>> k2(torch.tensor([[-1.0]]), torch.tensor([[-3.0]])).item()
    2.0
    """
    _check(logp, ref_logp)
    x = ref_logp - logp  # [B, T]
    return 0.5 * x * x  # [B, T]


@KL_ESTIMATORS.register("k3")
def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = exp(x) − x − 1 with x = ref_logp − logp (Schulman 2020; GRPO, arXiv 2402.03300, Eq. 4).

    Unbiased under samples of π_θ, non-negative, 0 exactly when logp == ref_logp. Computed as
    ``expm1(x) − x`` (the same formula, less cancellation near x = 0); no clamping. Shapes: [B, T].

    >>> round(k3(torch.tensor([[0.0]]), torch.tensor([[0.6931471805599453]])).item(), 4)  # 2 - ln 2 - 1
    0.3069
    """
    _check(logp, ref_logp)
    x = ref_logp - logp  # [B, T]
    return torch.expm1(x) - x  # [B, T]


def kl_estimate(
    logp: Tensor,
    ref_logp: Tensor,
    *,
    estimator: str = "k3",
    mask: Tensor | None = None,
) -> Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref), float [B, T], with the named ``estimator``.

    Args:
        logp: log-probs of the sampled tokens under the policy whose KL is estimated, float [B, T]. In the loss
            (GRPO) these are the current log-probs carrying the gradient; in the reward (PPO, REINFORCE++) pass
            the behaviour log-probs ``rollout.old_logp`` and detach the result.
        ref_logp: log-probs of the same tokens under the reference model, float [B, T] (``rollout.ref_logp``).
        estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (default, GRPO's choice); see the module docstring.
            Unknown names raise the registry's ``UnknownNameError`` listing the known ones.
        mask: optional bool [B, T]; when given, the output is 0 at masked positions and their values (even NaN)
            influence neither the result nor the gradient (inputs are selected with ``torch.where`` first).

    >>> import torch
    >>> logp = torch.tensor([[-1.0, -2.0]])
    >>> ref = torch.tensor([[-1.0, float("nan")]])
    >>> kl_estimate(logp, ref, estimator="k1", mask=torch.tensor([[True, False]])).tolist()
    [[0.0, 0.0]]
    """
    fn = KL_ESTIMATORS[estimator]
    _check(logp, ref_logp)
    if mask is None:
        return fn(logp, ref_logp)  # [B, T]
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != logp.shape:
        raise ValueError(
            f"kl_estimate: mask must be bool {list(logp.shape)} like logp, got "
            f"{getattr(mask, 'dtype', type(mask).__name__)} {list(getattr(mask, 'shape', []))}"
        )
    # Padding may hold garbage: replace it before the formula so no NaN reaches the value or the gradient.
    logp = torch.where(mask, logp, torch.zeros_like(logp))  # [B, T]
    ref_logp = torch.where(mask, ref_logp, torch.zeros_like(ref_logp))  # [B, T]
    kl = fn(logp, ref_logp)  # [B, T]
    return torch.where(mask, kl, torch.zeros_like(kl))  # [B, T]
