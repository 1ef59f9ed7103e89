"""Discriminative policy losses on sequence scores: DisCO and Reg-GRPO (DeepVideo-R1).

Both replace GRPO's clipped per-token surrogate by an objective on one number per completion, compared within the
group of its prompt:

- ``disco`` (DisCO: Reinforcing Large Reasoning Models with Discriminative Constrained Optimization, arXiv
  2505.12366): raise the scores of the positive completions of a prompt above those of its negatives (a mean
  difference, DisCO-b, or a log-mean-exp over the negatives, the DRO form), under a trust-region constraint
  KL(π_old‖π_θ) ≤ δ enforced by a squared-hinge penalty.
- ``reg_grpo`` (DeepVideo-R1: Video Reinforcement Fine-Tuning via Difficulty-aware Regressive GRPO, arXiv
  2506.07464): regress the group-normalised sequence log-ratio log π_θ/π_old onto the GRPO advantage (squared
  error, no min and no clip).

Both entries share the POLICY_LOSSES signature (see :mod:`grpolab.core.losses`) and its conventions: padding is
replaced by 0 with ``torch.where`` before any arithmetic (garbage or NaN there reaches neither value nor
gradient), ``old_logp`` and ``advantages`` are constants, metrics are Python floats.

Micro-batching. The trainer calls a loss on a micro-batch of the mini-batch and passes the mini-batch's counts
(``num_seqs``, ``num_tokens``). The presets set the trainer option ``minibatch_groups=True``, so every mini- and
micro-batch holds whole prompt groups, whatever ``minibatches`` and ``grad_accum``. Without it (the trainer's
default splits by completions) a group may be split; groups are formed from the completions present
(``rollout.group`` after ``Rollout.select``), a split group is compared only within each part, and the result is
then an approximation of the full-batch loss, finite and of the same scale. Per-group terms are weighted by
``n_g / num_seqs`` (``n_g`` the completions of the group present), so with whole groups of equal size G the
micro-batch losses sum to the mean over prompts of the mini-batch, as in both papers (with unequal groups, e.g.
after a filter, a group weighs by its size).

>>> import torch
>>> from grpolab.core.types import Rollout
>>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool),
...             reward=torch.tensor([1.0, 0.0]), old_logp=torch.zeros(2, 1))
>>> logp = torch.tensor([[-0.5], [-1.5]])           # one token each: scores s+ = -0.5, s- = -1.5
>>> loss, m = POLICY_LOSSES["disco"](logp, r, torch.zeros(2, 1), beta=0.0)
>>> loss.item()                                      # -(2 / 2) * (s+ - s-) = -1
-1.0
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.aggregation import AGGREGATIONS
from grpolab.core.checks import check_choice
from grpolab.core.kl import kl_estimate
from grpolab.core.losses import POLICY_LOSSES, _prepare
from grpolab.core.stats import group_count, group_mean, group_sum, masked_mean, masked_sum
from grpolab.core.types import Rollout

Count = float | int | Tensor | None

DISCO_VARIANTS = ("b", "dro")
DISCO_SCORES = ("log_l", "l_ratio")
DISCO_KL_ESTIMATORS = ("k1", "k3")


# ---------------------------------------------------------------------------------------------------- helpers
def _number(loss: str, name: str, value: float, *, low: float, strict: bool, hint: str) -> None:
    """Raise ValueError unless ``value`` is a finite real number above ``low`` (strictly when ``strict``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low)
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{loss}: {name} must be a finite number {bound} ({hint}), got {value!r}")


def _check_aggregation(aggregation: str) -> None:
    """An unknown mode raises the registry's UnknownNameError listing the known ones (same as every loss)."""
    AGGREGATIONS[aggregation]


