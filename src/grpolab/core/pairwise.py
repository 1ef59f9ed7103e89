"""Pairwise policy losses within a group: TRPA (preference levels) and P3O (pairwise proximal policy gradient).

- ``reward_levels`` (SHAPING) turns scalar rewards into TRPA's rule-based preference levels 1..K stored in
  ``rollout.extras["level"]`` (long [B], 1 = best).
- ``trpa`` (POLICY_LOSSES): Trust Region Preference Approximation (arXiv 2504.04524): a DPO-like loss on every
  within-group pair of different levels plus a trust-region KL(π_θ‖π_old).
- ``p3o`` (POLICY_LOSSES): Pairwise Proximal Policy Optimization (arXiv 2310.00212): a clipped pairwise policy
  gradient on sequence-level ratios, invariant to a per-prompt shift of the reward.

Both losses share the POLICY_LOSSES signature and conventions of :mod:`grpolab.core.losses` (padding replaced by 0
with ``torch.where`` before any arithmetic; ``old_logp``, ``ref_logp`` and rewards are constants).

Micro-batching. Pairs are formed only among the completions present in a call. The presets set the trainer option
``minibatch_groups=True``, so every mini- and micro-batch holds whole prompt groups and no pair is lost. Without it
(the trainer's default splits by completions) a group is whole only with ``minibatches=1`` and ``grad_accum=1``;
otherwise a group may be split, the pairs across parts are lost, and the loss, still finite and of the same
scale, is an approximation of the full-batch loss.

>>> import torch
>>> from grpolab.core.types import Rollout
>>> r = Rollout(group=torch.zeros(4, dtype=torch.long), mask=torch.ones(4, 1, dtype=torch.bool),
...             reward=torch.tensor([1.0, 0.0, -0.5, -1.0]))
>>> SHAPING["reward_levels"](r)[0].extras["level"].tolist()
[1, 2, 3, 4]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from grpolab.core.aggregation import aggregate
from grpolab.core.checks import check_choice
from grpolab.core.discriminative import _check_aggregation, _number, _seq_count
from grpolab.core.kl import kl_estimate
from grpolab.core.losses import POLICY_LOSSES, _prepare
from grpolab.core.shaping import SHAPING
from grpolab.core.stats import group_count, group_sum, masked_mean, masked_sum
from grpolab.core.types import Rollout

Count = float | int | Tensor | None

TRPA_FALLBACKS = ("batch", "group", "none")
P3O_CLIPS = ("joint", "separate")


# ---------------------------------------------------------------------------------------------------- levels
@SHAPING.register("reward_levels")
def reward_levels(
    rollout: Rollout,
    *,
    thresholds: Sequence[float] = (0.5, -0.25, -0.75),
) -> tuple[Rollout, dict[str, float]]:
    """TRPA's rule-based preference levels (Trust Region Preference Approximation, arXiv 2504.04524, Sec. 3.1)
    from the scalar reward, written to ``rollout.extras["level"]`` (long [B]); the reward is unchanged.

    TRPA ranks completions by rules: level 1 correct, 2 wrong answer, 3 unparseable answer, 4 format error
    (smaller is better). A task encodes those outcomes in its reward; ``thresholds`` (strictly decreasing) cut the
    reward into levels: level 1 if r ≥ t_1, level k if t_k ≤ r < t_{k−1}, level K + 1 if r < t_K. The default
    (0.5, −0.25, −0.75) maps a reward of 1 / 0 / −0.5 / −1 (correct / wrong / unparseable / format error) to
    1 / 2 / 3 / 4, and binary 1 / 0 rewards to levels 1 / 2. TRPA's own Knights-and-Knaves reward (3 / −0.5 /
    −1 / −3) needs thresholds (1.0, −0.75, −2.0). Fewer thresholds give fewer levels.

    Args:
        rollout: needs ``reward`` [B].
        thresholds: strictly decreasing finite numbers, at least one; default (0.5, −0.25, −0.75).

    Returns:
        (rollout with ``extras["level"]``, metrics ``levels/frac_k`` for k = 1..K+1).

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.zeros(4, dtype=torch.long), mask=torch.ones(4, 1, dtype=torch.bool),
    ...             reward=torch.tensor([3.0, -0.5, -1.0, -3.0]))
    >>> reward_levels(r, thresholds=(1.0, -0.75, -2.0))[0].extras["level"].tolist()
    [1, 2, 3, 4]
    """
    values = list(thresholds) if isinstance(thresholds, Sequence) and not isinstance(thresholds, str) else []
    numbers = all(not isinstance(t, bool) and isinstance(t, (int, float)) and math.isfinite(t) for t in values)
    if not values or not numbers or any(a <= b for a, b in itertools.pairwise(values)):
        raise ValueError(
            "reward_levels: thresholds must be a non-empty, strictly decreasing list of finite numbers "
            f"(level 1 at r >= the first), e.g. [0.5, -0.25, -0.75]; got {thresholds!r}"
        )
    reward = rollout.reward  # [B]
    cuts = torch.tensor(values, dtype=reward.dtype, device=reward.device)  # [K]
    level = 1 + (reward[:, None] < cuts[None, :]).sum(dim=1)  # [B]; long, 1 = best
    metrics = {f"levels/frac_{k}": (level == k).float().mean().item() for k in range(1, len(values) + 2)}
    return rollout.replace(extras={**rollout.extras, "level": level}), metrics


# ---------------------------------------------------------------------------------------------------- TRPA
def _levels(name: str, rollout: Rollout) -> Tensor:
    level = rollout.extras.get("level")
    B = rollout.batch_size
    if not isinstance(level, Tensor) or level.shape != (B,) or level.dtype not in (torch.int64, torch.int32):
        got = f"{level.dtype} {list(level.shape)}" if isinstance(level, Tensor) else type(level).__name__
        raise ValueError(
            f"{name} needs rollout.extras['level'], long [{B}] preference levels (1 = best); add the "
            f"'reward_levels' shaping part to the preset; got {got}"
        )
    if bool((level < 1).any()):
        raise ValueError(f"{name}: preference levels must be >= 1 (1 = best), got {sorted(set(level.tolist()))}")
    return level


@POLICY_LOSSES.register("trpa", requires=("old_logp", "ref_logp"))
def trpa(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    beta: float = 0.1,
    anisotropy: float = 2.5,
    tr_coef: float = 0.001,
    fallback: str = "batch",
) -> tuple[Tensor, dict[str, float]]:
    """TRPA (Trust Region Preference Approximation, arXiv 2504.04524): a preference loss over the within-group
    pairs of different rule-based levels, plus a trust-region KL to the behaviour policy.

    Score h(o) = mean_t (logp − ref_logp) (token means, as the official ``compute_pairwise_policy_loss``). For every
    pair (w, l) of one group with level_w < level_l (w is better; levels from ``rollout.extras["level"]``, see
    ``reward_levels``): z = β_w·(h(o_w) − h(o_l)) with β_w = anisotropy·β when o_w is level 1 (the KTO-style
    weighting of correct answers) and β otherwise. Policy term: mean over all pairs present of −log σ(z) (pairs of
    all groups pooled, as the code). Completions of equal level form no pair.

    Fallback when there is no pair (the code's rule, ``fallback="batch"``): if no pair exists in this call at all,
    the policy term is the mean over completions of −log σ(±h), + for level-1 completions (pushed above the
    reference) and − for the others (pushed below); β is not applied there, as in the code. ``"group"`` applies
    −log σ(±h) to every completion of a group whose present members share one level (the spec's reading), pooled
    with the pair terms into one mean; ``"none"`` drops such completions.

    Trust region (TRPA's change to DPO-style online training): ``tr_coef · KL(π_θ‖π_old)`` with the per-token
    low-variance k3 estimator, x = old_logp − logp, k3 = eˣ − x − 1 (verl's ``low_var_kl``; the official code
    clamps each token's k3 to [−10, 10], which acts only on tokens with k3 > 10; unclamped here, the plain KL),
    aggregated with ``aggregation`` (the preset uses ``token_mean``, the code's masked mean) and the trainer's
    counts. The code's optional sqrt(KL + 0.25) form is not implemented. The reference KL is only logged
    (``ref_kl``), as in the code's TRPA mode.

    Micro-batching: the pair mean is scaled by B_local / ``num_seqs``, so micro-batch losses add up to the pair mean
    of the mini-batch when the mini-batch is one call (``grad_accum=1``) and to a size-weighted average of
    per-micro-batch pair means otherwise (as verl's division by the accumulation steps); with the preset's
    ``minibatch_groups=True`` no pair is split across calls. The KL term sums exactly.

    Args:
        logp: current log-probs, float [B, T], carries the gradient.
        rollout: needs ``mask``, ``group``, ``old_logp``, ``ref_logp`` [B, T] and ``extras["level"]`` long [B].
        advantages: float [B, T], not read (checked for shape only).
        aggregation, num_tokens, norm_constant: the KL term's aggregation (see :mod:`grpolab.core.aggregation`).
        num_seqs: completions of the whole mini-batch; default B.
        beta: β of the pair logit; paper default 0.1, usually 0.05 to 0.5; > 0.
        anisotropy: factor on β for level-1 winners; paper default 2.5, usually 1 to 3; > 0.
        tr_coef: weight of the trust-region KL; paper default 0.001, usually 1e-4 to 1e-2; >= 0.
        fallback: ``"batch"`` (default, the code), ``"group"`` or ``"none"``; see above.

    Returns:
        (loss, metrics) with ``loss``, ``trpa_pairs`` (pairs in this call), ``trpa_fallback_frac`` (share of
        policy terms that are fallback terms), ``h_win`` / ``h_lose`` (mean h of winners / losers over pairs),
        ``tr_kl`` and ``ref_kl`` (token means of k3).

    Worked example: one group, levels [1, 2, 2, 4], h = [1, 0, 0, 0]: 5 pairs; the three level-1 pairs have
    z = 2.5·0.1·1 = 0.25, the two (2, 4) pairs z = 0; loss = (3·log(1 + e^−0.25) + 2·log 2)/5 ≈ 0.6228.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.zeros(4, dtype=torch.long), mask=torch.ones(4, 1, dtype=torch.bool),
    ...             reward=torch.zeros(4), old_logp=torch.tensor([[1.0], [0.0], [0.0], [0.0]]),
    ...             ref_logp=torch.zeros(4, 1), extras={"level": torch.tensor([1, 2, 2, 4])})
    >>> loss, m = trpa(torch.tensor([[1.0], [0.0], [0.0], [0.0]]), r, torch.zeros(4, 1))
    >>> round(loss.item(), 4), m["trpa_pairs"]
    (0.6228, 5.0)
    """
    name = "trpa"
    _number(name, "beta", beta, low=0.0, strict=True, hint="pair-logit scale; paper 0.1")
    _number(name, "anisotropy", anisotropy, low=0.0, strict=True, hint="β factor for level-1 winners; paper 2.5")
    _number(name, "tr_coef", tr_coef, low=0.0, strict=False, hint="trust-region KL weight; paper 0.001")
    check_choice(name, "fallback", fallback, TRPA_FALLBACKS)
    mask, logp, old, _ = _prepare(name, logp, rollout, advantages, needs_old=True)
    assert old is not None
    _check_aggregation(aggregation)
    if rollout.ref_logp is None:
        raise ValueError(f"{name} needs rollout.ref_logp (the reference model's log-probs; load a reference model)")
    ref = torch.where(mask, rollout.ref_logp.detach().to(logp.dtype), torch.zeros_like(logp))  # [B, T]
    level = _levels(name, rollout)  # [B]
    n_seq = _seq_count(mask.shape[0], num_seqs)

    h = masked_mean(logp - ref, mask, dim=-1)  # [B]; token-mean implicit reward log π_θ/π_ref
    group = rollout.group  # [B]
    same = group[:, None] == group[None, :]  # [B, B]
    pair = same & (level[:, None] < level[None, :])  # [B, B]; row i beats column j
    beta_w = torch.where(level == 1, torch.full_like(h, anisotropy * beta), torch.full_like(h, beta))  # [B]; KTPO
    z = beta_w[:, None] * (h[:, None] - h[None, :])  # [B, B]
    pair_terms = torch.where(pair, -F.logsigmoid(z), torch.zeros_like(z))  # [B, B]; −log σ(z)
    n_pairs = pair.sum()  # []
    sign = torch.where(level == 1, torch.ones_like(h), -torch.ones_like(h))  # [B]; + for level-1 (code convention)
    single = -F.logsigmoid(sign * h)  # [B]; fallback term −log σ(±h)
    if fallback == "batch":
        use_single = torch.full_like(level, int(n_pairs.item() == 0), dtype=torch.bool)  # [B]
    elif fallback == "group":
        # A completion in no pair is one of a group whose present members share one level.
        use_single = ~(pair | pair.T).any(dim=1)  # [B]
    else:
        use_single = torch.zeros_like(level, dtype=torch.bool)  # [B]
    n_single = use_single.sum()  # []
    n_terms = (n_pairs + n_single).clamp(min=1).to(h.dtype)  # []
    total = pair_terms.sum() + torch.where(use_single, single, torch.zeros_like(single)).sum()  # []
    policy = (total / n_terms) * (mask.shape[0] / n_seq)  # []; pair mean, scaled for micro-batch sums

    tr_tok = kl_estimate(logp, old, estimator="k3", mask=mask)  # [B, T]; KL(π_θ‖π_old), x = old − logp
    tr = aggregate(tr_tok, mask, aggregation, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant)
    loss = policy + tr_coef * tr  # []

    with torch.no_grad():
        n_p = n_pairs.clamp(min=1).to(h.dtype)  # []
        wins = pair.sum(dim=1).to(h.dtype)  # [B]; pairs won by each completion
        losses = pair.sum(dim=0).to(h.dtype)  # [B]; pairs lost
        ref_tok = kl_estimate(logp, ref, estimator="k3", mask=mask)  # [B, T]
        metrics = {
            "loss": loss.item(),
            "trpa_pairs": float(n_pairs.item()),
            "trpa_fallback_frac": (n_single.to(h.dtype) / n_terms).item(),
            "h_win": ((wins * h).sum() / n_p).item(),
            "h_lose": ((losses * h).sum() / n_p).item(),
            "tr_kl": masked_mean(tr_tok, mask).item(),
            "ref_kl": masked_mean(ref_tok, mask).item(),
        }
    return loss, metrics


# ---------------------------------------------------------------------------------------------------- P3O
def _clipped_term(log_ratio: Tensor, adv: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate −min(A·R, A·clip(R, 1 − ε, 1 + ε)) with R = exp(log_ratio), computed in log space.

    For A ≥ 0 it equals −A·min(R, 1 + ε) and for A < 0 it equals −A·max(R, 1 − ε), so the ratio is clamped in log
    space before ``exp``: no overflow and no 0·inf in the gradient of a clipped (constant) branch. Returns the term
    and whether the clip is active (strictly).
    """
    upper = math.log1p(epsilon)
    lower = math.log1p(-epsilon)
    clamped = torch.where(adv >= 0, torch.clamp(log_ratio, max=upper), torch.clamp(log_ratio, min=lower))
    return -adv * torch.exp(clamped), clamped != log_ratio


@POLICY_LOSSES.register("p3o", requires=("old_logp",))
def p3o(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "seq_mean_token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    epsilon: float = 0.2,
    clip: str = "joint",
) -> tuple[Tensor, dict[str, float]]:
    """P3O (Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment, arXiv
    2310.00212): a clipped pairwise policy gradient on sequence-level importance ratios.

    The pairwise policy gradient (Theorem 1) is E[(r(y1) − r(y2))·∇(log π(y1) − log π(y2))/2]: it depends only on
    reward differences, so it is invariant to adding δ(x) to every reward of a prompt. With the sequence ratios
    R_k = π_θ(y_k)/π_old(y_k) = exp(Σ_t (logp − old_logp)) (whole-trajectory ratios, the paper's trajectory-wise
    view) and the pair advantage A = (r(y1) − r(y2))/2, the two clipped versions of Sec. 4.2 are:

    - ``clip="separate"`` (P3O-V1): a PPO-clip term per response, with advantage +A for y1 and −A for y2:
      l = −min(A·R1, A·clip(R1)) − min(−A·R2, −A·clip(R2)).
    - ``clip="joint"`` (P3O-V2, default): one PPO-clip term on the pair's joint ratio. The pair is ordered winner
      first (as in the Bradley-Terry comparison), so with |A| = |r1 − r2|/2 and R_wl = R_w/R_l =
      π_θ(y_w)π_old(y_l) / (π_old(y_w)π_θ(y_l)): l = −min(|A|·R_wl, |A|·clip(R_wl)) = −|A|·min(R_wl, 1 + ε).

    clip(R) = clip(R, 1 − ε, 1 + ε). Both are symmetric in (y1, y2) and their gradient at θ = θ_old is the pairwise
    policy gradient above (negated: the loss is minimised). The exact formulas of Sec. 4.2 were not recovered; this
    is the reading stated in the preset notes. Rewards are read from ``rollout.reward`` (KL-shaped beforehand by the
    ``kl_reward`` shaping part in the preset); ``advantages`` is not read.

    Groups: P3O samples two responses per prompt. A group of n ≠ 2 completions contributes all its n(n−1)/2 pairs,
    averaged; a single completion contributes nothing. Each group's pair mean is weighted by n_g / N_seq, so with
    whole pairs (n_g = 2) the loss is the mean over prompts of the pair loss. With n > 2 the on-policy gradient is
    Σ_i (r_i − mean_g r)·∇log π(y_i)/(n − 1), a leave-one-out-like baseline.

    Args:
        logp: current log-probs, float [B, T], carries the gradient.
        rollout: needs ``mask``, ``group``, ``reward`` and ``old_logp`` [B, T].
        advantages: float [B, T], not read (checked for shape only).
        num_seqs: completions of the whole mini-batch; default B.
        aggregation, num_tokens, norm_constant: accepted for the common signature; not used.
        epsilon: ε of the ratio clip; default 0.2 (PPO's; the paper's value was not recovered), usually 0.1 to 0.3.
        clip: ``"joint"`` (P3O-V2, default: more stable, better KL-reward trade-off in the paper) or
            ``"separate"`` (P3O-V1).

    Returns:
        (loss, metrics) with ``loss``, ``p3o_pairs``, ``clip_frac`` (clipped terms among pair terms),
        ``log_ratio_mean`` (mean sequence log-ratio) and ``pair_adv_abs_mean`` (mean |A| over pairs).

    Worked example (joint, ε = 0.2): rewards (1, 0) so A = 0.5; sequence log-ratios (0.3, 0): R_wl = e^0.3 ≈ 1.35
    > 1.2, clipped: l = −0.5·1.2 = −0.6, over 1 prompt.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.zeros(2, dtype=torch.long), mask=torch.ones(2, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0]), old_logp=torch.zeros(2, 1))
    >>> loss, m = p3o(torch.tensor([[0.3], [0.0]]), r, torch.zeros(2, 1))
    >>> round(loss.item(), 6), m["clip_frac"]
    (-0.6, 1.0)
    """
    name = "p3o"
    _number(name, "epsilon", epsilon, low=0.0, strict=True, hint="the ratio clip range; usually 0.1 to 0.3")
    if epsilon >= 1:
        raise ValueError(f"{name}: epsilon must be < 1 so that the lower clip bound 1 - epsilon stays positive")
    check_choice(name, "clip", clip, P3O_CLIPS)
    mask, logp, old, _ = _prepare(name, logp, rollout, advantages, needs_old=True)
    assert old is not None
    _check_aggregation(aggregation)
    n_seq = _seq_count(mask.shape[0], num_seqs)

    s = masked_sum(logp - old, mask, dim=-1)  # [B]; log R = log π_θ(y)/π_old(y), the trajectory ratio
    reward = rollout.reward.detach().to(s.dtype)  # [B]
    group, P = rollout.group, rollout.num_groups
    B = s.shape[0]
    upper_tri = torch.ones(B, B, dtype=torch.bool, device=s.device).triu(diagonal=1)  # [B, B]; i < j
    pair = (group[:, None] == group[None, :]) & upper_tri  # [B, B]; each unordered pair once
    adv = 0.5 * (reward[:, None] - reward[None, :])  # [B, B]; A = (r_i − r_j)/2 (pairwise policy gradient)
    if clip == "separate":
        # P3O-V1: separate PPO-clip terms, +A on y_i and −A on y_j.
        t_i, c_i = _clipped_term(s[:, None].expand(B, B), adv, epsilon)  # [B, B]
        t_j, c_j = _clipped_term(s[None, :].expand(B, B), -adv, epsilon)  # [B, B]
        terms = t_i + t_j  # [B, B]
        clipped = (c_i.to(s.dtype) + c_j.to(s.dtype)) / 2  # [B, B]; share of the two terms clipped
    else:
        # P3O-V2: joint clip of the pair ratio R_w/R_l, winner first so the loss is symmetric in (y_i, y_j).
        sign = torch.where(adv >= 0, torch.ones_like(adv), -torch.ones_like(adv))  # [B, B]
        joint = sign * (s[:, None] - s[None, :])  # [B, B]; log(R_w / R_l)
        terms, c = _clipped_term(joint, adv.abs(), epsilon)  # [B, B]
        clipped = (c & (adv != 0)).to(s.dtype)  # [B, B]; a zero advantage is never "clipped"
    terms = torch.where(pair, terms, torch.zeros_like(terms))  # [B, B]
    pairs_per_row = pair.sum(dim=1).to(s.dtype)  # [B]
    n_group_pairs = group_sum(pairs_per_row, group, P)  # [P]; n_g (n_g − 1)/2
    group_total = group_sum(terms.sum(dim=1), group, P)  # [P]
    group_mean_loss = group_total / n_group_pairs.clamp(min=1)  # [P]
    size = group_count(group, P).to(s.dtype)  # [P]
    loss = (size * group_mean_loss).sum() / n_seq  # []; mean over prompts for whole pairs

    with torch.no_grad():
        n_pairs = pair.sum().clamp(min=1).to(s.dtype)  # []
        metrics = {
            "loss": loss.item(),
            "p3o_pairs": float(pair.sum().item()),
            "clip_frac": (torch.where(pair, clipped, torch.zeros_like(clipped)).sum() / n_pairs).item(),
            "log_ratio_mean": s.mean().item(),
            "pair_adv_abs_mean": (torch.where(pair, adv.abs(), torch.zeros_like(adv)).sum() / n_pairs).item(),
        }
    return loss, metrics
