"""Policy losses (surrogates on log-probs, minimised) and PPO's clipped value loss.

Every entry of :data:`POLICY_LOSSES` has the signature::

    fn(logp [B, T], rollout, advantages [B, T], *, aggregation="token_mean", num_tokens=None, num_seqs=None,
       norm_constant=None, <hyper-parameters>) -> (loss 0-dim tensor, metrics dict[str, float])

``logp`` holds the current policy's log-probs of the sampled tokens and carries the gradient;
``rollout.old_logp`` holds the behaviour policy's (needed by the ratio losses; for a fully on-policy update
pass ``old_logp = logp.detach()``, which gives ratio 1 without a second forward pass). The per-token loss is
reduced with :func:`grpolab.core.aggregation.aggregate` (``aggregation`` names the mode; the counts go straight
through, see that module for the micro-batch rule).

Conventions (shared by every loss here):

- Masked positions of ``logp``, ``old_logp`` and ``advantages`` are replaced by 0 with ``torch.where`` before
  any arithmetic, so garbage there (huge values, NaN) reaches neither the loss, the metrics nor the gradient;
  the gradient at masked positions is exactly 0.
- ``advantages`` and ``old_logp`` are constants (detached); only ``logp`` gets a gradient.
- The log-ratio is not clamped (verl clamps it to ±20 for safety; here the formulas are exact).
- A token is "clipped" when the clipped branch is strictly the larger one, ``−A·clip(ρ) > −A·ρ`` (verl's
  ``pg_clipfrac``); ties (ρ inside the band, or A = 0) count as unclipped. Clipped tokens get no gradient.
- Metrics are Python floats computed under ``torch.no_grad``; fractions and means are over the valid tokens of
  this (micro-)batch: ``loss``, ``adv_mean`` for every loss, and for ratio losses ``clip_frac``,
  ``clip_frac_low`` (ρ below the band, clip active: A < 0), ``clip_frac_high`` (ρ above, clip active: A > 0),
  ``dual_clip_frac`` (with ``dual_clip``), ``approx_kl`` (mean of (ρ − 1) − log ρ, the k3 estimate of
  KL(π_old ‖ π_θ), as CleanRL logs it), ``ratio_mean``, ``ratio_min``, ``ratio_max``.

>>> import math, torch
>>> from grpolab.core.types import Rollout
>>> mask = torch.tensor([[True, True]])
>>> logp = torch.tensor([[math.log(1.5), 0.0]], requires_grad=True)      # ratios 1.5 and 1
>>> r = Rollout(group=torch.tensor([0]), mask=mask, reward=torch.tensor([1.0]), old_logp=torch.zeros(1, 2))
>>> loss, m = POLICY_LOSSES["ppo_clip"](logp, r, torch.ones(1, 2))       # A = 1: tokens give -1.2 and -1
>>> round(loss.item(), 4), m["clip_frac"]
(-1.1, 0.5)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.aggregation import aggregate
from grpolab.core.kl import kl_estimate
from grpolab.core.registry import Registry
from grpolab.core.stats import masked_mean
from grpolab.core.types import Rollout

POLICY_LOSSES = Registry("policy loss")

Count = float | int | Tensor | None


# ---------------------------------------------------------------------------------------------------- helpers
def _zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` with masked positions set to 0 by selection (NaN-safe in value and gradient)."""
    return torch.where(mask, x, torch.zeros_like(x))  # [B, T]


