"""The only code that calls the model in training: per-token log-probs, entropy and values of completions.

One forward pass over prompt + completion gives the logits of every completion token; they are divided by
the sampling temperature (the behaviour policy sampled from the tempered distribution), then reduced chunk by
chunk with ``core.logits`` so the full-vocabulary log-softmax never exists for the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from grpolab.core.logits import entropy_from_logits, token_logprobs


@dataclass
class TokenOutputs:
    logp: Tensor  # [N, T] log π(token) under the tempered policy
    entropy: Tensor | None  # [N, T] entropy of the tempered distribution (None when not asked for)
    value: Tensor | None  # [N, T] critic values (None without a value head)


class ValueHead(nn.Module):
    """A linear critic on the policy's last hidden state (shared trunk, as CleanRL's PPO)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(hidden.to(self.proj.weight.dtype)).squeeze(-1)  # [N, T]


def completion_outputs(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    entropy: bool = False,
    entropy_grad: bool = False,
    value_head: ValueHead | None = None,
) -> TokenOutputs:
    """Log-probs (and optionally entropy and values) of the completion tokens, each [N, T].

    Positions follow the attention mask (left padding does not shift them), as in ``generate``.
    ``entropy_grad=False`` computes the entropy without a graph (a metric); True keeps it for a loss term.
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, Lp + T]
    attention = torch.cat([prompt_mask, completion_mask], dim=1).long()  # [N, Lp + T]
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)  # [N, Lp + T]
    out = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        output_hidden_states=value_head is not None,
        use_cache=False,
    )
    Lp, T = prompt_ids.shape[1], completion_ids.shape[1]
    logits = out.logits[:, Lp - 1 : Lp - 1 + T]  # [N, T, V]: position t predicts completion token t
    if temperature != 1.0:
        logits = logits / temperature  # [N, T, V]
    logp = token_logprobs(logits, completion_ids, chunk_size=chunk_size)  # [N, T]
    ent = None
    if entropy:
        if entropy_grad:
            ent = entropy_from_logits(logits, chunk_size=chunk_size)  # [N, T]
        else:
            with torch.no_grad():
                ent = entropy_from_logits(logits.detach(), chunk_size=chunk_size)  # [N, T]
    value = None
    if value_head is not None:
        hidden = out.hidden_states[-1][:, Lp - 1 : Lp - 1 + T]  # [N, T, H]: the state before each token
        value = value_head(hidden)  # [N, T]
    return TokenOutputs(logp=logp, entropy=ent, value=value)
