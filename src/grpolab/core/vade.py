"""VADE's selection math: per-prompt Beta difficulty posteriors, Thompson draws scored by an information-gain proxy,
top-B selection, and the two-scale prior decay.

Paper: "VADE: Variance-Aware Dynamic Sampling via Online Sample-Level Difficulty Estimation for Multimodal RL"
(Hu et al., arXiv 2511.18902). What was read: the abstract, and the framework figure with its caption (project page
VADE-RL.github.io, ``asset/main_framework.png``, the paper's overview figure). The figure states every formula used
here:

- each sample i keeps (α_i, β_i): (decayed) counts of correct and incorrect rollouts; its correctness probability is
  Beta(α_i + 1, β_i + 1) (uniform before any rollout);
- Thompson sampling: draw p̃_i ~ Beta(α_i + 1, β_i + 1), score I_i = p̃_i (1 − p̃_i)², select the top-B scores;
- two-scale prior decay, applied after each step's rollouts (r correct of G):
  selected samples, "fast adaptation": α ← λ₁ α + r, β ← λ₁ β + G − r;
  unselected samples, "gradual decay": α ← λ₂ α, β ← λ₂ β.

The figure's worked example gives λ₁ = 0.2 ((0.1, 8.4) with 1 of 8 correct → (1.02, 8.68); (2.7, 5.3) with 4 of 8 →
(4.54, 5.06)) and λ₂ = 0.999 ((9.0, 0.2) → 8.991, …; its printed "β = 1.998" must be 0.1998). Whether these are also
the training defaults of the experiments was not verified (the method section's text was out of reach).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_decay(decay: float, name: str) -> None:
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (1 = no decay), got {decay!r}")


def _check_counts(alpha: Tensor, beta: Tensor) -> None:
    if alpha.shape != beta.shape:
        raise ValueError(f"alpha and beta need the same shape, got {tuple(alpha.shape)} and {tuple(beta.shape)}")
    if bool((alpha < 0).any()) or bool((beta < 0).any()):
        raise ValueError("alpha and beta are (decayed) counts of correct / incorrect rollouts and must be >= 0")


def posterior_mean(alpha: Tensor, beta: Tensor) -> Tensor:
    """Mean of Beta(α + 1, β + 1): the estimated pass rate (α + 1) / (α + β + 2) (VADE's per-sample posterior).

    Shapes: ``alpha``, ``beta`` [N] (any shape) -> [N].

    >>> posterior_mean(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0]))
    tensor([0.6667, 0.5000])
    """
    _check_counts(alpha, beta)
    return (alpha + 1.0) / (alpha + beta + 2.0)  # [N]


def info_gain(p: Tensor) -> Tensor:
    """VADE's information-gain proxy I(p) = p (1 − p)² (framework figure, "Calculate InfoGain").

    It vanishes at p = 0 and p = 1 (groups that are all wrong / all right carry no GRPO signal) and peaks at p = 1/3
    (dI/dp = (1 − p)(1 − 3p)), where I = 4/27: it is asymmetric and prefers harder-than-even prompts. The paper's
    ablation (Table 2) reports the symmetric p(1 − p) scoring 1.1 points lower.

    Shapes: ``p`` [N] in [0, 1] -> [N].

    >>> info_gain(torch.tensor([0.0, 1 / 3, 0.5, 1.0]))
    tensor([0.0000, 0.1481, 0.1250, 0.0000])
    """
    return p * (1.0 - p) ** 2  # [N]


def thompson_draw(alpha: Tensor, beta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """One Thompson sample p̃_i ~ Beta(α_i + 1, β_i + 1) per prompt (VADE's Thompson sampler).

    Drawn as X / (X + Y) with X ~ Gamma(α + 1), Y ~ Gamma(β + 1), which is how torch's own Beta distribution samples
    (through a Dirichlet); done here with ``torch._standard_gamma`` because, unlike ``torch.distributions.Beta``,
    it takes a ``generator``, so the draws are reproducible and resumable without touching the global RNG.
    Computed in float64. The concentrations are >= 1, so the draws are never degenerate.

    Shapes: ``alpha``, ``beta`` [N] -> [N] in (0, 1).

    >>> g = torch.Generator().manual_seed(0)
    >>> p = thompson_draw(torch.zeros(4), torch.zeros(4), generator=g)  # uniform priors
    >>> p.shape, bool(((p > 0) & (p < 1)).all())
    (torch.Size([4]), True)
    """
    _check_counts(alpha, beta)
    x = torch._standard_gamma(alpha.double() + 1.0, generator=generator)  # [N]
    y = torch._standard_gamma(beta.double() + 1.0, generator=generator)  # [N]
    return x / (x + y)  # [N]


def select_top(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest scores, best first; equal scores keep the lower index first (a stable sort, so
    the choice never depends on the sorting algorithm). VADE takes the top-B InfoGain scores as the next batch.

    Shapes: ``scores`` [N] -> long [min(k, N)].

    >>> select_top(torch.tensor([0.1, 0.3, 0.3, 0.2]), 3)
    tensor([1, 2, 3])
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    order = torch.sort(scores, descending=True, stable=True).indices  # [N]
    return order[:k]  # [min(k, N)]


def update_counts(
    alpha: Tensor, beta: Tensor, correct: Tensor, total: Tensor, *, decay_selected: float = 0.2
) -> tuple[Tensor, Tensor]:
    """The posterior update of the prompts just rolled out ("fast adaptation" of VADE's two-scale decay):
    α ← λ₁ α + r, β ← λ₁ β + (n − r), with r the correct rollouts out of n (soft when accuracies are fractional).

    Args:
        decay_selected: λ₁, the weight the old counts keep when a prompt is rolled out again (framework-figure
            example 0.2, unverified as the training default; 1 = plain Bayesian accumulation, 0 = keep only the
            latest group, the ablation's "last update"; usually 0.1 to 1).

    Shapes: ``alpha``, ``beta``, ``correct``, ``total`` [M] (the selected prompts) -> two [M].

    >>> update_counts(torch.tensor([0.1, 2.7]), torch.tensor([8.4, 5.3]), torch.tensor([1.0, 4.0]),
    ...               torch.tensor([8.0, 8.0]))  # the paper figure's example
    (tensor([1.0200, 4.5400]), tensor([8.6800, 5.0600]))
    """
    _check_counts(alpha, beta)
    _check_decay(decay_selected, "decay_selected")
    if bool((correct < 0).any()) or bool((correct > total).any()):
        raise ValueError("correct must lie in [0, total] (count correct rollouts, or sum accuracies in [0, 1])")
    new_alpha = decay_selected * alpha + correct  # [M]
    new_beta = decay_selected * beta + (total - correct)  # [M]
    return new_alpha, new_beta


def decay_counts(
    alpha: Tensor, beta: Tensor, steps: Tensor | int = 1, *, decay_unselected: float = 0.999
) -> tuple[Tensor, Tensor]:
    """The "gradual decay" of prompts that were not rolled out: α ← λ₂ α, β ← λ₂ β per step, so after ``steps`` idle
    steps both counts are multiplied by λ₂^steps. The mean moves toward 1/2 and the posterior widens, so stale
    estimates are re-explored by Thompson sampling.

    Args:
        decay_unselected: λ₂, per-step decay of an idle prompt's counts (framework-figure example 0.999, unverified
            as the training default; 1 = no decay; usually 0.99 to 1).

    Shapes: ``alpha``, ``beta`` [N]; ``steps`` an int or long [N] (>= 0) -> two [N].

    >>> decay_counts(torch.tensor([9.0, 3.0]), torch.tensor([0.2, 0.0]), torch.tensor([1, 2]), decay_unselected=0.5)
    (tensor([4.5000, 0.7500]), tensor([0.1000, 0.0000]))
    """
    _check_counts(alpha, beta)
    _check_decay(decay_unselected, "decay_unselected")
    steps = torch.as_tensor(steps, device=alpha.device)
    if bool((steps < 0).any()):
        raise ValueError("steps (idle steps since the last update) must be >= 0")
    factor = torch.pow(torch.as_tensor(decay_unselected, dtype=alpha.dtype, device=alpha.device), steps)  # [N]
    return alpha * factor, beta * factor  # [N], [N]


def vade_step(
    alpha: Tensor,
    beta: Tensor,
    selected: Tensor,
    correct: Tensor,
    total: Tensor,
    *,
    decay_selected: float = 0.2,
    decay_unselected: float = 0.999,
) -> tuple[Tensor, Tensor]:
    """One step of the two-scale prior decay over every prompt, as the framework figure draws it: the selected
    prompts get ``update_counts`` (λ₁ and their new rollouts), all others ``decay_counts`` by one step (λ₂).

    A sampler may apply the λ₂ decay lazily (multiply by λ₂^(idle steps) when a prompt is read); that equals
    calling this function every step.

    Shapes: ``alpha``, ``beta`` [N]; ``selected`` long [M] (distinct prompt indices); ``correct``, ``total`` [M]
    -> two [N].

    >>> a, b = vade_step(torch.tensor([0.1, 9.0]), torch.tensor([8.4, 2.0]), torch.tensor([0]),
    ...                  torch.tensor([1.0]), torch.tensor([8.0]))
    >>> a, b
    (tensor([1.0200, 8.9910]), tensor([8.6800, 1.9980]))
    """
    if selected.unique().numel() != selected.numel():
        raise ValueError("selected must hold distinct prompt indices")
    new_alpha, new_beta = decay_counts(alpha, beta, 1, decay_unselected=decay_unselected)  # [N], [N]
    sel_alpha, sel_beta = update_counts(
        alpha[selected], beta[selected], correct, total, decay_selected=decay_selected
    )  # [M], [M]
    new_alpha = new_alpha.index_copy(0, selected, sel_alpha)  # [N]
    new_beta = new_beta.index_copy(0, selected, sel_beta)  # [N]
    return new_alpha, new_beta