def _check_token_tensor(loss: str, name: str, x: Tensor, mask: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{loss}: {name} must be a float tensor [B, T], got {type(x).__name__}")
    if x.shape != mask.shape:
        hint = "; broadcast a per-sequence advantage with adv[:, None].expand_as(mask)" if x.dim() == 1 else ""
        raise ValueError(
            f"{loss}: {name} must be [B, T] = {list(mask.shape)} like rollout.mask, got {list(x.shape)}{hint}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{loss}: {name} must be floating point, got {x.dtype}")


def _prepare(
    loss: str, logp: Tensor, rollout: Rollout, advantages: Tensor, *, needs_old: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Validate and return (mask, logp, old_logp, advantages) with padding zeroed; old/adv detached."""
    if not isinstance(rollout, Rollout):
        raise ValueError(f"{loss}: rollout must be a grpolab Rollout, got {type(rollout).__name__}")
    mask = rollout.mask  # [B, T]
    _check_token_tensor(loss, "logp", logp, mask)
    _check_token_tensor(loss, "advantages", advantages, mask)
    logp = _zero_padding(logp, mask)  # [B, T]
    adv = _zero_padding(advantages.detach(), mask)  # [B, T]
    old = None
    if needs_old:
        if rollout.old_logp is None:
            raise ValueError(
                f"{loss} needs rollout.old_logp (the behaviour policy's log-probs); for a fully on-policy "
                "update pass old_logp = logp.detach()"
            )
        old = _zero_padding(rollout.old_logp.detach().to(logp.dtype), mask)  # [B, T]
    return mask, logp, old, adv


def _check_eps(loss: str, name: str, value: float, *, below_one: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{loss}: {name} must be a positive number (the clip range), got {value!r}")
    if below_one and value >= 1:
        raise ValueError(
            f"{loss}: {name} must be < 1 so that the lower clip bound 1 - {name} stays positive, got {value}"
        )


def _check_dual_clip(loss: str, dual_clip: float | None) -> None:
    if dual_clip is None:
        return
    if isinstance(dual_clip, bool) or not isinstance(dual_clip, (int, float)) or not dual_clip > 1:
        raise ValueError(
            f"{loss}: dual_clip must be None (off) or a number > 1 (usually 3; 10 in some DAPO recipes), "
            f"got {dual_clip!r}"
        )


def _finish(
    per_token: Tensor,
    mask: Tensor,
    adv: Tensor,
    aggregation: str,
    num_tokens: Count,
    num_seqs: Count,
    norm_constant: Count,
    metrics: dict[str, float],
) -> tuple[Tensor, dict[str, float]]:
    loss = aggregate(
        per_token, mask, aggregation, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant
    )  # []
    with torch.no_grad():
        metrics["loss"] = loss.item()
        metrics["adv_mean"] = masked_mean(adv, mask).item()
    return loss, metrics


def _clipped_surrogate(
    ratio: Tensor,
    adv: Tensor,
    mask: Tensor,
    log_ratio: Tensor,
    *,
    epsilon_low: float,
    epsilon_high: float,
    dual_clip: float | None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped surrogate per token, max(−Aρ, −A·clip(ρ, 1−ε_low, 1+ε_high)), optional dual clip; metrics.

    ``log_ratio`` is log ρ by value (used for approx_kl); ``ratio`` carries the gradient.
    """
    unclipped = -adv * ratio  # [B, T]
    clipped = -adv * torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)  # [B, T]
    per_token = torch.maximum(unclipped, clipped)  # [B, T]; pessimistic bound (PPO, arXiv 1707.06347, Eq. 7)
    if dual_clip is not None:
        # Dual clip (Ye et al., arXiv 1912.09729): for A < 0 cap the loss at −c·A so that a huge ratio on a
        # bad action cannot blow up the update.
        capped = torch.minimum(per_token, -dual_clip * adv)  # [B, T]
        dual_active = (adv < 0) & (capped < per_token)  # [B, T]
        per_token = torch.where(adv < 0, capped, per_token)  # [B, T]

    with torch.no_grad():
        r = ratio.detach()  # [B, T]
        clip_active = clipped > unclipped  # [B, T]; ties are unclipped (verl's pg_clipfrac)
        metrics = {
            "clip_frac": masked_mean(clip_active.to(r.dtype), mask).item(),
            "clip_frac_low": masked_mean((clip_active & (r < 1.0 - epsilon_low)).to(r.dtype), mask).item(),
            "clip_frac_high": masked_mean((clip_active & (r > 1.0 + epsilon_high)).to(r.dtype), mask).item(),
        }
        if dual_clip is not None:
            metrics["dual_clip_frac"] = masked_mean(dual_active.to(r.dtype), mask).item()
        # (ρ − 1) − log ρ = k3 with "policy" old and "reference" new: KL(π_old ‖ π_θ) from samples of π_old.
        zeros = torch.zeros_like(log_ratio)  # [B, T]
        approx_kl = kl_estimate(zeros, log_ratio.detach(), estimator="k3")  # [B, T]
        metrics["approx_kl"] = masked_mean(approx_kl, mask).item()
        metrics["ratio_mean"] = masked_mean(r, mask).item()
        metrics["ratio_min"] = torch.where(mask, r, torch.full_like(r, math.inf)).min().item()
        metrics["ratio_max"] = torch.where(mask, r, torch.full_like(r, -math.inf)).max().item()
    return per_token, metrics


def _ratio_loss(
    name: str,
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    epsilon_low: float,
    epsilon_high: float,
    dual_clip: float | None,
    aggregation: str,
    num_tokens: Count,
    num_seqs: Count,
    norm_constant: Count,
) -> tuple[Tensor, dict[str, float]]:
    """The one implementation behind ``ppo_clip`` and ``clip_higher`` (token-level ratio)."""
    _check_eps(name, "epsilon_low" if name == "clip_higher" else "epsilon", epsilon_low, below_one=True)
    _check_eps(name, "epsilon_high" if name == "clip_higher" else "epsilon", epsilon_high, below_one=False)
    _check_dual_clip(name, dual_clip)
    mask, logp, old, adv = _prepare(name, logp, rollout, advantages, needs_old=True)
    assert old is not None
    log_ratio = logp - old  # [B, T]; 0 at padding
    ratio = torch.exp(log_ratio)  # [B, T]; ρ = π_θ / π_old
    per_token, metrics = _clipped_surrogate(
        ratio, adv, mask, log_ratio, epsilon_low=epsilon_low, epsilon_high=epsilon_high, dual_clip=dual_clip
    )
    return _finish(per_token, mask, adv, aggregation, num_tokens, num_seqs, norm_constant, metrics)


# ---------------------------------------------------------------------------------------------------- losses
@POLICY_LOSSES.register("ppo_clip", requires=("old_logp",))
def ppo_clip(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    epsilon: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped surrogate (Proximal Policy Optimization Algorithms, arXiv 1707.06347, Eq. 7), as in GRPO.

    Per token, with ρ = exp(logp − old_logp): ``l = max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε))``; with ``dual_clip``
    c (Mastering Complex Control in MOBA Games with Deep RL, Ye et al., arXiv 1912.09729): for A < 0,
    ``l = min(l, −c·A)``. Then aggregated with ``aggregation``.

    Args:
        logp: current log-probs of the sampled tokens, float [B, T], carries the gradient.
        rollout: needs ``mask`` and ``old_logp`` [B, T].
        advantages: float [B, T] (a per-sequence advantage broadcast over tokens is fine).
        aggregation, num_tokens, num_seqs, norm_constant: see :mod:`grpolab.core.aggregation`.
        epsilon: clip range ε; paper default 0.2, usually 0.1 to 0.3.
        dual_clip: c > 1 or None (off, default); usually 3.

    Returns:
        (loss, metrics); see the module docstring for the metrics.

    Worked example (A = 2 and A = −1, ρ = 1.5): −A·clip → −2.4 (clipped, no gradient) and −A·ρ → 1.5.

    >>> import math, torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool),
    ...             reward=torch.zeros(2), old_logp=torch.zeros(2, 1))
    >>> logp = torch.full((2, 1), math.log(1.5))
    >>> loss, m = ppo_clip(logp, r, torch.tensor([[2.0], [-1.0]]), aggregation="seq_mean_token_sum", num_seqs=1)
    >>> round(loss.item(), 4), m["clip_frac"]    # -2.4 + 1.5
    (-0.9, 0.5)
    """
    return _ratio_loss(
        "ppo_clip",
        logp,
        rollout,
        advantages,
        epsilon_low=epsilon,
        epsilon_high=epsilon,
        dual_clip=dual_clip,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        norm_constant=norm_constant,
    )


@POLICY_LOSSES.register("clip_higher", requires=("old_logp",))
def clip_higher(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.28,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """DAPO's Clip-Higher (DAPO: An Open-Source LLM Reinforcement Learning System at Scale, arXiv 2503.14476,
    Sec. 3.1): PPO's clipped surrogate with the asymmetric band clip(ρ, 1 − ε_low, 1 + ε_high).

    "DAPO change 1: decouple the clip range": a larger ε_high lets low-probability tokens grow more, which keeps
    entropy from collapsing. Per token ``l = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))`` (dual clip as in
    :func:`ppo_clip`). DAPO pairs it with ``aggregation="token_mean"`` (the default).

    Args:
        logp, rollout, advantages, aggregation, num_tokens, num_seqs, norm_constant: as in :func:`ppo_clip`.
        epsilon_low: lower clip range; paper default 0.2, usually 0.1 to 0.2.
        epsilon_high: upper clip range; paper default 0.28, usually 0.2 to 0.3.
        dual_clip: c > 1 or None (off, default); 10 in some DAPO-based recipes, usually 3.

    >>> import math, torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 1, dtype=torch.bool),
    ...             reward=torch.zeros(1), old_logp=torch.zeros(1, 1))
    >>> loss, m = clip_higher(torch.full((1, 1), math.log(1.25)), r, torch.full((1, 1), 2.0))  # inside [0.8, 1.28]
    >>> round(loss.item(), 4), m["clip_frac"]
    (-2.5, 0.0)
    """
    return _ratio_loss(
        "clip_higher",
        logp,
        rollout,
        advantages,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        dual_clip=dual_clip,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        norm_constant=norm_constant,
    )


def _gspo_token_ratio(logp: Tensor, old: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """GSPO-token ratio s_{i,t} = sg[s_i] · exp(logp_t − sg[logp_t]) [B, T], and log s_i [B].

    By value s_{i,t} = s_i at every position of row i; its gradient is s_i · ∇logp_t.
    """
    seq_log_ratio = masked_mean(logp - old, mask, dim=-1)  # [B]; log s_i, length-normalised as in GSPO
    # (logp − sg[logp]) is exactly 0 by value; bracketed so the sum is bit-identical for every token of a row.
    token_log_ratio = seq_log_ratio.detach()[:, None] + (logp - logp.detach())  # [B, T]
    return torch.exp(token_log_ratio), seq_log_ratio  # [B, T], [B]


@POLICY_LOSSES.register("gspo", requires=("old_logp",))
def gspo(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "seq_mean_token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    epsilon_low: float = 3e-4,
    epsilon_high: float = 4e-4,
) -> tuple[Tensor, dict[str, float]]:
    """GSPO (Group Sequence Policy Optimization, arXiv 2507.18071), implemented as its GSPO-token
    variant.

    Sequence ratio ``s_i = exp( Σ_t m·(logp − old) / Σ_t m )`` (the geometric mean of the token ratios, GSPO's
    change: importance weights at the level where the reward is given). GSPO-token uses
    ``s_{i,t} = sg[s_i] · exp(logp_t − sg[logp_t])`` (sg = stop-gradient), equal to s_i by value, and the per-token
    loss ``max(−A·s_{i,t}, −A·clip(s_{i,t}, 1 − ε_low, 1 + ε_high))``. With a sequence-level advantage and
    ``aggregation="seq_mean_token_mean"`` (the default) this equals the sequence-level GSPO objective
    ``mean_i max(−A_i s_i, −A_i clip(s_i, ...))`` in value and gradient; a token-level advantage gives GSPO-token
    proper. The whole sequence is clipped or not (the ratio is the same for all its tokens).

    Args:
        logp, rollout, advantages, aggregation, num_tokens, num_seqs, norm_constant: as in :func:`ppo_clip`;
            ``aggregation`` defaults to ``seq_mean_token_mean``.
        epsilon_low: lower clip range; paper default 3e-4 (sequence ratios are close to 1), usually 1e-4 to 1e-3.
        epsilon_high: upper clip range; paper default 4e-4, usually 1e-4 to 1e-3.

    Metrics as for the ratio losses (the ratio is s_i at each valid token; ``approx_kl`` is computed from the
    per-token ratios logp − old, the per-token k3 of KL(π_old ‖ π_θ)).

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.tensor([[True, True, False]]),
    ...             reward=torch.zeros(1), old_logp=torch.zeros(1, 3))
    >>> logp = torch.tensor([[0.1, -0.1, 5.0]])          # mean log-ratio over the 2 valid tokens: 0 -> s = 1
    >>> loss, m = gspo(logp, r, torch.full((1, 3), 1.0))
    >>> loss.item(), m["ratio_min"], m["ratio_max"]
    (-1.0, 1.0, 1.0)
    """
    _check_eps("gspo", "epsilon_low", epsilon_low, below_one=True)
    _check_eps("gspo", "epsilon_high", epsilon_high, below_one=False)
    mask, logp, old, adv = _prepare("gspo", logp, rollout, advantages, needs_old=True)
    assert old is not None
    ratio, _ = _gspo_token_ratio(logp, old, mask)  # [B, T]
    per_token, metrics = _clipped_surrogate(
        ratio, adv, mask, logp - old, epsilon_low=epsilon_low, epsilon_high=epsilon_high, dual_clip=None
    )
    return _finish(per_token, mask, adv, aggregation, num_tokens, num_seqs, norm_constant, metrics)


@POLICY_LOSSES.register("reinforce")
def reinforce(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE (Williams 1992, "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8): per-token loss ``−A·logp``, no ratio, no clip.

    Its gradient ``−A·∇logp`` is the gradient of every ratio loss at ratio 1 inside the clip band, so it is the
    on-policy reference (RLOO, ReMax and REINFORCE++ use it with their own advantages). ``rollout.old_logp`` is
    not needed. Metrics: ``loss``, ``adv_mean``.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.tensor([[True, False]]), reward=torch.zeros(1))
    >>> loss, m = reinforce(torch.tensor([[-0.5, 9.0]]), r, torch.tensor([[2.0, 7.0]]))   # -2 * -0.5
    >>> loss.item(), m["adv_mean"]
    (1.0, 2.0)
    """
    mask, logp, _, adv = _prepare("reinforce", logp, rollout, advantages, needs_old=False)
    per_token = -adv * logp  # [B, T]
    return _finish(per_token, mask, adv, aggregation, num_tokens, num_seqs, norm_constant, {})


