"""CurES: the math of its prompt sampling distribution and its rollout allocation (pure functions).

CurES: From Gradient Analysis to Efficient Curriculum Learning for Reasoning LLMs (Zeng, Sun et al., arXiv
2510.01037; official code ``ZexuSun/CurES``: ``epic/epic_sampler.py`` ``EpicSampler``,
``epic/stage_0_init_difficulty_sample_size.py`` ``EPICInitializer``, ``runs/scripts/run_epic.sh``). Per prompt:

1. **Difficulty posterior** (Beta-Binomial, uniform prior): c correct of N rollouts give
   ``p̂ = E[Beta(c + 1, N − c + 1)] = (c + 1)/(N + 2)`` (:func:`posterior_accuracy`).
2. **Sampling distribution** over prompts from p̂ and c (:func:`sampling_logits`, :func:`sampling_distribution`).
3. **Rollout allocation**: from N_min rollouts and the per-response gradient norms g = ‖∇_W −log π(y|x)‖ (W the
   embedding matrix in the code), a per-prompt gradient spread σ_i (:func:`allocation_sigma`), and
   ``n_i = round(B · N_max · σ_i / Σ_j σ_j)`` completions (:func:`rollout_allocation`).

The prompt sampler that uses them is ``grpolab.data.cures.CurESSampler`` (``SAMPLERS["cures"]``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.checks import check_choice, check_int
from grpolab.core.stats import group_count, group_sum

#: Sampling-distribution forms: ``"code"`` (EpicSampler, per-prompt temperature) and ``"entropy"`` (one temperature,
#: the Gibbs form an entropy-regularised objective gives; the paper's exact closed form was not verified).
FORMS = ("code", "entropy")


def _counts(correct: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """Validated float64 copies of the counts c [K] and N [K] (0 <= c <= N)."""
    if not isinstance(correct, Tensor) or not isinstance(total, Tensor) or correct.shape != total.shape:
        raise ValueError("cures: correct and total must be tensors of the same shape [K] (counts per prompt)")
    c, n = correct.double(), total.double()  # [K], [K]
    if bool((c < 0).any()) or bool((c > n).any()) or not bool(torch.isfinite(n).all()):
        raise ValueError(f"cures: counts need 0 <= correct <= total, got correct={c.tolist()}, total={n.tolist()}")
    return c, n


def posterior_accuracy(correct: Tensor, total: Tensor) -> Tensor:
    """The posterior mean accuracy ``p̂ = (c + 1)/(N + 2)`` of Beta(c + 1, N − c + 1) (uniform Beta(1, 1) prior).

    CurES (arXiv 2510.01037), Bayesian difficulty estimation; the code computes ``Beta(alpha + 1, beta + 1).mean``
    with alpha = "Accepted" (reward > 0.5) and beta = "All" − alpha. A prompt never rolled out has p̂ = 1/2.

    Args:
        correct: c, correct completions per prompt, float or long [K].
        total: N, completions per prompt, same shape.

    Returns float64 [K].

    >>> [round(p, 4) for p in posterior_accuracy(torch.tensor([0, 4, 0]), torch.tensor([4, 4, 0])).tolist()]
    [0.1667, 0.8333, 0.5]
    """
    c, n = _counts(correct, total)
    return (c + 1.0) / (n + 2.0)  # [K] Beta(c+1, N−c+1) mean


def sampling_logits(
    correct: Tensor, total: Tensor, *, form: str = "code", scale: float = 0.01, temperature: float = 1.0
) -> Tensor:
    """Unnormalised log sampling scores ``log score_i`` of CurES's prompt distribution (float64 [K]).

    ``form="code"`` (default, ``EpicSampler.__iter__``): ``score_i = exp(sqrt(p̂_i(1 − p̂_i)) / t_i)`` with a
    per-prompt temperature ``t_i = (c_i + 1)/scale`` (``scale`` = the code's ``1e-2``), so
    ``log score_i = scale · sqrt(p̂_i(1 − p̂_i)) / (c_i + 1)``. The temperature grows with the success count, so
    often-solved prompts get a flatter (lower) score. Note the size: sqrt(p̂(1 − p̂)) <= 1/2, so every log-score is
    at most ``scale/2`` = 0.005 and the code's distribution is within about 0.5 % of uniform — the curriculum of
    the code comes almost entirely from the rollout allocation (prompts with σ = 0 get no rollouts).

    ``form="entropy"``: ``log score_i = sqrt(p̂_i(1 − p̂_i)) / temperature``, one temperature for all prompts — the
    Gibbs (softmax) form an entropy-regularised choice of the prompt distribution gives, which favours p̂ near 1/2.
    The paper states a Fisher-information-derived closed form that favours p̂ near 1/2; its exact expression was
    not available here, so this option is a hypothesis (the code passes an ``entropy_param`` = 1.0 that it never
    uses; ``temperature`` defaults to that value).

    Args:
        correct, total: c and N per prompt (float or long [K]; 0 <= c <= N).
        form: ``"code"`` or ``"entropy"`` (see above).
        scale: the code's ``1e-2`` in ``t = (c + 1)/1e-2`` (form "code"); > 0; larger sharpens the distribution.
        temperature: the single temperature of form "entropy"; > 0, usually 0.05 to 1.

    Computed in log space: the distribution is ``softmax(logits)`` (:func:`sampling_distribution`), which never
    overflows whatever the scale.

    >>> [round(x, 6) for x in sampling_logits(torch.tensor([0, 4]), torch.tensor([4, 4])).tolist()]
    [0.003727, 0.000745]
    """
    check_choice("cures", "form", form, FORMS)
    if not scale > 0 or not temperature > 0:
        raise ValueError(f"cures: scale and temperature must be > 0, got scale={scale!r}, temperature={temperature!r}")
    p = posterior_accuracy(correct, total)  # [K] p̂, the posterior mean accuracy (validates the counts)
    c = correct.double()  # [K]
    spread = torch.sqrt(p * (1.0 - p))  # [K] Bernoulli std at p̂, peaks at p̂ = 1/2
    if form == "code":
        return spread * scale / (c + 1.0)  # [K] sqrt(p̂(1−p̂)) / t_i with t_i = (c_i + 1)/scale
    return spread / temperature  # [K]


def sampling_distribution(
    correct: Tensor, total: Tensor, *, form: str = "code", scale: float = 0.01, temperature: float = 1.0
) -> Tensor:
    """CurES's prompt sampling distribution ``P(i) = score_i / Σ_j score_j`` (float64 [K], sums to 1), computed
    stably as ``softmax(sampling_logits(...))``. Arguments as :func:`sampling_logits`.

    Example (form "code"): c = [0, 4], N = [4, 4] → p̂ = [1/6, 5/6], sqrt(p̂(1 − p̂)) = 0.372678 for both,
    log-scores [0.0037268, 0.0007454] (t = [100, 500]) → P = [0.500745, 0.499255]: the unsolved prompt is barely
    preferred. With ``form="entropy", temperature=0.1`` c = [2, 4] of 4 gives log-scores [5, 3.7268] → P = [0.7813,
    0.2187].

    >>> [round(x, 6) for x in sampling_distribution(torch.tensor([0, 4]), torch.tensor([4, 4])).tolist()]
    [0.500745, 0.499255]
    >>> d = sampling_distribution(torch.tensor([2, 4]), torch.tensor([4, 4]), form="entropy", temperature=0.1)
    >>> [round(x, 4) for x in d.tolist()]
    [0.7813, 0.2187]
    """
    logits = sampling_logits(correct, total, form=form, scale=scale, temperature=temperature)  # [K]
    return torch.softmax(logits, dim=0)  # [K] log-space normalisation: no exp overflow


def allocation_sigma(grad_norms: Tensor, correct: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Per prompt, CurES's gradient spread σ_i (float64 [P]) from its N_min estimation rollouts.

    ``σ_i² = a·b²·E[g_c²] + a²·b·E[g_w²] − a²·b²·(E[g_c] − E[g_w])²`` with ``a = c/n`` (the code's
    ``len(correct)/N_min``; here n = the group's size, N_min on an estimation round), ``b = 1 − a``, and g_c / g_w
    the gradient norms of the correct / wrong completions (``EPICInitializer.init_sample_size``, "eq. 127 in our
    paper"). σ_i = sqrt(max(σ_i², 0)): the expression is ``a·b·[b·E g_c² + a·E g_w² − a·b·(E g_c − E g_w)²]`` >=
    ``a·b·(b·E g_c + a·E g_w)²`` >= 0 by Jensen, so the clamp only absorbs rounding.

    A group with no correct (or no wrong) completion: the code defines the missing side's norms as ``[0]`` (mean 0,
    mean square 0); here too. Such a group has a = 0 (or b = 0), so σ = 0 either way: all-correct and all-wrong
    prompts get no rollouts.

    Args:
        grad_norms: g, per completion ‖∇_W −log π(y|x)‖, float [N] (>= 0).
        correct: whether each completion is correct (bool [N]; the code: reward > 0.5).
        group: prompt index of each completion, long [N] in [0, num_groups).
        num_groups: P.

    Example: norms [1, 3] correct and [2, 4] wrong: a = b = 1/2, E g_c² = 5, E g_w² = 10, E g_c = 2, E g_w = 3 →
    σ² = 0.5·0.25·5 + 0.25·0.5·10 − 0.0625·1 = 1.8125, σ = 1.34629.

    >>> g = torch.tensor([1.0, 3.0, 2.0, 4.0, 5.0, 5.0])
    >>> ok = torch.tensor([True, True, False, False, True, True])
    >>> [round(s, 5) for s in allocation_sigma(g, ok, torch.tensor([0, 0, 0, 0, 1, 1]), 2).tolist()]
    [1.34629, 0.0]
    """
    if grad_norms.shape != correct.shape or group.shape != grad_norms.shape or grad_norms.dim() != 1:
        raise ValueError(
            "cures: grad_norms, correct and group must be 1-D tensors of the same length [N] (one per completion), "
            f"got {list(grad_norms.shape)}, {list(correct.shape)}, {list(group.shape)}"
        )
    g = grad_norms.detach().double()  # [N]
    if not bool(torch.isfinite(g).all()) or bool((g < 0).any()):
        raise ValueError("cures: grad_norms must be finite and >= 0 (L2 norms)")
    ok = correct.bool()  # [N]
    okf = ok.double()  # [N] 1 for correct
    n = group_count(group, num_groups).double()  # [P]
    n_c = group_sum(okf, group, num_groups)  # [P] correct per prompt
    n_w = n - n_c  # [P] wrong per prompt
    # the code's [0] for a missing side: mean 0 and mean square 0 (the division is guarded, the factor a or b is 0)
    mean_c = group_sum(g * okf, group, num_groups) / n_c.clamp(min=1)  # [P] E[g_c]
    mean_w = group_sum(g * (1 - okf), group, num_groups) / n_w.clamp(min=1)  # [P] E[g_w]
    sq_c = group_sum(g.square() * okf, group, num_groups) / n_c.clamp(min=1)  # [P] E[g_c²]
    sq_w = group_sum(g.square() * (1 - okf), group, num_groups) / n_w.clamp(min=1)  # [P] E[g_w²]
    a = n_c / n.clamp(min=1)  # [P] the code's alpha = c / N_min
    b = 1.0 - a  # [P] the code's beta
    var = a * b**2 * sq_c + a**2 * b * sq_w - a**2 * b**2 * (mean_c - mean_w) ** 2  # [P] σ², eq. 127
    return var.clamp(min=0.0).sqrt()  # [P]


def rollout_allocation(sigma: Tensor, *, n_max: int, num_prompts: int | None = None) -> Tensor:
    """CurES's rollout counts ``n_i = round(B · N_max · σ_i / Σ_j σ_j)`` (long [K]).

    ``EPICInitializer.init_sample_size``: the rollout budget ``batch_size · num_rollout_max`` is shared in
    proportion to σ (rounded half to even, ``np.round``); a prompt with n_i = 0 is skipped (removed from its batch).
    The budget is met up to rounding (the code then pads the total to a multiple of the GPU count; not here). n_i is
    not capped at N_max (nor in the code).

    Convention (not in the code, where Σσ = 0 divides by zero): when every σ is 0 — no prompt has both a correct
    and a wrong estimation rollout — every prompt gets N_max (GRPO's uniform group size).

    Args:
        sigma: σ per prompt, float [K] (>= 0), :func:`allocation_sigma`.
        n_max: N_max, the average completions per prompt of the budget (script 8, argparse default 16; usually 4 to
            16); >= 1.
        num_prompts: B, prompts of the budget; default K (the prompts given, so Σ n_i ≈ K · N_max).

    Example: σ = [1, 1, 2], N_max = 4 → budget 12 → [3, 3, 6]; equal σ → N_max each.

    >>> rollout_allocation(torch.tensor([1.0, 1.0, 2.0]), n_max=4).tolist()
    [3, 3, 6]
    >>> rollout_allocation(torch.zeros(3), n_max=4).tolist()
    [4, 4, 4]
    """
    check_int("n_max", n_max, minimum=1, where="cures", hint="script 8")
    if sigma.dim() != 1 or sigma.numel() == 0:
        raise ValueError(f"cures: sigma must be a non-empty 1-D tensor [K], got shape {list(sigma.shape)}")
    s = sigma.detach().double()  # [K]
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("cures: sigma must be finite and >= 0")
    budget = (sigma.numel() if num_prompts is None else num_prompts) * n_max  # B · N_max rollouts
    total = s.sum()
    if total <= 0:
        return torch.full_like(s, n_max, dtype=torch.long)  # [K] no signal anywhere: GRPO's uniform N_max
    return torch.round(budget * s / total).long()  # [K] half to even, as np.round
