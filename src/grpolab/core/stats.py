"""Small statistics over groups and masks shared by the core parts.

Conventions (documented once here, used everywhere):

- ``group_std`` uses ``ddof`` (default 1, Bessel's correction, as TRL and verl do); a group with no more
  than ``ddof`` members has std 0, so its normalised advantage is 0 rather than NaN.
- ``masked_whiten`` divides by ``sqrt(var + eps)`` with eps *inside* the root and the unbiased variance
  (verl's ``masked_whiten``), used for batch-level normalisation of token advantages.

>>> import torch
>>> x = torch.tensor([1.0, 0.0, 0.0, 0.0, 5.0])
>>> g = torch.tensor([0, 0, 0, 0, 1])
>>> group_mean(x, g, 2).tolist(), group_std(x, g, 2).tolist()
([0.25, 5.0], [0.5, 0.0])
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_count(group: Tensor, num_groups: int) -> Tensor:
    """Number of members of each group, float [P]."""
    return torch.bincount(group, minlength=num_groups).to(torch.get_default_dtype())  # [P]


def group_sum(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Sum of ``x`` (float [B]) within each group, float [P]."""
    return torch.zeros(num_groups, dtype=x.dtype, device=x.device).index_add(0, group, x)  # [P]


def group_mean(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Mean of ``x`` (float [B]) within each group, float [P].

    A group whose members are all equal gets exactly that value: the rounded float32 quotient sum / count can be
    an ulp off it, and a group of equal rewards must centre to exactly 0 (a constant group carries no signal;
    identical reward-model scores would otherwise get a spurious ± after division by a tiny std).

    >>> group_mean(torch.full((7,), 0.7), torch.zeros(7, dtype=torch.long), 1).item() == torch.tensor(0.7).item()
    True
    """
    count = group_count(group, num_groups).to(x)  # [P]
    mean = group_sum(x, group, num_groups) / count  # [P]
    high = group_max(x, group, num_groups)  # [P]
    return torch.where(high == group_min(x, group, num_groups), high, mean)  # [P]


def group_var(x: Tensor, group: Tensor, num_groups: int, *, ddof: int = 1) -> Tensor:
    """Variance of ``x`` (float [B]) within each group, ``Σ (x − mean)² / (n − ddof)``, float [P]; 0 for groups of
    size <= ddof.

    >>> group_var(torch.tensor([1.0, 0.0, 0.0, 0.0, 5.0]), torch.tensor([0, 0, 0, 0, 1]), 2, ddof=0).tolist()
    [0.1875, 0.0]
    """
    count = group_count(group, num_groups).to(x)  # [P]
    mean = group_mean(x, group, num_groups)  # [P]
    sq = group_sum((x - mean[group]) ** 2, group, num_groups)  # [P]
    denom = count - ddof  # [P]
    return torch.where(denom > 0, sq / denom.clamp(min=1), torch.zeros_like(sq))  # [P]


def group_std(x: Tensor, group: Tensor, num_groups: int, *, ddof: int = 1) -> Tensor:
    """Standard deviation of ``x`` (float [B]) within each group, float [P]; 0 for groups of size <= ddof."""
    return group_var(x, group, num_groups, ddof=ddof).sqrt()  # [P]


def group_max(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Largest ``x`` (float [B]) within each group, float [P]; -inf for a group with no member.

    >>> group_max(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0, 0, 1]), 2).tolist()
    [3.0, 2.0]
    """
    empty = torch.full((num_groups,), -torch.inf, dtype=x.dtype, device=x.device)  # [P]
    return empty.scatter_reduce(0, group, x, "amax")  # [P]


def group_min(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Smallest ``x`` (float [B]) within each group, float [P]; +inf for a group with no member."""
    return -group_max(-x, group, num_groups)  # [P]


def soft_counts(accuracy: Tensor) -> tuple[float, int]:
    """``(correct, total)`` evidence of one group's accuracies for a Bernoulli pass-rate estimate: ``correct`` is
    the sum of the accuracies clamped to [0, 1] (soft counts, so partial credit counts partly), ``total`` the number
    of them; NaN entries (failed rewards) carry no evidence and are skipped. Summed in float64 on the CPU.

    Used by the VADE (arXiv 2511.18902) and Fleming-R1 hard-mining (arXiv 2509.15279) prompt samplers.

    >>> soft_counts(torch.tensor([1.0, 0.5, float("nan"), 2.0, -1.0]))  # 1 + 0.5 + 1 + 0 of 4
    (2.5, 4)
    """
    acc = accuracy.detach().double().cpu()  # [G]
    acc = acc[~torch.isnan(acc)].clamp(0.0, 1.0)  # [G'] failed rewards carry no evidence
    return acc.sum().item(), acc.numel()


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is True (over all elements, or along ``dim``)."""
    x = torch.where(mask, x, torch.zeros_like(x))
    return x.sum() if dim is None else x.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` where ``mask`` is True (over all elements, or along ``dim``)."""
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: Tensor, mask: Tensor, *, ddof: int = 1) -> Tensor:
    """Variance of the elements of ``x`` where ``mask`` is True, with ``ddof`` (scalar)."""
    n = mask.sum().to(x.dtype)
    mean = masked_mean(x, mask)
    return masked_sum((x - mean) ** 2, mask) / (n - ddof).clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, *, ddof: int = 1, eps: float = 1e-8, shift_mean: bool = True) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the unmasked elements; masked positions are set to 0.

    Matches verl's ``masked_whiten`` (unbiased variance, eps inside the root). ``shift_mean=False`` only
    rescales (the mean is added back).
    """
    mean = masked_mean(x, mask)
    white = (x - mean) * torch.rsqrt(masked_var(x, mask, ddof=ddof) + eps)
    if not shift_mean:
        white = white + mean
    return torch.where(mask, white, torch.zeros_like(white))
