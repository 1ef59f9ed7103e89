"""CAPO: curvature-aware token selection from a last-layer model of the next update.

Stabilizing Policy Gradients for Sample-Efficient Reinforcement Learning in LLM Reasoning (Melo, Abate, Gal;
arXiv 2510.00819; code luckeciano/stable-pg-llm ``src/open_r1/grpo_entropy_trainer.py``). CAPO predicts, for each
completion token, how much the update that token asks for would move the objective (``m_H``) and the policy
(``m_F``), and removes from the loss the tokens whose predicted shifts are too large. The objective itself is
unchanged: masked tokens simply leave the loss.

**Curvature model** (only the LM head ``W`` [V, H] moves). A token with final hidden state ``h`` [H], sampled
token ``a`` and advantage ``A`` has logits ``z = W h' `` with ``h' = h / τ`` (τ the sampling temperature: the
trainer's log-probs are tempered, so the head acts on ``h / τ``), and ``p = softmax(z)`` restricted to a support
``S`` (the top-k tokens plus ``a``, renormalised, as the paper's code). With ``v = e_a − p`` the gradient of
``A·log p_a`` is ``g = A·v h'ᵀ`` (rows outside S are 0). The update is the preconditioned ascent step
``Δψ = P ⊙ g``: the step Adam would take for that gradient from the optimizer's state (``step_scale``: by default
with the token's own gradient in the second moment at a reference |A|, as the paper's prospective Adam model;
or ``P = lr / (sqrt(v̂) + eps)`` from the stored moment alone). Then, with the per-token, advantage-independent
coefficients

- ``s_k = Σ_h P_kh h'_h²`` (k in S), ``d = v ⊙ s`` (so the logit change is ``Δz = Δψ h' = A·d``),
- ``lin = vᵀd = Σ_k v_k² s_k`` (``gᵀΔψ = A²·lin``),
- ``quad = dᵀ(diag p − ppᵀ)d`` (``Δzᵀ F_z Δz = A²·quad``, F_z the softmax Fisher in logit space),

every shift is a polynomial in A (``shifts``):

- ``gᵀΔψ = A²·lin``;
- Hessian of the surrogate ``A·π/π_old`` (``hessian="policy"``, the paper's code: ``A·(∇logπ∇logπᵀ + ∇²logπ)``,
  the per-sample policy Hessian) gives ``½ΔψᵀHΔψ = ½A³(lin² − quad)``; the Hessian of ``A·log π``
  (``hessian="logp"``: ``−A·F``) gives ``−½A³·quad``. ``m_H = gᵀΔψ + ½ΔψᵀHΔψ``.
- Fisher: the sampled-token (empirical) Fisher ``∇logπ_a∇logπ_aᵀ`` (``fisher="empirical"``, the paper's code:
  ``s = vᵀ(G h)``, ``m_F = ½ lr² s²``) gives ``m_F = ½A²·lin²``; the exact softmax Fisher over S
  (``fisher="exact"``, the second-order KL(π_old‖π_new)) gives ``m_F = ½A²·quad``.

The selector ``capo`` keeps token t iff ``|m_H| < τ_H`` (``symmetric``; else ``0 ≤ m_H < τ_H``) and
``m_F < τ_F``; optional sequence- and batch-level tests do the same on reduced shifts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout

#: Hessian models of ``shifts``: "policy" (paper code, Hessian of A·π/π_old) and "logp" (Hessian of A·log π).
CAPO_HESSIANS = ("policy", "logp")
#: Fisher models of ``shifts``: "empirical" (paper code, sampled-token score outer product) and "exact".
CAPO_FISHERS = ("empirical", "exact")
#: How the sequence- and batch-level tests reduce the token shifts: "mean" (paper code) or "sum".
CAPO_REDUCTIONS = ("mean", "sum")


def adam_preconditioner(exp_avg_sq: Tensor, *, lr: float, step: int, beta2: float, eps: float = 1e-8) -> Tensor:
    """Adam's elementwise step size for a fresh gradient: ``P = lr / (sqrt(v / (1 − β2^step)) + eps)``.

    ``v`` is the optimizer's second moment (``exp_avg_sq``, any shape, here [V, H]) after ``step`` updates; the
    bias correction and the eps placement (outside the root) are those of ``torch.optim.Adam/AdamW``, so
    ``P ⊙ g`` is the step Adam takes when its first moment equals ``g``. Weight decay is left out (it does not
    depend on the token's gradient). CAPO (arXiv 2510.00819) models Δψ as the update Adam would take.

    Args:
        exp_avg_sq: Adam's second moment, float [...]; ``step`` must be >= 1 (no state before the first step:
            use SGD, ``P = lr``, instead, as the paper's code does).
        lr: learning rate of the next step (> 0). step: Adam steps taken (>= 1). beta2: in [0, 1). eps: > 0,
            Adam's epsilon (torch default 1e-8).

    Hand check: v = [2, 0], β2 = ½, one step → v̂ = [4, 0]; lr = 1, eps = ½ → P = 1 / [2.5, 0.5] = [0.4, 2].

    >>> p = adam_preconditioner(torch.tensor([2.0, 0.0]), lr=1.0, step=1, beta2=0.5, eps=0.5)
    >>> [round(x, 6) for x in p.tolist()]
    [0.4, 2.0]
    """
    if not lr > 0:
        raise ValueError(f"adam_preconditioner: lr must be > 0, got {lr!r}")
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"adam_preconditioner: step must be an int >= 1 (use P = lr before any step), got {step!r}")
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"adam_preconditioner: beta2 must be in [0, 1), got {beta2!r}")
    if not eps > 0:
        raise ValueError(f"adam_preconditioner: eps must be > 0, got {eps!r}")
    correction = 1.0 - beta2 ** int(step)
    return lr / ((exp_avg_sq.float() / correction).sqrt() + eps)  # [...]


def topk_support(logits: Tensor, tokens: Tensor, *, top_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The paper's restriction of the head to the top-k tokens, plus the sampled token when it is not among them.

    Returns ``(index [M, K+1] long, support_logits [M, K+1], action [M, K+1] bool)`` with ``K = min(top_k, V)``:
    columns 0..K-1 are the top-k tokens, column K is the sampled token. When the sampled token is already in the
    top-k, column K gets logit −inf (probability 0, so it adds nothing) and ``action`` marks the top-k column.
    ``top_k >= V`` gives the whole vocabulary (the exact model). The paper's code takes the top-k of the logits
    with k = the rollout's ``top_k`` (its sampler's support), so the sampled token is always inside.

    Args:
        logits: float [M, V]. tokens: long [M], the sampled tokens. top_k: >= 1 (paper: the rollout top-k).

    >>> idx, lg, act = topk_support(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([1]), top_k=2)
    >>> idx.tolist(), act.tolist()
    ([[0, 2, 1]], [[False, False, True]])
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"topk_support: top_k must be an int >= 1 (paper: the rollout's top-k, 50), got {top_k!r}")
    if logits.dim() != 2 or tokens.shape != logits.shape[:1]:
        raise ValueError(
            f"topk_support: logits must be [M, V] and tokens [M], got {list(logits.shape)}, {list(tokens.shape)}"
        )
    k = min(top_k, logits.shape[-1])
    top_logits, top_index = torch.topk(logits, k, dim=-1)  # [M, K]
    tokens = tokens.long()  # [M]
    inside = top_index == tokens[:, None]  # [M, K]
    absent = ~inside.any(dim=-1)  # [M]
    own = logits.gather(-1, tokens[:, None])  # [M, 1]
    # column K holds the sampled token only when the top-k misses it (else −inf: no probability, no gradient)
    extra = torch.where(absent[:, None], own, torch.full_like(own, -math.inf))  # [M, 1]
    index = torch.cat([top_index, tokens[:, None]], dim=-1)  # [M, K+1]
    support_logits = torch.cat([top_logits, extra], dim=-1)  # [M, K+1]
    action = torch.cat([inside, absent[:, None]], dim=-1)  # [M, K+1]
    return index, support_logits, action


def _score(probs: Tensor, action: Tensor) -> Tensor:
    """``v = e_a − p`` [..., K], its entry at a formed as ``Σ_{k≠a} p_k``: ``1 − p_a`` in fp32 loses every digit
    for a confident token (p_a → 1), the usual case, while the other probabilities keep their relative precision."""
    rest = torch.where(action, torch.zeros_like(probs), probs).sum(dim=-1, keepdim=True)  # [..., 1]
    return torch.where(action, rest, -probs)  # [..., K]


def capo_coefficients(probs: Tensor, action: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Advantage-independent CAPO coefficients of each token: ``(lin, quad)``, each [...].

    With ``v = e_a − p`` and ``d = v ⊙ scale`` (the logit change per unit advantage, ``Δz = A·d``):
    ``lin = vᵀd`` (so ``gᵀΔψ = A²·lin``) and ``quad = dᵀ(diag p − ppᵀ)d = Σ p (d − Σ p d)²`` (so
    ``Δzᵀ F_z Δz = A²·quad``; computed centred, the form that stays accurate in fp32). See the module docstring
    for the derivation (arXiv 2510.00819's last-layer model).

    Args:
        probs: float [..., K], the (renormalised) support probabilities. action: bool [..., K], one True per row
            (the sampled token). scale: float [..., K], ``s_k = Σ_h P_kh h'_h²`` (>= 0; lr included).

    Hand check: p = [½, ½], a = 0, s = [1, 1] → v = [½, −½], d = v, lin = ½, Σpd = 0, quad = ½·¼ + ½·¼ = ¼.

    >>> lin, quad = capo_coefficients(torch.tensor([0.5, 0.5]), torch.tensor([True, False]), torch.ones(2))
    >>> lin.item(), quad.item()
    (0.5, 0.25)
    """
    if probs.shape != action.shape or probs.shape != scale.shape:
        raise ValueError(
            f"capo_coefficients: probs, action and scale must have one shape, got {list(probs.shape)}, "
            f"{list(action.shape)}, {list(scale.shape)}"
        )
    v = _score(probs, action)  # [..., K] score of log p_a in logit space
    d = v * scale  # [..., K] logit change per unit advantage
    lin = (v * d).sum(dim=-1)  # [...]
    pd = (probs * d).sum(dim=-1, keepdim=True)  # [..., 1]
    # the variance of d under p, centred first: Σpd² − (Σpd)² cancels catastrophically in fp32 for a confident
    # token (p_a → 1 makes the mean² dominate), which put %-level errors into fisher="exact" / hessian="logp"
    quad = (probs * (d - pd).square()).sum(dim=-1)  # [...] >= 0
    return lin, quad


def step_scale(
    h2: Tensor,
    score: Tensor,
    second: Tensor | None,
    *,
    lr: float,
    step: int = 0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    reference_advantage: float | None = 1.0,
) -> Tensor:
    """``s_k = Σ_h P_kh h'_h²`` [M, K]: how far one unit of advantage moves support row k, seen through ``h'``.

    The token's update is ``Δψ = A·(P ⊙ v h'ᵀ)``, so ``Δz_k = A·v_k·s_k``. Two models of Adam's step ``P``:

    - ``reference_advantage = r`` (default 1, the paper code's prospective moments): Adam's step for the token's
      own gradient ``r·v h'ᵀ`` from the optimizer's state, with the first moment holding only that gradient:
      ``P = lr·(1 − β1)/(1 − β1^{t+1}) / (sqrt((β2·v̂ₜ + (1 − β2)·r²·v_k²·h'_h²) / (1 − β2^{t+1})) + eps)`` with
      ``v̂ₜ`` the stored second moment after t = ``step`` steps (0 before the first step: Adam's first step).
      This is exactly torch's Adam step for that gradient at |A| = r; for other |A| it is scaled linearly (so the
      coefficients stay advantage-independent). The token's own ``g²`` bounds the step per element (about
      ``lr·(1 − β1)/sqrt(1 − β2)``), as in the paper's code (``SparseAdamModel``: m_{t+1}, v_{t+1} formed with the
      token's gradient; its old first moment ``β1·m_t`` is left out here so that A = 0 means no update).
    - ``reference_advantage = None``: ``P = lr / (sqrt(v̂ₜ/(1 − β2^t)) + eps)`` (``adam_preconditioner``), plain
      SGD ``P = lr`` while there is no state (``step == 0`` or ``second`` None), the paper code's fallback.
      Without the token's own ``g²`` nothing bounds the step where ``v̂ₜ`` is small, so a single token's step can
      be many times an Adam step.

    Args:
        h2: float [M, H], ``(h/τ)²``. score: float [M, K], ``v = e_a − p`` on the support.
        second: float [M, K, H], Adam's ``exp_avg_sq`` of the support rows, or None (no state).
        lr: > 0. step: optimizer steps taken (>= 0). betas: Adam's (β1, β2). eps: Adam's eps (> 0).
        reference_advantage: r > 0 or None, see above; default 1 (GRPO's normalised advantage scale).

    Hand check (no state, one hidden unit h' = 2, v = [½, −½], r = 1, lr = 1): P = 1 / (|½·2| + eps) = 1 per
    row, so s = P·h'² = [4, 4] (Adam's first step is ±lr per element: Δz = A·v_k·s_k = ±2 = ±lr·|h'|).

    >>> [round(x, 6) for x in step_scale(torch.tensor([[4.0]]), torch.tensor([[0.5, -0.5]]), None, lr=1.0)[0].tolist()]
    [4.0, 4.0]
    """
    beta1, beta2 = betas
    if not lr > 0:
        raise ValueError(f"step_scale: lr must be > 0, got {lr!r}")
    if isinstance(step, bool) or int(step) != step or step < 0:
        raise ValueError(f"step_scale: step must be an int >= 0, got {step!r}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"step_scale: betas must be in [0, 1), got {betas!r}")
    if not eps > 0:
        raise ValueError(f"step_scale: eps must be > 0 (torch's Adam default 1e-8), got {eps!r}")
    if second is not None and second.shape != (*score.shape, h2.shape[-1]):
        raise ValueError(f"step_scale: second must be {[*score.shape, h2.shape[-1]]}, got {list(second.shape)}")
    if reference_advantage is None:
        if second is None or step == 0:
            return (lr * h2.sum(dim=-1, keepdim=True)).expand_as(score)  # [M, K] SGD: P = lr
        precond = adam_preconditioner(second, lr=lr, step=int(step), beta2=beta2, eps=eps)  # [M, K, H]
        return torch.einsum("mkh,mh->mk", precond, h2)  # [M, K]
    if isinstance(reference_advantage, bool) or not reference_advantage > 0:
        raise ValueError(f"step_scale: reference_advantage must be > 0 or None, got {reference_advantage!r}")
    t = int(step) + 1  # the coming step
    # v_{t+1} = β2·v_t + (1 − β2)·g², g = r·v_k·h'_h: the token's own gradient enters the second moment
    v_next = (1.0 - beta2) * reference_advantage**2 * score.square()[..., None] * h2[:, None, :]  # [M, K, H]
    if second is not None:
        v_next = v_next + beta2 * second.float()  # [M, K, H]
    denom = (v_next / (1.0 - beta2**t)).sqrt_().add_(eps)  # [M, K, H] torch's Adam: eps outside the root
    first = lr * (1.0 - beta1) / (1.0 - beta1**t)  # m̂_{t+1} = (1 − β1)·g / (1 − β1^{t+1}) with m_t left out
    return first * torch.einsum("mkh,mh->mk", denom.reciprocal_(), h2)  # [M, K]


def lm_head_coefficients(
    hidden: Tensor,
    weight: Tensor,
    tokens: Tensor,
    *,
    exp_avg_sq: Tensor | None = None,
    step: int = 0,
    lr: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    reference_advantage: float | None = 1.0,
    temperature: float = 1.0,
    top_k: int = 50,
) -> tuple[Tensor, Tensor]:
    """CAPO's ``(lin, quad)`` [M] of M tokens from their final hidden states, the LM head and its Adam state.

    CAPO (arXiv 2510.00819): the curvature of the next update is modelled on the LM head only, restricted to the
    top-k tokens plus the sampled one (``topk_support``). ``p = softmax(W_S h / τ)``, ``v = e_a − p``,
    ``s = step_scale(...)`` (Adam's step per unit advantage) and ``capo_coefficients(p, a, s)``. Computes an
    [M, V] logit matrix and [M, K+1, H] step sizes: call it on chunks of tokens to bound memory.

    Args:
        hidden: float [M, H], the hidden state each token's logits are computed from.
        weight: float [V, H], the LM head. tokens: long [M], the sampled tokens.
        exp_avg_sq: float [V, H], Adam's second moment of ``weight`` after ``step`` steps, or None (no state).
        step, lr, betas, eps, reference_advantage: see ``step_scale``.
        temperature: the sampling temperature τ the trainer's log-probs use (> 0); default 1.
        top_k: support size, paper default 50 (its sampling top-k: transformers' GenerationConfig default),
            usually 20 to 100; >= V is exact.

    With one hidden unit h = 1, W = [[1], [−1]] (logits [1, −1]), token 0, SGD lr = 1
    (``reference_advantage=None``, no state): p = [0.8808, 0.1192], v = [0.1192, −0.1192], s = [1, 1],
    lin = 2·0.1192² = 0.0284, quad = p₁p₂(d₁ − d₂)² = 0.1050·0.2384² = 0.00597.

    >>> lin, quad = lm_head_coefficients(torch.ones(1, 1), torch.tensor([[1.0], [-1.0]]), torch.tensor([0]),
    ...                                  reference_advantage=None)
    >>> round(lin.item(), 4), round(quad.item(), 5)
    (0.0284, 0.00597)
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"lm_head_coefficients: hidden must be [M, H] and weight [V, H], got {list(hidden.shape)}, "
            f"{list(weight.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"lm_head_coefficients: temperature must be > 0, got {temperature!r}")
    if exp_avg_sq is not None and exp_avg_sq.shape != weight.shape:
        raise ValueError(f"lm_head_coefficients: exp_avg_sq must be {list(weight.shape)}, got {list(exp_avg_sq.shape)}")
    hidden = hidden.float()  # [M, H] statistics in fp32 for bf16 models
    logits = hidden @ weight.float().T  # [M, V] untempered: the top-k order does not depend on τ
    index, support_logits, action = topk_support(logits, tokens, top_k=top_k)  # [M, K+1] each
    probs = torch.softmax(support_logits / temperature, dim=-1)  # [M, K+1] tempered policy on the support
    h2 = (hidden / temperature) ** 2  # [M, H] the head acts on h / τ
    score = _score(probs, action)  # [M, K+1] v = e_a − p
    second = None if exp_avg_sq is None else exp_avg_sq[index]  # [M, K+1, H] only the support's rows
    scale = step_scale(
        h2, score, second, lr=lr, step=step, betas=betas, eps=eps, reference_advantage=reference_advantage
    )  # [M, K+1]
    return capo_coefficients(probs, action, scale)


def shifts(
    advantages: Tensor, lin: Tensor, quad: Tensor, *, hessian: str = "policy", fisher: str = "empirical"
) -> tuple[Tensor, Tensor]:
    """Predicted objective and policy shifts ``(m_H, m_F)`` of each token's own update, same shape as the inputs.

    CAPO (arXiv 2510.00819): ``m_H = gᵀΔψ + ½ΔψᵀHΔψ`` and ``m_F = ½ΔψᵀFΔψ``; with the last-layer model they are
    polynomials in the advantage A (module docstring): ``gᵀΔψ = A²·lin`` and

    - ``hessian="policy"`` (paper code, H = A(∇logπ∇logπᵀ + ∇²logπ)): ``m_H = A²·lin + ½A³(lin² − quad)``;
      ``hessian="logp"`` (H = A∇²logπ = −A·F): ``m_H = A²·lin − ½A³·quad``.
    - ``fisher="empirical"`` (paper code, F = ∇logπ_a∇logπ_aᵀ): ``m_F = ½A²·lin²``;
      ``fisher="exact"`` (softmax Fisher over the support): ``m_F = ½A²·quad``.

    A = 0 gives m_H = m_F = 0: a token that asks for no update is never masked.

    >>> m_h, m_f = shifts(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.25]), hessian="logp")
    >>> m_h.item(), m_f.item()  # 0.5 − ½·0.25, ½·0.5²
    (0.375, 0.125)
    """
    if hessian not in CAPO_HESSIANS:
        raise ValueError(f"capo: hessian must be one of {list(CAPO_HESSIANS)}, got {hessian!r}")
    if fisher not in CAPO_FISHERS:
        raise ValueError(f"capo: fisher must be one of {list(CAPO_FISHERS)}, got {fisher!r}")
    a2 = advantages * advantages  # [...]
    first = a2 * lin  # [...] gᵀΔψ
    curv = lin * lin - quad if hessian == "policy" else -quad  # [...] ΔψᵀHΔψ / A³
    m_h = first + 0.5 * a2 * advantages * curv  # [...]
    m_f = 0.5 * a2 * (lin * lin if fisher == "empirical" else quad)  # [...]
    return m_h, m_f


def _passes(m_h: Tensor, m_f: Tensor, tau_h: float | None, tau_f: float | None, symmetric: bool) -> Tensor:
    """The CAPO test (paper code ``_compute_hessian_token_mask`` / ``_compute_fisher_token_mask``): bool."""
    ok = torch.ones_like(m_h, dtype=torch.bool)
    if tau_h is not None:
        ok &= (m_h < tau_h) & ((m_h > -tau_h) if symmetric else (m_h >= 0.0))
    if tau_f is not None:
        ok &= m_f < tau_f
    return ok


def _tau(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"capo: {name} must be a number > 0 or None (test off), got {value!r}")
    return float(value)


def curvature_mask(
    m_h: Tensor,
    m_f: Tensor,
    mask: Tensor,
    *,
    tau_h: float | None = 0.01,
    tau_f: float | None = 1e-4,
    symmetric: bool = True,
    sequence_tau_h: float | None = None,
    sequence_tau_f: float | None = None,
    global_tau_h: float | None = None,
    global_tau_f: float | None = None,
    reduce: str = "mean",
) -> tuple[Tensor, dict[str, float]]:
    """CAPO's mask: bool [B, T], True where a valid token keeps its place in the loss; and the masked fractions.

    CAPO (arXiv 2510.00819; code ``_compute_curvature_sequential_mask``): a token passes iff ``|m_H| < τ_H``
    (``symmetric``; else ``0 ≤ m_H < τ_H``) and ``m_F < τ_F``. Then, optionally, each sequence is tested on the
    ``reduce`` ("mean", paper code, or "sum") of the shifts of its tokens that passed, and a failing sequence
    loses all its tokens; then the batch is tested on the mean of the sequence values ("mean") or the sum over
    all remaining tokens ("sum"), and a failing batch loses every token (the trainer then skips the step).
    Levels are applied in that order, each reducing only what the previous one kept (grpolab's choice; the paper's
    best "CAPO-only" configuration uses the token level alone and no official recipe sets a sentence or global
    bound). The paper's code differs in two ways: its sentence / global values are the shifts of the aggregated
    update (the per-row mean gradient of the sentence / batch through its Adam model, so cross-token terms are in),
    not reductions of per-token shifts; and, with ``sequential_masking`` on or off, they are computed once over
    all valid tokens before any masking (``_compute_curvature_sequential_mask`` discards its recomputation) and
    the batch value is the mean over every sequence, the levels' masks then being multiplied.

    Args:
        m_h, m_f: float [B, T], from ``shifts``. mask: bool [B, T], valid tokens.
        tau_h: objective-shift bound τ_H, paper 0.01 (CAPO), usually 5e-4 to 0.1; None: no Hessian test.
        tau_f: policy-shift (KL) bound τ_F, paper 1e-4, usually 1e-5 to 1e-3; None: no Fisher test.
        symmetric: True (paper's best config) bounds |m_H|; False keeps only 0 ≤ m_H < τ_H.
        sequence_tau_h, sequence_tau_f, global_tau_h, global_tau_f: the same bounds at the sequence and batch
            levels; None (default, paper's CAPO config) turns a test off.
        reduce: "mean" (paper code) or "sum" (the total shift of every token's own step).

    Hand check (one sequence, τ_H = 0.01, τ_F = 1e-4): m_H = [0.005, 0.02, −0.005], m_F = [0, 0, 2e-4] → the
    second token fails the Hessian test, the third the Fisher test.

    >>> keep, _ = curvature_mask(torch.tensor([[0.005, 0.02, -0.005]]), torch.tensor([[0.0, 0.0, 2e-4]]),
    ...                          torch.ones(1, 3, dtype=torch.bool))
    >>> keep.tolist()
    [[True, False, False]]
    """
    tau_h, tau_f = _tau("tau_h", tau_h), _tau("tau_f", tau_f)
    sequence_tau_h, sequence_tau_f = _tau("sequence_tau_h", sequence_tau_h), _tau("sequence_tau_f", sequence_tau_f)
    global_tau_h, global_tau_f = _tau("global_tau_h", global_tau_h), _tau("global_tau_f", global_tau_f)
    if reduce not in CAPO_REDUCTIONS:
        raise ValueError(f"capo: reduce must be one of {list(CAPO_REDUCTIONS)}, got {reduce!r}")
    if not isinstance(symmetric, bool):
        raise ValueError(f"capo: symmetric must be True or False, got {symmetric!r}")
    zero = torch.zeros_like(m_h)
    m_h = torch.where(mask, m_h, zero)  # [B, T] padding may hold garbage
    m_f = torch.where(mask, m_f, zero)  # [B, T]
    total = mask.sum().clamp(min=1)
    hess_ok = _passes(m_h, m_f, tau_h, None, symmetric)  # [B, T]
    fish_ok = _passes(m_h, m_f, None, tau_f, symmetric)  # [B, T]
    keep = mask & hess_ok & fish_ok  # [B, T] token level
    metrics = {
        "selector/capo_hessian_masked_frac": ((mask & ~hess_ok).sum() / total).item(),
        "selector/capo_fisher_masked_frac": ((mask & ~fish_ok).sum() / total).item(),
    }
    if sequence_tau_h is not None or sequence_tau_f is not None:
        seq_h, seq_f = _reduce(m_h, keep, reduce), _reduce(m_f, keep, reduce)  # [B] each, over kept tokens
        seq_ok = _passes(seq_h, seq_f, sequence_tau_h, sequence_tau_f, symmetric) | ~keep.any(dim=-1)  # [B]
        metrics["selector/capo_sequence_masked_frac"] = (~seq_ok).float().mean().item()
        keep = keep & seq_ok[:, None]  # [B, T]
    if global_tau_h is not None or global_tau_f is not None:
        rows = keep.any(dim=-1)  # [B] sequences with a kept token
        if reduce == "mean":  # paper: mean over sequences of the per-sequence token means
            glob_h = _reduce(m_h, keep, "mean")[rows].mean() if bool(rows.any()) else zero.sum()  # scalar
            glob_f = _reduce(m_f, keep, "mean")[rows].mean() if bool(rows.any()) else zero.sum()  # scalar
        else:
            glob_h, glob_f = torch.where(keep, m_h, zero).sum(), torch.where(keep, m_f, zero).sum()  # scalars
        glob_ok = bool(_passes(glob_h, glob_f, global_tau_h, global_tau_f, symmetric))
        metrics["selector/capo_global_masked"] = 0.0 if glob_ok else 1.0
        keep = keep & glob_ok
    return keep, metrics


def _reduce(x: Tensor, keep: Tensor, how: str) -> Tensor:
    total = torch.where(keep, x, torch.zeros_like(x)).sum(dim=-1)  # [B]
    return total / keep.sum(dim=-1).clamp(min=1) if how == "mean" else total  # [B]


@SELECTORS.register("capo", requires=("capo_lin", "capo_quad"))
def capo(
    rollout: Rollout,
    advantages: Tensor,
    *,
    tau_f: float | None = 1e-4,
    tau_h: float | None = 0.01,
    symmetric: bool = True,
    hessian: str = "policy",
    fisher: str = "empirical",
    sequence_tau_h: float | None = None,
    sequence_tau_f: float | None = None,
    global_tau_h: float | None = None,
    global_tau_f: float | None = None,
    reduce: str = "mean",
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """CAPO's curvature-aware token mask (arXiv 2510.00819; code ``hessian/fisher_token_mask_tau``, ``capo_only``).

    Reads the per-token coefficients ``extras["capo_lin"]`` and ``extras["capo_quad"]`` (float [B, T], written by
    the rollout strategy ``capo_curvature``), forms ``m_H, m_F`` with the advantages (``shifts``) and keeps the
    tokens that pass ``curvature_mask``. Masked tokens leave the loss and its token counts; the advantages are
    returned unchanged (0 at masked positions).

    Args:
        rollout: needs ``mask`` and the two extras. advantages: float [B, T] (token-level advantages work too).
        tau_f: paper 1e-4 (usually 1e-5 to 1e-3); tau_h: paper 0.01 (usually 5e-4 to 0.1); None turns a test off.
        symmetric: paper True (|m_H| < τ_H); False: 0 ≤ m_H < τ_H.
        hessian: "policy" (paper code, default) or "logp"; fisher: "empirical" (paper code, default) or "exact";
            see ``shifts``.
        sequence_tau_h, sequence_tau_f, global_tau_h, global_tau_f, reduce: optional coarser tests, off by
            default (the paper's CAPO-only config); see ``curvature_mask``.

    Returns:
        (advantages [B, T], keep bool [B, T], metrics): ``selector/capo_masked_frac`` (valid tokens removed),
        the per-test fractions, ``selector/capo_m_h_abs_mean`` and ``selector/capo_m_f_mean`` (valid tokens).

    >>> import torch
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 2, dtype=torch.bool), reward=torch.zeros(2),
    ...             extras={"capo_lin": torch.tensor([[0.001, 0.1], [0.5, 0.5]]), "capo_quad": torch.zeros(2, 2)})
    >>> _, keep, _ = capo(r, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))  # m_F = ½·lin² at A = 1: 5e-7, 5e-3
    >>> keep.tolist()
    [[True, False], [True, True]]
    """
    for key in ("capo_lin", "capo_quad"):
        if key not in rollout.extras:
            raise ValueError(f"capo: rollout.extras has no {key!r}; put Part('capo_curvature') in the preset's rollout")
        if tuple(rollout.extras[key].shape) != tuple(rollout.mask.shape):
            raise ValueError(
                f"capo: extras[{key!r}] must be float {list(rollout.mask.shape)}, got {list(rollout.extras[key].shape)}"
            )
    if advantages.shape != rollout.mask.shape:
        raise ValueError(f"capo: advantages must be {list(rollout.mask.shape)}, got {list(advantages.shape)}")
    mask = rollout.mask  # [B, T]
    adv = torch.where(mask, advantages, torch.zeros_like(advantages)).float()  # [B, T]
    lin = torch.where(mask, rollout.extras["capo_lin"].to(adv), torch.zeros_like(adv))  # [B, T]
    quad = torch.where(mask, rollout.extras["capo_quad"].to(adv), torch.zeros_like(adv))  # [B, T]
    m_h, m_f = shifts(adv, lin, quad, hessian=hessian, fisher=fisher)  # [B, T] each
    keep, metrics = curvature_mask(
        m_h,
        m_f,
        mask,
        tau_h=tau_h,
        tau_f=tau_f,
        symmetric=symmetric,
        sequence_tau_h=sequence_tau_h,
        sequence_tau_f=sequence_tau_f,
        global_tau_h=global_tau_h,
        global_tau_f=global_tau_f,
        reduce=reduce,
    )
    total = mask.sum().clamp(min=1)
    metrics["selector/capo_masked_frac"] = ((mask & ~keep).sum() / total).item()
    metrics["selector/capo_m_h_abs_mean"] = (m_h.abs().sum() / total).item()
    metrics["selector/capo_m_f_mean"] = (m_f.sum() / total).item()
    return torch.where(keep, advantages, torch.zeros_like(advantages)), keep, metrics