# ---------------------------------------------------------------------------------------------------- critic
def value_loss(
    values: Tensor,
    rollout: Rollout,
    returns: Tensor,
    *,
    clip_eps: float | None = 0.2,
    finished_only: bool = False,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped value loss (arXiv 1707.06347; the clipping is from OpenAI baselines' ppo2).

    Per token ``½ · max((V − R)², (clip(V, V_old − ε_v, V_old + ε_v) − R)²)`` with ``V_old = rollout.value``
    (the critic at rollout time), then aggregated. ``clip_eps=None`` gives the plain ``½ (V − R)²`` and does not
    need ``rollout.value``. ``returns`` and ``rollout.value`` are constants (detached); padding is ignored as in
    the policy losses.

    Args:
        values: current critic values V, float [B, T], carries the gradient.
        rollout: needs ``mask``, and ``value`` [B, T] when clipping.
        returns: targets R (e.g. GAE returns A + V_old), float [B, T].
        clip_eps: ε_v, the value clip range; default 0.2 (as verl's ``cliprange_value``), usually 0.1 to 0.5,
            None to disable. Its scale is that of the returns.
        finished_only: train the critic only on completions that ended (``rollout.truncated`` False), as
            Truncated PPO (arXiv 2506.15050) does: a truncated response has no Monte-Carlo return. The tokens of
            truncated rows count 0 but stay in the normaliser (``num_tokens``), so micro-batches still sum to
            the mini-batch loss. Default False (PPO).
        aggregation, num_tokens, num_seqs, norm_constant: see :mod:`grpolab.core.aggregation`.

    Returns:
        (loss, metrics) with ``vf_loss`` (= loss), ``vf_clip_frac`` (valid tokens where the clipped branch is
        strictly larger; 0 without clipping) and ``value_mean`` (mean V over valid tokens).

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 1, dtype=torch.bool),
    ...             reward=torch.zeros(1), value=torch.zeros(1, 1))
    >>> V, R = torch.tensor([[0.9]]), torch.tensor([[1.0]])
    >>> loss, m = value_loss(V, r, R)          # clip(0.9, -0.2, 0.2) = 0.2: ½ (0.2 - 1)² = 0.32
    >>> round(loss.item(), 4), m["vf_clip_frac"]
    (0.32, 1.0)
    """
    if not isinstance(rollout, Rollout):
        raise ValueError(f"value_loss: rollout must be a grpolab Rollout, got {type(rollout).__name__}")
    mask = rollout.mask  # [B, T]
    _check_token_tensor("value_loss", "values", values, mask)
    _check_token_tensor("value_loss", "returns", returns, mask)
    v = _zero_padding(values, mask)  # [B, T]
    ret = _zero_padding(returns.detach(), mask)  # [B, T]
    sq = (v - ret) ** 2  # [B, T]
    if clip_eps is None:
        per_token = 0.5 * sq  # [B, T]
        clip_active = torch.zeros_like(mask)  # [B, T]
    else:
        if isinstance(clip_eps, bool) or not isinstance(clip_eps, (int, float)) or not clip_eps > 0:
            raise ValueError(f"value_loss: clip_eps must be None (no clipping) or > 0 (usually 0.2), got {clip_eps!r}")
        if rollout.value is None:
            raise ValueError(
                "value_loss with clip_eps needs rollout.value (the critic's values at rollout time); "
                "pass it, or clip_eps=None for the unclipped loss"
            )
        v_old = _zero_padding(rollout.value.detach().to(v.dtype), mask)  # [B, T]
        # PPO2's value clipping: the new value may move at most ε_v away from the rollout-time value.
        v_clipped = v_old + torch.clamp(v - v_old, -clip_eps, clip_eps)  # [B, T]
        sq_clipped = (v_clipped - ret) ** 2  # [B, T]
        per_token = 0.5 * torch.maximum(sq, sq_clipped)  # [B, T]
        clip_active = sq_clipped > sq  # [B, T]
    if finished_only and rollout.truncated is not None:
        per_token = per_token * (~rollout.truncated).to(per_token.dtype)[:, None]  # [B, T]
    loss = aggregate(
        per_token, mask, aggregation, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant
    )  # []
    with torch.no_grad():
        metrics = {
            "vf_loss": loss.item(),
            "vf_clip_frac": masked_mean(clip_active.to(v.dtype), mask).item(),
            "value_mean": masked_mean(v.detach(), mask).item(),
        }
    return loss, metrics
