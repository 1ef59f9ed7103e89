"""Per-token quantities from logits, chunked over tokens to bound peak memory.

A [B, T, V] float32 log-softmax of a 150k vocabulary costs 600 kB per token; computing it chunk by chunk keeps
the peak at ``chunk_size`` tokens. When gradients are needed, each chunk is recomputed during backward
(activation checkpointing), so the full-vocabulary intermediate never exists for the whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def _entropy(logits: Tensor) -> Tensor:
    logits = logits.float()  # [N, V] softmax statistics in fp32 even for bf16 logits
    logp = torch.log_softmax(logits, dim=-1)  # [N, V]
    return -(logp.exp() * logp).sum(dim=-1)  # [N]


def _token_logp(logits: Tensor, tokens: Tensor) -> Tensor:
    logits = logits.float()  # [N, V]
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # [N]
    return picked - torch.logsumexp(logits, dim=-1)  # [N]


def _chunked(fn, chunk_size: int, logits: Tensor, *extra: Tensor) -> Tensor:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    lead = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])  # [N, V]
    flat_extra = [e.reshape(-1) for e in extra]  # [N] each
    grad = torch.is_grad_enabled() and logits.requires_grad
    out = []
    for start in range(0, flat.shape[0], chunk_size):
        args = (flat[start : start + chunk_size], *(e[start : start + chunk_size] for e in flat_extra))
        out.append(checkpoint(fn, *args, use_reentrant=False) if grad else fn(*args))  # [n]
    return torch.cat(out).reshape(lead)


def entropy_from_logits(logits: Tensor, *, chunk_size: int = 1024) -> Tensor:
    """Entropy H = −Σ_v p_v log p_v of each token's distribution: logits [..., V] -> [...] (fp32).

    >>> entropy_from_logits(torch.zeros(1, 2, 4))  # uniform over 4 tokens: ln 4
    tensor([[1.3863, 1.3863]])
    """
    return _chunked(_entropy, chunk_size, logits)


def token_logprobs(logits: Tensor, tokens: Tensor, *, chunk_size: int = 1024) -> Tensor:
    """log softmax(logits)[token] of each position: logits [..., V], tokens long [...] -> [...] (fp32).

    >>> token_logprobs(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).tolist()  # log(1/2)
    [-0.6931471824645996]
    """
    if tokens.shape != logits.shape[:-1]:
        raise ValueError(
            f"tokens shape {list(tokens.shape)} must equal logits shape without V {list(logits.shape[:-1])}"
        )
    return _chunked(_token_logp, chunk_size, logits, tokens)