def _seq_count(batch: int, num_seqs: Count) -> float | Tensor:
    """N_seq: the trainer's global completion count, or this batch's B; must be > 0."""
    if num_seqs is None:
        return float(batch)
    if isinstance(num_seqs, Tensor):
        if num_seqs.numel() != 1 or not bool((num_seqs > 0).all()):
            raise ValueError(f"num_seqs must be a positive number or 1-element tensor, got {num_seqs}")
        return num_seqs.reshape(())
    if isinstance(num_seqs, bool) or not isinstance(num_seqs, (int, float)) or not num_seqs > 0:
        raise ValueError(f"num_seqs must be a positive number (the mini-batch's completions), got {num_seqs!r}")
    return float(num_seqs)


def _tok_count(mask: Tensor, num_tokens: Count) -> float | Tensor:
    """N_tok: the trainer's global valid-token count, or this batch's; must be > 0."""
    if num_tokens is None:
        return mask.sum().clamp(min=1)
    if isinstance(num_tokens, Tensor):
        if num_tokens.numel() != 1 or not bool((num_tokens > 0).all()):
            raise ValueError(f"num_tokens must be a positive number or 1-element tensor, got {num_tokens}")
        return num_tokens.reshape(())
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, float)) or not num_tokens > 0:
        raise ValueError(f"num_tokens must be a positive number (the mini-batch's valid tokens), got {num_tokens!r}")
    return float(num_tokens)


