"""The only code that calls the model in training: per-token log-probs, entropy and values of completions.

The logits of every completion token are divided by the sampling temperature (the behaviour policy sampled
from the tempered distribution), then reduced chunk by chunk with ``core.logits`` so the full-vocabulary
log-softmax never exists for the whole batch at once.

With ``group`` (the prompt index of each row), the G completions of a prompt share one forward pass of that
prompt: the prompt runs once into a KV cache, the cache is indexed out to the G rows (differentiably, so the
gradient reaches the prompt's keys and values), and only the completion tokens run per row. At G = 8 this
removes most of the work of short-answer tasks, whose prompts are longer than their completions. Logits are
only computed for the positions that predict completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from grpolab.core.logits import entropy_from_logits, token_logprobs
from grpolab.models.cache import cache_argument


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
    group: Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    entropy: bool = False,
    entropy_grad: bool = False,
    value_head: ValueHead | None = None,
) -> TokenOutputs:
    """Log-probs (and optionally entropy and values) of the completion tokens, each [N, T].

    Positions follow the attention mask (left padding does not shift them), as in ``generate``. ``group`` (long
    [N], rows with equal ids have identical prompts) turns on the shared prompt forward; rows whose prompts
    differ despite equal ids fall back to one forward per row. ``entropy_grad=False`` computes the entropy
    without a graph (a metric); True keeps it for a loss term.
    """
    hidden_needed = value_head is not None
    inverse = first = None
    if group is not None:
        inverse = torch.unique(group, return_inverse=True)[1]  # [N]: 0..U-1
        first = torch.empty(int(inverse.max()) + 1, dtype=torch.long, device=group.device)  # [U]
        first[inverse] = torch.arange(group.shape[0], device=group.device)  # one row of each group
        same = torch.equal(prompt_ids[first][inverse], prompt_ids) and torch.equal(
            prompt_mask[first][inverse], prompt_mask
        )
        inverse = inverse if same else None
    if inverse is not None and first is not None:
        logits, hidden = _shared_prompt_forward(
            model, prompt_ids, prompt_mask, completion_ids, completion_mask, inverse, first, hidden_needed
        )
    else:
        logits, hidden = _full_forward(model, prompt_ids, prompt_mask, completion_ids, completion_mask, hidden_needed)
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
    value = None if value_head is None else value_head(hidden)  # [N, T]
    return TokenOutputs(logp=logp, entropy=ent, value=value)


def _full_forward(
    model: Any, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor, hidden: bool
) -> tuple[Tensor, Tensor | None]:
    """One pass over prompt + completion per row: logits [N, T, V] and last hidden states [N, T, H]."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, Lp + T]
    attention = torch.cat([prompt_mask, completion_mask], dim=1).long()  # [N, Lp + T]
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)  # [N, Lp + T]
    T = completion_ids.shape[1]
    out = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        output_hidden_states=hidden,
        use_cache=False,
        logits_to_keep=T + 1,  # only the positions that predict completion tokens (and one extra)
    )
    logits = out.logits[:, :-1]  # [N, T, V]: position Lp - 1 + t predicts completion token t
    states = out.hidden_states[-1][:, -T - 1 : -1] if hidden else None  # [N, T, H]: the state before each token
    return logits, states


def _shared_prompt_forward(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    inverse: Tensor,
    first: Tensor,
    hidden: bool,
) -> tuple[Tensor, Tensor | None]:
    """The prompt of each group once into a KV cache, copied to its rows; then the completions per row.

    ``first`` [U] holds one row of each group, ``inverse`` [N] the group (0..U-1) of each row."""
    from transformers import DynamicCache

    Lp, T = prompt_ids.shape[1], completion_ids.shape[1]
    p_mask = prompt_mask[first].long()  # [U, Lp]
    p_pos = (p_mask.cumsum(dim=1) - 1).clamp(min=0)  # [U, Lp]
    cache = DynamicCache(config=getattr(model, "config", None))
    cache_arg = cache_argument(model)
    out = model(
        input_ids=prompt_ids[first],
        attention_mask=p_mask,
        position_ids=p_pos,
        **{cache_arg: cache},
        use_cache=True,
        output_hidden_states=hidden,
        logits_to_keep=1,
    )
    cache.batch_select_indices(inverse)  # [U, ...] -> [N, ...]: indexing keeps the gradient path to the prompts
    logits = out.logits[inverse]  # [N, 1, V]: the last prompt position predicts completion token 0
    states = out.hidden_states[-1][:, -1:][inverse] if hidden else None  # [N, 1, H]
    if T > 1:
        attention = torch.cat([prompt_mask, completion_mask[:, :-1]], dim=1).long()  # [N, Lp + T - 1]
        offsets = torch.arange(1, T, device=prompt_ids.device)  # [T - 1]
        positions = p_pos[inverse, -1:] + offsets  # [N, T - 1]
        out = model(
            input_ids=completion_ids[:, :-1],
            attention_mask=attention,
            position_ids=positions,
            **{cache_arg: cache},
            use_cache=True,
            cache_position=torch.arange(Lp, Lp + T - 1, device=prompt_ids.device),
            output_hidden_states=hidden,
        )
        logits = torch.cat([logits, out.logits], dim=1)  # [N, T, V]
        if hidden:
            states = torch.cat([states, out.hidden_states[-1]], dim=1)  # [N, T, H]
    return logits, states


def sequence_grad_norms(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    *,
    temperature: float = 1.0,
) -> Tensor:
    """Per completion, the L2 norm of ∇_W −log π(y|x) for W the model's first trainable tensor: CurES's rollout
    allocation, as its code's ``cal_grad_logp`` (``epic/stage_0_init_difficulty_sample_size.py``) measures it. The
    log-probs are those of the sampling distribution (logits divided by ``temperature``; the code takes raw logits
    after sampling at 1.0, the same there), EOS included. One backward per completion through
    ``torch.autograd.grad``, so the parameters' ``.grad`` (an accumulating optimizer step) is left untouched.

    Returns float [N]. Costs N forward-backward passes: samplers ask for it on their estimation rounds only.
    """
    weight = next(p for p in model.parameters() if p.requires_grad)
    norms = []
    for i in range(completion_ids.shape[0]):
        out = completion_outputs(
            model,
            prompt_ids[i : i + 1],
            prompt_mask[i : i + 1],
            completion_ids[i : i + 1],
            completion_mask[i : i + 1],
            temperature=temperature,
        )
        nll = -(out.logp * completion_mask[i : i + 1]).sum()  # 0-dim: −log π(y|x)
        (grad,) = torch.autograd.grad(nll, weight)
        norms.append(grad.float().norm())
    return torch.stack(norms)  # [N]
