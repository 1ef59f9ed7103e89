"""Group-relative REINFORCE read as an off-policy algorithm: REC, OPMD, AsymRE, and LOOP's advantage selector.

Group-Relative REINFORCE Is Secretly an Off-Policy Algorithm: Demystifying Some Myths About GRPO and Its Friends
(Yao, Chen et al., arXiv 2509.24203; code: Trinity-RFT ``rec_policy_loss.py``, ``rec_advantage.py``,
``asymre_advantage.py``, ``opmd_advantage.py``, ``opmd_policy_loss.py``) derives the group-mean REINFORCE
gradient ``−(r_i − mean_G r)·∇log π(y_i)`` without assuming the data came from the current policy, so stale
(off-policy) completions are usable as they are. Two principles follow: *regularise* the update (clip masks,
a k2 or forward-KL term) and *shape the data* (re-weight or drop samples). This module holds:

- ``POLICY_LOSSES["rec"]``: REINFORCE with a detached ratio mask M (clip modes none / one-side / two-side /
  ring), optional weights (importance sampling, truncated IS, RED-Weight ``A·exp(A/τ)``) and optional
  regularizers (k2 ``τ(log π − log π_old)²`` = Kimi's OPMD, forward-KL ``−c·log π`` = AsymRE).
- ``POLICY_LOSSES["opmd"]``: Trinity's standalone OPMD loss ``−A·log π / (1 + τ)``.
- ``ADVANTAGES["opmd"]``: OPMD's soft baseline ``τ·logavgexp_G(r/τ)``; the mean baseline is ``dr_grpo``.
- ``ADVANTAGES["asymre"]``: AsymRE's shifted baseline ``mean_G r − δ`` (Asymmetric REINFORCE, arXiv 2506.20520).
- ``SELECTORS["min_abs_advantage"]``: LOOP's filter of rollouts whose advantage is near zero (Reinforcement
  Learning for Long-Horizon Interactive LLM Agents, arXiv 2502.01600; code apple/ml-loop ``abs_adv_threshold``).

The REC group baseline ``r − mean_G r`` is ``ADVANTAGES["dr_grpo"]`` and, with std normalisation (Trinity's
``std_normalize=True``: population std, ddof 0, ε = 1e-6 outside the root), ``ADVANTAGES["grpo"]`` with
``ddof=0``; they are not duplicated here.

>>> import torch
>>> from grpolab.core.types import Rollout
>>> r = Rollout(group=torch.tensor([0, 0, 0, 0]), mask=torch.ones(4, 1, dtype=torch.bool),
...             reward=torch.tensor([1.0, 0.0, 0.0, 0.0]))
>>> [round(a, 4) for a in ADVANTAGES["asymre"](r)[:, 0].tolist()]     # dr_grpo + 0.1
[0.85, -0.15, -0.15, -0.15]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.checks import check_choice
from grpolab.core.kl import kl_estimate
from grpolab.core.losses import POLICY_LOSSES, _finish, _prepare
from grpolab.core.selection import SELECTORS
from grpolab.core.stats import group_mean, masked_mean
from grpolab.core.types import Rollout

Count = float | int | Tensor | None

REC_CLIP_MODES = ("none", "one-side", "two-side", "ring")
REC_WEIGHTS = ("none", "importance_sampling", "truncated_importance_sampling", "advantage")
REC_REGULARIZERS = ("none", "k2", "forward-kl")


# ---------------------------------------------------------------------------------------------------- checks
def _positive(name: str, what: str, value: float, *, at_most: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: {what} must be a positive number, got {value!r}")
    if at_most is not None and value > at_most:
        raise ValueError(f"{name}: {what} must be <= {at_most} (a lower ratio bound 1 - {what} >= 0), got {value}")


def _token_advantages(name: str, rollout: Rollout, advantages: Tensor) -> None:
    if not isinstance(advantages, Tensor) or advantages.shape != rollout.mask.shape:
        got = list(advantages.shape) if isinstance(advantages, Tensor) else type(advantages).__name__
        raise ValueError(f"{name}: advantages must be a float tensor [B, T] = {list(rollout.mask.shape)}, got {got}")
    if not advantages.is_floating_point():
        raise ValueError(f"{name}: advantages must be floating point, got {advantages.dtype}")


# ---------------------------------------------------------------------------------------------------- REC mask
def rec_mask(
    ratio: Tensor,
    adv: Tensor,
    *,
    clip_mode: str = "none",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    epsilon_low_prime: float = 0.6,
    epsilon_high_prime: float = 2.0,
) -> Tensor:
    """REC's token mask M (arXiv 2509.24203, the REC family; Trinity ``RECPolicyLossFn``), bool [B, T].

    With the (detached) ratio ρ and advantage A of each token:

    - ``none``: M = 1 (plain group-mean REINFORCE).
    - ``one-side`` (the mask GRPO's clipping implies): keep if (A ≥ 0 and ρ ≤ 1 + ε_high) or (A ≤ 0 and
      ρ ≥ 1 − ε_low): a token stops being pushed once it has moved past the band in the direction A pushes it.
    - ``two-side``: keep if 1 − ε_low ≤ ρ ≤ 1 + ε_high.
    - ``ring``: two-side, plus A ≥ 0 tokens with ρ ≤ 1 − ε'_low and A ≤ 0 tokens with ρ ≥ 1 + ε'_high (tokens
      that moved far the *wrong* way are pulled back again).

    A = 0 counts as both signs (Trinity's ``>= 0`` / ``<= 0``); bounds are inclusive.

    Args:
        ratio: ρ = π_θ / π_old per token, float [B, T] (used by value only).
        adv: A per token, float [B, T].
        clip_mode: one of ``none``, ``one-side``, ``two-side``, ``ring``.
        epsilon_low, epsilon_high: the inner band; paper default 0.2 / 0.2, usually 0.1 to 0.3 (the paper's
            widened REC-OneSide runs use 0.6 / 2.0).
        epsilon_low_prime, epsilon_high_prime: the ring's outer edges; paper default 0.6 / 2.0.

    Worked example (ε = 0.2, ε' = 0.6 / 2.0), (ρ, A) → one-side / two-side / ring:
    (1.3, +1) → F / F / F; (0.3, +1) → T / F / T; (3.5, −1) → T / F / T; (0.7, −1) → F / F / F.

    >>> import torch
    >>> rho, a = torch.tensor([[1.3, 0.3, 3.5, 0.7]]), torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    >>> rec_mask(rho, a, clip_mode="ring").tolist()
    [[False, True, True, False]]
    """
    check_choice("rec", "clip_mode", clip_mode, REC_CLIP_MODES)
    r = ratio.detach()  # [B, T]
    if clip_mode == "none":
        return torch.ones_like(r, dtype=torch.bool)  # [B, T]
    pos, neg = adv >= 0, adv <= 0  # [B, T], [B, T]
    inside = (r >= 1.0 - epsilon_low) & (r <= 1.0 + epsilon_high)  # [B, T]
    if clip_mode == "one-side":
        return (pos & (r <= 1.0 + epsilon_high)) | (neg & (r >= 1.0 - epsilon_low))  # [B, T]
    if clip_mode == "two-side":
        return inside  # [B, T]
    # ring: the inner band plus the far side of the wrong direction
    return inside | (pos & (r <= 1.0 - epsilon_low_prime)) | (neg & (r >= 1.0 + epsilon_high_prime))  # [B, T]


# ---------------------------------------------------------------------------------------------------- losses
@POLICY_LOSSES.register("rec", requires=("old_logp",))
def rec(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    clip_mode: str = "none",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    epsilon_low_prime: float = 0.6,
    epsilon_high_prime: float = 2.0,
    weight: str = "none",
    temperature: float = 1.0,
    regularizer: str = "none",
    regularizer_coef: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """REC, REINFORCE with a clip mask (Group-Relative REINFORCE Is Secretly an Off-Policy Algorithm, arXiv
    2509.24203, the REC / REP / RED families; Trinity ``rec_policy_loss.py``).

    Per token, with ρ = exp(logp − old_logp) *detached*, M = :func:`rec_mask` and the weighted advantage w:
    ``l = −w·logp·M`` (+ regularizer), then aggregated. There is no ratio in the gradient: the paper's point is
    that ``−(r − mean_G r)·∇log π`` is already a valid off-policy update; the mask only stops tokens that moved
    too far (REC), w re-weights samples (RED-Weight), the regularizer keeps the update near π_old (REP).

    w by ``weight``: ``none`` → A; ``importance_sampling`` → A·ρ; ``truncated_importance_sampling`` →
    A·clip(ρ, 1 − ε'_low, 1 + ε'_high) (Trinity truncates with the ring's outer edges); ``advantage``
    (RED-Weight) → A·exp(A/τ), unnormalised. Regularizer (added per token before aggregation): ``k2`` →
    ``+c·(logp − old_logp)²`` (Kimi k1.5's OPMD, arXiv 2501.12599, its ½ absorbed into c); ``forward-kl`` →
    ``−c·logp`` (equals AsymRE with baseline shift δ = c, see :func:`asymre`).

    With ρ = 1 and ``clip_mode="none"`` (or any mode: at ρ = 1 every token is inside the band) and weight none
    or IS, the gradient is the group-mean REINFORCE gradient −A·∇logp.

    Args:
        logp: current log-probs of the sampled tokens, float [B, T], carries the gradient.
        rollout: needs ``mask``; ``old_logp`` [B, T] unless clip_mode, weight and regularizer are all "none"
            (then ρ = 1 is used).
        advantages: float [B, T] (REC: ``dr_grpo``, r − mean_G r).
        aggregation, num_tokens, num_seqs, norm_constant: see :mod:`grpolab.core.aggregation`; the paper uses
            ``token_mean``.
        clip_mode: ``none`` (paper default in gsm8k.yaml), ``one-side`` (REC-OneSide), ``two-side``, ``ring``.
        epsilon_low, epsilon_high: inner clip band; paper default 0.2 / 0.2, usually 0.1 to 0.3 (wide: 0.6 / 2.0).
        epsilon_low_prime, epsilon_high_prime: ring edges and IS truncation; paper default 0.6 / 2.0.
        weight: ``none`` (default), ``importance_sampling``, ``truncated_importance_sampling``, ``advantage``.
        temperature: τ of RED-Weight; paper default 1.0, usually 0.5 to 2 (> 0).
        regularizer: ``none`` (default), ``k2``, ``forward-kl``.
        regularizer_coef: c; default 0.0, the README's REP runs use 0.1 (usually 0.01 to 0.3).

    Returns:
        (loss, metrics): ``loss``, ``adv_mean``, ``clip_frac`` (valid tokens with M = 0), ``ratio_mean``,
        ``ratio_min``, ``ratio_max``, ``approx_kl`` (k3 of KL(π_old ‖ π_θ)), ``weight_mean`` (mean of w over
        valid tokens).

    RED-Weight hand value: A = 0.5, τ = 1, logp = −1 → w = 0.5·e^0.5 = 0.82436, loss = 0.82436.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 1, dtype=torch.bool), reward=torch.zeros(1),
    ...             old_logp=torch.full((1, 1), -1.0))
    >>> loss, m = rec(torch.full((1, 1), -1.0), r, torch.full((1, 1), 0.5), weight="advantage")
    >>> round(loss.item(), 5)
    0.82436
    """
    check_choice("rec", "clip_mode", clip_mode, REC_CLIP_MODES)
    check_choice("rec", "weight", weight, REC_WEIGHTS)
    check_choice("rec", "regularizer", regularizer, REC_REGULARIZERS)
    _positive("rec", "epsilon_low", epsilon_low, at_most=1.0)
    _positive("rec", "epsilon_high", epsilon_high)
    _positive("rec", "epsilon_low_prime", epsilon_low_prime, at_most=1.0)
    _positive("rec", "epsilon_high_prime", epsilon_high_prime)
    _positive("rec", "temperature", temperature)
    if isinstance(regularizer_coef, bool) or not isinstance(regularizer_coef, (int, float)) or regularizer_coef < 0:
        raise ValueError(f"rec: regularizer_coef must be a number >= 0 (usually 0.01 to 0.3), got {regularizer_coef!r}")
    needs_old = clip_mode != "none" or weight in ("importance_sampling", "truncated_importance_sampling")
    needs_old = needs_old or regularizer == "k2"
    mask, logp, old, adv = _prepare("rec", logp, rollout, advantages, needs_old=needs_old)
    if old is None:  # nothing reads ρ: use ρ = 1 (on-policy by construction)
        old = logp.detach() if rollout.old_logp is None else torch.where(mask, rollout.old_logp.to(logp), 0.0)
    log_ratio = (logp - old).detach()  # [B, T]; REC detaches the ratio
    ratio = torch.exp(log_ratio)  # [B, T]
    keep = rec_mask(
        ratio,
        adv,
        clip_mode=clip_mode,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        epsilon_low_prime=epsilon_low_prime,
        epsilon_high_prime=epsilon_high_prime,
    )  # [B, T]
    if weight == "importance_sampling":
        w = adv * ratio  # [B, T]
    elif weight == "truncated_importance_sampling":
        w = adv * torch.clamp(ratio, 1.0 - epsilon_low_prime, 1.0 + epsilon_high_prime)  # [B, T]
    elif weight == "advantage":
        w = adv * torch.exp(adv / temperature)  # [B, T]; RED-Weight: up-weight high-advantage samples
    else:
        w = adv  # [B, T]
    per_token = -w * logp * keep.to(logp.dtype)  # [B, T]
    if regularizer == "k2":
        # REP with Kimi's OPMD regularizer: a quadratic pull of log π towards log π_old
        per_token = per_token + regularizer_coef * (logp - old) ** 2  # [B, T]
    elif regularizer == "forward-kl":
        # REP as AsymRE: −c·log π raises every sampled token = shifting the baseline down by c
        per_token = per_token - regularizer_coef * logp  # [B, T]
    with torch.no_grad():
        metrics = _ratio_metrics(ratio, log_ratio, mask)
        metrics["clip_frac"] = masked_mean((~keep).to(ratio.dtype), mask).item()
        metrics["weight_mean"] = masked_mean(w, mask).item()
    return _finish(per_token, mask, adv, aggregation, num_tokens, num_seqs, norm_constant, metrics)


def _ratio_metrics(ratio: Tensor, log_ratio: Tensor, mask: Tensor) -> dict[str, float]:
    """ratio_mean / ratio_min / ratio_max and approx_kl (k3 of KL(π_old ‖ π_θ)) over valid tokens."""
    r = ratio.detach()  # [B, T]
    zeros = torch.zeros_like(r)  # [B, T]
    approx_kl = kl_estimate(zeros, log_ratio.detach(), estimator="k3")  # [B, T]
    return {
        "ratio_mean": masked_mean(r, mask).item(),
        "ratio_min": torch.where(mask, r, torch.full_like(r, math.inf)).min().item(),
        "ratio_max": torch.where(mask, r, torch.full_like(r, -math.inf)).max().item(),
        "approx_kl": masked_mean(approx_kl, mask).item(),
    }


@POLICY_LOSSES.register("opmd")
def opmd_loss(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    tau: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """Trinity's standalone OPMD loss ``−A·logp / (1 + τ)`` (Trinity ``opmd_policy_loss.py``; online policy
    mirror descent of Kimi k1.5, arXiv 2501.12599, Sec. 2.3.2; read as regularised REINFORCE in arXiv 2509.24203).

    Kimi's OPMD minimises ``Σ_i (r_i − τ log Z − τ log(π_θ(y_i)/π_old(y_i)))²``; at π_θ = π_old its gradient is
    proportional to the REINFORCE gradient with baseline τ log Z, and Trinity's loss keeps that direction scaled by
    1/(1 + τ) (its comment: "for regularization w.r.t. current pi_theta"). Per token ``l = −A·logp/(1 + τ)``,
    then aggregated (Trinity: token mean). ``rollout.old_logp`` is not read. Pair it with ``advantages`` from
    ``dr_grpo`` (mean baseline, Trinity's default) or ``ADVANTAGES["opmd"]`` (τ·logavgexp baseline, same τ).

    Args:
        logp, rollout, advantages, aggregation, num_tokens, num_seqs, norm_constant: as in ``reinforce``.
        tau: τ, the mirror-descent temperature; paper default 1.0, usually 0.1 to 10 (> 0).

    Returns:
        (loss, metrics) with ``loss`` and ``adv_mean``.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 1, dtype=torch.bool), reward=torch.zeros(1))
    >>> opmd_loss(torch.full((1, 1), -0.5), r, torch.full((1, 1), 2.0))[0].item()   # 2·0.5 / 2
    0.5
    """
    _positive("opmd", "tau", tau)
    mask, logp, _, adv = _prepare("opmd", logp, rollout, advantages, needs_old=False)
    per_token = -adv * logp / (1.0 + tau)  # [B, T]
    return _finish(per_token, mask, adv, aggregation, num_tokens, num_seqs, norm_constant, {})


# ---------------------------------------------------------------------------------------------------- advantages
def _broadcast(adv: Tensor, mask: Tensor) -> Tensor:
    """A sequence-level advantage [B] copied to every valid token, 0 elsewhere: [B, T]."""
    return torch.where(mask, adv[:, None], torch.zeros((), dtype=adv.dtype, device=adv.device))  # [B, T]


@ADVANTAGES.register("asymre")
def asymre(rollout: Rollout, *, delta: float = 0.1) -> Tensor:
    """AsymRE advantage ``A_i = r_i − (mean_G r − δ)``, broadcast to every valid token: float [B, T].

    Asymmetric REINFORCE for off-Policy Reinforcement Learning (Arnal et al., arXiv 2506.20520): a baseline
    slightly *below* the group mean puts more weight on positive samples, which keeps off-policy REINFORCE from
    collapsing; arXiv 2509.24203 shows it equals REC plus the forward-KL regularizer ``−δ·log π`` (Trinity
    ``asymre_advantage.py``, ``baseline_shift = −0.1``). So ``asymre − dr_grpo = δ`` for every completion,
    including a group of size 1 (there ``dr_grpo`` gives 0 and this gives δ; Trinity instead uses baseline 0,
    A = r, for a lone completion).

    Args:
        delta: δ, how far the baseline sits below the group mean; paper default 0.1 (Trinity's shift −0.1),
            usually 0 to 0.2 on 0/1 rewards. δ = 0 is ``dr_grpo``; δ < 0 is allowed (a pessimistic baseline).

    Hand check: rewards [1, 0, 0, 0] → mean 0.25, baseline 0.15 → [0.85, −0.15, −0.15, −0.15].
    """
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta):
        raise ValueError(f"asymre: delta must be a finite number (usually 0.1), got {delta!r}")
    r, g, P = rollout.reward, rollout.group, rollout.num_groups  # [B], [B], int
    adv = r - (group_mean(r, g, P)[g] - delta)  # [B]; AsymRE: baseline = group mean − δ
    return _broadcast(adv, rollout.mask)  # [B, T]


@ADVANTAGES.register("opmd")
def opmd(rollout: Rollout, *, tau: float = 1.0) -> Tensor:
    """OPMD's soft baseline ``A_i = r_i − τ·log( mean_{j∈G} exp(r_j / τ) )``, broadcast over valid tokens: [B, T].

    Kimi k1.5 (arXiv 2501.12599, Sec. 2.3.2): the optimum of the KL-regularised step is π* ∝ π_old·exp(r/τ), whose
    normaliser τ log Z is estimated from the group as τ·logavgexp(r/τ) (Trinity ``opmd_advantage.py``,
    ``opmd_baseline="logavgexp"``). The baseline lies between the group mean (τ → ∞; that limit is ``dr_grpo``,
    Trinity's default ``opmd_baseline="mean"``) and the group max (τ → 0), so advantages are ≤ those of
    ``dr_grpo``. Computed stably as ``m + τ·log mean exp((r − m)/τ)`` with m the group max. A group of size 1 has
    baseline r, so A = 0 (Trinity: baseline 0, A = r).

    Args:
        tau: τ, the same temperature as the ``opmd`` loss; paper default 1.0, usually 0.1 to 10 (> 0).

    Hand check (τ = 1): rewards [1, 0] → baseline log((e + 1)/2) = 0.62011 → [0.37989, −0.62011].

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0]))
    >>> [round(a, 5) for a in opmd(r)[:, 0].tolist()]
    [0.37989, -0.62011]
    """
    _positive("opmd", "tau", tau)
    r, g, P = rollout.reward, rollout.group, rollout.num_groups  # [B], [B], int
    top = torch.full((P,), -math.inf, dtype=r.dtype, device=r.device).scatter_reduce(0, g, r, reduce="amax")  # [P]
    # τ·logavgexp(r/τ) with the group max factored out so exp never overflows
    baseline = top + tau * torch.log(group_mean(torch.exp((r - top[g]) / tau), g, P))  # [P]
    return _broadcast(r - baseline[g], rollout.mask)  # [B, T]


# ---------------------------------------------------------------------------------------------------- selector
@SELECTORS.register("min_abs_advantage")
def min_abs_advantage(
    rollout: Rollout, advantages: Tensor, *, threshold: float = 0.01
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """LOOP's advantage filter: tokens (so rollouts) with |A| < threshold leave the loss.

    Reinforcement Learning for Long-Horizon Interactive LLM Agents (Chen et al., arXiv 2502.01600, Sec. 4; code
    apple/ml-loop ``_filter_rollouts`` with ``abs_adv_threshold = 0.01``): a rollout whose leave-one-out advantage
    is ~0 carries no gradient, so dropping it saves compute. The test is per token, ``keep = mask & |A| ≥
    threshold`` (LOOP keeps ``|A| ≥ threshold``); with a sequence-level advantage (rloo) that drops whole
    rollouts, and a rollout with no kept token leaves the batch. When every rollout is dropped the trainer has
    nothing to train on for that step. The advantages are returned unchanged (0 where dropped).

    LOOP's code divides each mini-batch loss by the *configured* mini-batch size, not by the number of rollouts
    left after filtering; a trainer that normalises by the kept count scales the update by B / B_kept.

    Args:
        rollout: needs ``mask``.
        advantages: float [B, T].
        threshold: paper default 0.01 (on 0/1 task-completion rewards), usually 0 to 0.05; 0 keeps everything.

    Returns:
        (advantages [B, T], keep bool [B, T], metrics) with ``selector/min_abs_advantage_dropped_frac`` (fraction
        of completions left with no kept token).

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0, 0, 0]), mask=torch.tensor([[1, 1], [1, 0], [1, 1]]).bool(),
    ...             reward=torch.zeros(3))
    >>> _, keep, m = min_abs_advantage(r, torch.tensor([[0.5, 0.5], [0.005, 0.0], [-0.02, -0.02]]))
    >>> keep.tolist(), round(m["selector/min_abs_advantage_dropped_frac"], 4)
    ([[True, True], [False, False], [True, True]], 0.3333)
    """
    _token_advantages("min_abs_advantage", rollout, advantages)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"min_abs_advantage: threshold must be a number >= 0 (usually 0.01), got {threshold!r}")
    mask = rollout.mask  # [B, T]
    adv = torch.where(mask, advantages, torch.zeros_like(advantages))  # [B, T]; padding may hold garbage
    keep = mask & (adv.abs() >= threshold)  # [B, T]
    dropped = ~keep.any(dim=-1)  # [B]
    metrics = {"selector/min_abs_advantage_dropped_frac": dropped.float().mean().item()}
    return torch.where(keep, adv, torch.zeros_like(adv)), keep, metrics