def _group_logmeanexp(x: Tensor, member: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """log( mean_{i in g, member_i} exp(x_i) ) per group, float [P]; 0 for groups without a member.

    Exact value and gradient via ``torch.logsumexp`` over a [P, B] matrix with −inf outside the group. A group
    without members gets a row of zeros instead (a row of −inf would give a NaN gradient), then 0.
    """
    P, B = num_groups, x.shape[0]
    owner = (group[None, :] == torch.arange(P, device=x.device)[:, None]) & member[None, :]  # [P, B]
    has = owner.any(dim=1)  # [P]
    neg_inf = torch.full((P, B), -math.inf, dtype=x.dtype, device=x.device)  # [P, B]
    rows = torch.where(owner, x[None, :].expand(P, B), neg_inf)  # [P, B]
    rows = torch.where(has[:, None], rows, torch.zeros_like(rows))  # [P, B]; safe rows for empty groups
    count = owner.sum(dim=1).clamp(min=1).to(x.dtype)  # [P]
    lme = torch.logsumexp(rows, dim=1) - torch.log(count)  # [P]
    return torch.where(has, lme, torch.zeros_like(lme))  # [P]


# ---------------------------------------------------------------------------------------------------- DisCO
@POLICY_LOSSES.register("disco", requires=("old_logp",))
def disco(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "seq_mean_token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    variant: str = "b",
    score: str = "log_l",
    tau: float = 10.0,
    delta: float = 1e-4,
    beta: float = 1e3,
    threshold: float = 0.5,
    kl_estimator: str = "k1",
) -> tuple[Tensor, dict[str, float]]:
    """DisCO (DisCO: Reinforcing Large Reasoning Models with Discriminative Constrained Optimization, arXiv
    2505.12366): a discriminative objective on sequence scores under a KL trust region, minimised as
    ``−J + penalty``.

    Scores (per completion, a token mean): ``log_l`` s(o) = mean_t logp (the paper's log-likelihood score);
    ``l_ratio`` s(o) = mean_t exp(logp − old_logp) (the likelihood-ratio score). Within each group, positives
    are the completions with ``reward > threshold`` and negatives the others (binary rewards 1 / 0 with the
    default 0.5). With s̄+ the mean positive score of the group:

    - DisCO-b (``variant="b"``): J_g = s̄+ − mean_{o−} s(o−).
    - DisCO, DRO form (``variant="dro"``, the paper's main objective): J_g = s̄+ − τ·log mean_{o−} exp(s(o−)/τ),
      computed exactly (log-sum-exp). As τ → ∞ it tends to DisCO-b. The official code instead uses a surrogate
      whose value is off by a constant and whose gradient is the same; its L-ratio branch passes ``tau`` to the
      DisCO-b function by mistake (the DRO form is silently not used there). Here ``variant`` and ``score`` are
      independent: the DRO form is the paper's for both scores.

    Groups without both a positive and a negative are skipped but still counted: the objective is
    ``Σ_g n_g·J_g / N_seq`` (N_seq = ``num_seqs``), which for whole groups of equal size G is the code's
    ``Σ_{valid g} J_g / (number of prompts)``. ``advantages`` is not read (checked for shape only).

    Constraint KL(π_old‖π_θ) ≤ δ (the paper's trust region), KL = token mean over the mini-batch of
    ``old_logp − logp`` (``kl_estimator="k1"``, the code's ``kl`` type; ``"k3"`` is its ``low_var_kl``:
    ρ − 1 − log ρ). Penalty, as the official code implements it: ``sg(β·[KL − δ]_+) · KL`` (sg = stop-gradient).
    Its gradient is that of the squared hinge ``(β/2)·[KL − δ]_+²`` (the paper's penalty is a squared hinge
    weighted by β; the factor ½ is how the code's β = 1e3 acts, and it is kept so that β means what it means in
    the official scripts); its value is the code's (the returned loss and the ``kl_penalty`` metric are
    sg(β[KL−δ]_+)·KL, ``kl_hinge`` reports (β/2)[KL−δ]_+²).
    Micro-batching: the KL inside the penalty is ``Σ_micro kl_t / num_tokens`` (global count), so micro-batch
    penalties sum to the mini-batch one as long as the coefficient is the same in each; the coefficient
    β[KL − δ]_+ is estimated from the micro-batch's own token mean. When the hinge is inactive everywhere the
    penalty and its gradient are exactly 0, so the sum is exact; when it is active the penalty is nonlinear in the
    mini-batch KL and the sum is exact only with one micro-batch per mini-batch (``grad_accum=1``).

    Args:
        logp: current log-probs of the sampled tokens, float [B, T], carries the gradient.
        rollout: needs ``mask``, ``group``, ``reward`` and ``old_logp`` [B, T] (for the KL; on-policy pass
            ``old_logp = logp.detach()``).
        advantages: float [B, T], not read.
        aggregation, norm_constant: accepted for the common signature; not used (scores are token means by
            definition; the KL is a token mean over the mini-batch).
        num_tokens: valid tokens of the whole mini-batch (the KL's denominator); default this batch's.
        num_seqs: completions of the whole mini-batch (the objective's denominator); default B.
        variant: ``"b"`` (DisCO-b) or ``"dro"`` (DisCO, the paper's recommended form).
        score: ``"log_l"`` (paper's recommended) or ``"l_ratio"``.
        tau: τ of the DRO form; paper default 10 for log-L (1 for L-ratio), usually 1 to 10; > 0.
        delta: δ, the KL budget; paper default 1e-4, usually 1e-4 to 1e-3; >= 0.
        beta: β, the penalty weight; paper default 1e3, usually 1e2 to 1e3; >= 0 (0 disables the constraint).
        threshold: rewards above it are positive; default 0.5 (binary 0 / 1 rewards; use 0 for ±1 rewards).
        kl_estimator: ``"k1"`` (code default, ``old − logp``) or ``"k3"`` (ρ − 1 − log ρ).

    Returns:
        (loss, metrics) with ``loss``, ``score_pos`` / ``score_neg`` (mean scores over valid groups),
        ``disco_valid_frac`` (groups with both kinds), ``kl_old`` (token-mean KL of this batch), ``kl_coef``
        (β[KL − δ]_+), ``kl_penalty`` and ``kl_hinge``.

    Worked example (τ = 1, δ = 0): one group, single-token completions with scores s = [−1, −2, −0.5] and
    rewards [1, 0, 0]. DisCO-b: J = −1 − (−1.25) = 0.25; DRO: J = −1 − log((e^−2 + e^−0.5)/2) ≈ −0.00827.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.zeros(3, dtype=torch.long), mask=torch.ones(3, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0, 0.0]), old_logp=torch.tensor([[-1.0], [-2.0], [-0.5]]))
    >>> logp = torch.tensor([[-1.0], [-2.0], [-0.5]])
    >>> round(disco(logp, r, torch.zeros(3, 1))[0].item(), 4)                          # -(3/3) * 0.25
    -0.25
    >>> round(disco(logp, r, torch.zeros(3, 1), variant="dro", tau=1.0)[0].item(), 5)
    0.00827
    """
    name = "disco"
    check_choice(name, "variant", variant, DISCO_VARIANTS)
    check_choice(name, "score", score, DISCO_SCORES)
    check_choice(name, "kl_estimator", kl_estimator, DISCO_KL_ESTIMATORS)
    _number(name, "tau", tau, low=0.0, strict=True, hint="DRO temperature; paper 10 for log-L, 1 for L-ratio")
    _number(name, "delta", delta, low=0.0, strict=False, hint="KL budget; paper 1e-4")
    _number(name, "beta", beta, low=0.0, strict=False, hint="penalty weight; paper 1e3, 0 disables it")
    _number(name, "threshold", threshold, low=-math.inf, strict=True, hint="rewards above it are positive")
    mask, logp, old, _ = _prepare(name, logp, rollout, advantages, needs_old=True)
    assert old is not None
    _check_aggregation(aggregation)
    n_seq = _seq_count(mask.shape[0], num_seqs)
    n_tok = _tok_count(mask, num_tokens)

    # Sequence scores, a token mean (DisCO Sec. 3: length-normalised so long completions are not favoured).
    if score == "log_l":
        seq_score = masked_mean(logp, mask, dim=-1)  # [B]
    else:
        ratio = torch.where(mask, torch.exp(logp - old), torch.zeros_like(logp))  # [B, T]; ρ = π_θ / π_old
        seq_score = masked_mean(ratio, mask, dim=-1)  # [B]

    group, P = rollout.group, rollout.num_groups
    reward = rollout.reward.detach().to(seq_score.dtype)  # [B]
    pos = reward > threshold  # [B]; DisCO's binary split (r = 1 positive, r = 0 negative)
    neg = ~pos  # [B]
    n_pos = group_sum(pos.to(seq_score.dtype), group, P)  # [P]
    n_neg = group_sum(neg.to(seq_score.dtype), group, P)  # [P]
    valid = (n_pos > 0) & (n_neg > 0)  # [P]; groups with both kinds carry a signal
    zeros = torch.zeros_like(seq_score)  # [B]
    pos_mean = group_sum(torch.where(pos, seq_score, zeros), group, P) / n_pos.clamp(min=1)  # [P]
    if variant == "b":
        neg_term = group_sum(torch.where(neg, seq_score, zeros), group, P) / n_neg.clamp(min=1)  # [P]
    else:
        # DRO form (DisCO Eq. for J_1): τ·log mean_{o−} exp(s/τ) up-weights the highest-scoring negatives.
        neg_term = tau * _group_logmeanexp(seq_score / tau, neg, group, P)  # [P]
    objective = torch.where(valid, pos_mean - neg_term, torch.zeros_like(pos_mean))  # [P]
    size = group_count(group, P).to(seq_score.dtype)  # [P]
    policy = -(size * objective).sum() / n_seq  # []; = −Σ_valid J_g / #prompts for whole equal groups

    # Trust region KL(π_old‖π_θ) ≤ δ by the squared hinge, as the code does: sg(β[KL − δ]_+)·KL.
    kl_tok = kl_estimate(old, logp, estimator=kl_estimator, mask=mask)  # [B, T]; k1 = old − logp
    kl_part = masked_sum(kl_tok, mask) / n_tok  # []; this micro-batch's share of the mini-batch KL
    kl_local = masked_mean(kl_tok, mask)  # []; the micro-batch's own estimate of the mini-batch KL
    coef = beta * torch.clamp(kl_local.detach() - delta, min=0.0)  # []; sg(β[KL − δ]_+)
    penalty = coef * kl_part  # []; gradient = that of (β/2)[KL − δ]_+²
    loss = policy + penalty  # []

    with torch.no_grad():
        n_valid = valid.sum().clamp(min=1).to(seq_score.dtype)  # []
        metrics = {
            "loss": loss.item(),
            "score_pos": (torch.where(valid, pos_mean, torch.zeros_like(pos_mean)).sum() / n_valid).item(),
            "score_neg": (torch.where(valid, neg_term, torch.zeros_like(neg_term)).sum() / n_valid).item(),
            "disco_valid_frac": valid.to(seq_score.dtype).mean().item(),
            "kl_old": kl_local.item(),
            "kl_coef": coef.item(),
            "kl_penalty": penalty.item(),
            "kl_hinge": (0.5 * beta * torch.clamp(kl_local - delta, min=0.0) ** 2).item(),
        }
    return loss, metrics


# ---------------------------------------------------------------------------------------------------- Reg-GRPO
def _safe_group_std(x: Tensor, group: Tensor, num_groups: int, ddof: int) -> Tensor:
    """Group standard deviation [P] whose gradient is finite (0) where the group variance is exactly 0.

    ``sqrt`` has an infinite derivative at 0, and the chain rule then multiplies it by 0 (NaN); the variance is
    passed through ``sqrt`` only where it is positive.
    """
    count = group_count(group, num_groups).to(x)  # [P]
    mean = group_sum(x, group, num_groups) / count  # [P]
    sq = group_sum((x - mean[group]) ** 2, group, num_groups)  # [P]
    denom = count - ddof  # [P]
    var = torch.where(denom > 0, sq / denom.clamp(min=1), torch.zeros_like(sq))  # [P]
    positive = var > 0  # [P]
    root = torch.sqrt(torch.where(positive, var, torch.ones_like(var)))  # [P]
    return torch.where(positive, root, torch.zeros_like(root))  # [P]


@POLICY_LOSSES.register("reg_grpo", requires=("old_logp",))
def reg_grpo(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "seq_mean_token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    eps: float = 1e-6,
    ddof: int = 1,
) -> tuple[Tensor, dict[str, float]]:
    """Reg-GRPO (DeepVideo-R1: Video Reinforcement Fine-Tuning via Difficulty-aware Regressive GRPO, arXiv
    2506.07464, Sec. 3): regress the group-normalised sequence log-ratio onto the GRPO advantage.

    ρ_i = Σ_t (logp − old_logp) (the log-ratio of the whole completion, log π_θ(o_i)/π_old(o_i));
    Â_θ,i = (ρ_i − mean_g ρ) / (std_g ρ + ε) (std with ``ddof``, ε outside the root as in GRPO's advantage);
    loss = Σ_i (Â_i − Â_θ,i)² / N_seq, the mean squared error over completions (the paper's "regression";
    reading it as squared error is this library's assumption: the equation images were not decoded). Â_i is the
    sequence advantage: the token mean of ``advantages`` over the valid tokens of completion i (the GRPO
    advantage broadcast by the ``grpo`` estimator). No min and no clip. The KL(π_θ‖π_ref) term (β = 0.1) is
    the preset's ``kl`` regularizer, not part of this function.

    Why it works: the KL-regularised optimum π* ∝ π_old·exp(R/λ) has log π*/π_old = R/λ − log Z(x); normalising
    both sides within the group cancels λ and Z(x), so the normalised log-ratio should equal the normalised
    reward, the GRPO advantage. The loss is invariant to adding a constant to every ρ of a group.

    Edge case (the paper's first inner step): when π_θ = π_old every ρ is 0 and std_g ρ = 0, so Â_θ = 0/ε = 0;
    the loss is finite (Σ Â²/N) and so is the gradient, −2·(Â_i − mean_g Â)/(ε·N) per ρ_i (the std's gradient
    is taken as 0 there). With one update per rollout (on-policy, the trainer default) every step is this case:
    the gradient is then GRPO's sequence-level policy gradient scaled by 2/(ε·N), and gradient clipping / Adam
    set its size. Tiny numerical differences between logp and old_logp (a separate forward pass) are amplified
    by the normalisation at that step, as in the paper.

    Micro-batching: the normalisation uses the completions of each group present in this call; with whole
    groups (the preset's ``minibatch_groups=True``, or ``minibatches=1`` and ``grad_accum=1``) micro-batch losses
    sum to the mini-batch loss exactly.

    Args:
        logp: current log-probs, float [B, T], carries the gradient.
        rollout: needs ``mask``, ``group`` and ``old_logp`` [B, T].
        advantages: float [B, T], the regression target (per sequence; use the ``grpo`` estimator).
        num_seqs: completions of the whole mini-batch (the mean's denominator); default B.
        aggregation, num_tokens, norm_constant: accepted for the common signature; not used (the loss is per
            sequence).
        eps: ε added to std_g ρ; default 1e-6 (GRPO's), usually 1e-8 to 1e-4; > 0.
        ddof: delta degrees of freedom of std_g ρ; default 1 (Bessel, as the ``grpo`` advantage), 0 or 1.

    Returns:
        (loss, metrics) with ``loss``, ``adv_mean`` (mean target), ``rho_abs_mean`` (mean |ρ|) and
        ``rho_std_mean`` (mean over groups of std_g ρ).

    Worked example (ε → 0): one group with ρ = [0.2, 0] and target Â = [0.7071, −0.7071] (rewards [1, 0]):
    std ρ = 0.1414 (ddof 1), Â_θ = [0.7071, −0.7071], loss 0.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.zeros(2, dtype=torch.long), mask=torch.ones(2, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0]), old_logp=torch.zeros(2, 1))
    >>> adv = torch.tensor([[0.5 ** 0.5], [-(0.5 ** 0.5)]])
    >>> round(reg_grpo(torch.tensor([[0.2], [0.0]]), r, adv)[0].item(), 8)
    0.0
    >>> round(reg_grpo(torch.zeros(2, 1), r, adv)[0].item(), 6)      # all ρ = 0: Â_θ = 0, loss = mean Â² = 0.5
    0.5
    """
    name = "reg_grpo"
    _number(name, "eps", eps, low=0.0, strict=True, hint="keeps the division finite; usually 1e-8 to 1e-4")
    if isinstance(ddof, bool) or ddof not in (0, 1):
        raise ValueError(f"{name}: ddof must be 0 or 1 (1 = Bessel's correction, as the grpo advantage), got {ddof!r}")
    mask, logp, old, adv = _prepare(name, logp, rollout, advantages, needs_old=True)
    assert old is not None
    _check_aggregation(aggregation)
    n_seq = _seq_count(mask.shape[0], num_seqs)

    rho = masked_sum(logp - old, mask, dim=-1)  # [B]; log π_θ(o)/π_old(o), summed over tokens
    target = masked_mean(adv, mask, dim=-1)  # [B]; the GRPO advantage Â_i (constant over the row)
    group, P = rollout.group, rollout.num_groups
    mean = group_mean(rho, group, P)  # [P]
    std = _safe_group_std(rho, group, P, ddof)  # [P]
    pred = (rho - mean[group]) / (std[group] + eps)  # [B]; Reg-GRPO's predicted advantage Â_θ
    loss = ((target - pred) ** 2).sum() / n_seq  # []; mean squared error, no min / clip (the paper's change)

    with torch.no_grad():
        metrics = {
            "loss": loss.item(),
            "adv_mean": target.mean().item(),
            "rho_abs_mean": rho.abs().mean().item(),
            "rho_std_mean": std.mean().item(),
        }
    return loss, metrics
