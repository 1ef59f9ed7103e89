"""Multi-turn rollouts: episodes of model turns and environment replies (tool use, simulated consultations).

``run_episodes`` plays one episode per completion with any ``grpolab.envs.Environment`` (protocol in
``grpolab/envs/base.py``). All active episodes are generated together, turn by turn: each turn is one batched
``HFEngine.generate_ids`` call over ``prompt + transcript so far`` (token ids, never re-tokenized text, so a turn's
context is exactly what earlier turns produced), stopping at EOS, one of ``env.stop`` or the per-turn limit. A turn
that ends with a stop string is answered by ``env.step``; the reply is tokenized without special tokens and
appended as *environment tokens*.

The result is a ``Generation`` whose completion is the whole transcript (what the rewards score and what the
log-prob pass reads as context) and per-completion extras:

- ``env_mask`` bool [N, T]: True at environment tokens. The trainer keeps them out of the loss (they were not
  sampled from the policy) and out of the generated-token count.
- ``tool_calls`` long [N]: turns the environment counted as tool calls (``Reply.tool_call``; OTC's m).
- ``turns`` long [N]: model turns written.

``Generation.truncated`` is True when an episode was cut by a limit instead of ending on its own: a turn hit the
per-turn token limit, the transcript reached the model's position limit (an observation that does not fit, with
room for one more token, is cut and ends the episode, so prompt + transcript never exceed the positions), or
``env.max_turns`` ran out while the model was still calling the environment. Search-R1 (arXiv 2503.09516,
§3.1) masks retrieved tokens out of the loss the same way ("retrieved token masking").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from grpolab.envs.base import Environment, Reply
from grpolab.rollout.hf import Generation, HFEngine


@dataclass
class _Episode:
    row: dict[str, Any]
    prompt: Tensor  # [Lp_i] the prompt's ids without padding
    state: Any
    tokens: list[int] = field(default_factory=list)
    from_env: list[bool] = field(default_factory=list)
    turns: int = 0
    tool_calls: int = 0
    done: bool = False
    cut: bool = False  # ended by a limit rather than by itself

    def add(self, ids: Sequence[int], env: bool) -> None:
        self.tokens.extend(ids)
        self.from_env.extend([env] * len(ids))


def position_limit(model: Any) -> int | None:
    """The model's position limit (``config.max_position_embeddings``), None when it has none."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(limit) if limit else None


@torch.no_grad()
def run_episodes(
    engine: HFEngine,
    model: Any,
    env: Environment,
    rows: list[dict[str, Any]],
    *,
    num_generations: int | Sequence[int],
    greedy: bool = False,
    temperature: float | None = None,
    max_new_tokens: int | None = None,
) -> tuple[Generation, dict[str, Tensor]]:
    """Play ``num_generations`` episodes of ``env`` per row of ``rows`` with ``model``; returns the transcripts as a
    ``Generation`` (row i belongs to ``rows[prompt_index[i]]``) and the extras ``env_mask`` [N, T], ``tool_calls``
    [N], ``turns`` [N] (see the module docstring).

    - ``num_generations``: episodes per row, one count or one per row (groups of unequal size).
    - ``greedy`` / ``temperature``: decoding of the model's turns (default: the engine's temperature).
    - ``max_new_tokens``: the token limit of each model turn (default: the engine's ``max_new_tokens``); the whole
      transcript is also bounded by the model's position limit.
    """
    if not isinstance(env, Environment):
        raise TypeError(f"env must be a grpolab.envs.Environment, got {type(env).__name__}")
    if env.max_turns < 1:
        raise ValueError(f"{type(env).__name__}.max_turns must be >= 1, got {env.max_turns}")
    tokenizer = engine.tokenizer
    limit = engine.max_new_tokens if max_new_tokens is None else max_new_tokens
    device = next(model.parameters()).device
    unique_ids, unique_mask = engine.encode([r["prompt"] for r in rows])  # [P, Lp]
    counts = torch.as_tensor(num_generations, dtype=torch.long).expand(len(rows))  # [P]
    if bool((counts < 1).any()):
        raise ValueError(f"num_generations must be >= 1 for every prompt, got {counts.tolist()}")
    source = torch.arange(len(rows)).repeat_interleave(counts)  # [N]
    episodes = [
        _Episode(row=rows[p], prompt=unique_ids[p][unique_mask[p]].to(device), state=env.reset(rows[p]))
        for p in source.tolist()
    ]
    max_positions = position_limit(model)
    if max_positions is not None and int(unique_mask.sum(-1).max()) >= max_positions:
        raise ValueError(
            f"a prompt of {int(unique_mask.sum(-1).max())} tokens leaves no room in the model's {max_positions} "
            "positions for an episode; shorten the prompts or use a model with a longer context"
        )
    eos = tokenizer.eos_token_id
    while active := [e for e in episodes if not e.done]:
        turns = _next_turns(engine, model, active, limit, max_positions, list(env.stop), greedy, temperature)
        for e, (new, text, truncated) in zip(active, turns, strict=True):
            e.add(new, env=False)
            e.turns += 1
            if eos in new or truncated or not any(s in text for s in env.stop):
                e.done = True  # EOS or a limit: the episode is over
                e.cut = truncated
                continue
            reply = env.step(e.state, e.row, text)
            if not isinstance(reply, Reply):
                raise TypeError(f"{type(env).__name__}.step must return a Reply, got {type(reply).__name__}")
            e.tool_calls += int(reply.tool_call)
            observation = tokenizer(reply.text, add_special_tokens=False).input_ids if reply.text else []
            observation = observation[: env.max_observation_tokens]
            if max_positions is not None:
                space = max_positions - len(e.prompt) - len(e.tokens)  # positions left in the model's context
                if len(observation) >= space:  # the reply (and a next turn) no longer fits: cut here
                    e.add(observation[:space], env=True)
                    e.done = e.cut = True
                    continue
            e.add(observation, env=True)
            if reply.done:
                e.done = True
            elif e.turns >= env.max_turns:  # still calling the environment when the turns ran out
                e.done = e.cut = True
    gen = Generation.from_token_lists(
        [e.tokens for e in episodes],
        prompt_ids=unique_ids[source].to(device),  # [N, Lp]
        prompt_mask=unique_mask[source].to(device),  # [N, Lp]
        prompt_index=source.to(device),  # [N]
        pad_id=engine.pad_id,
        truncated=[e.cut for e in episodes],
        texts=[""] * len(episodes),
    )
    gen.texts = engine.decode(gen.completion_ids, gen.completion_mask)
    T = gen.completion_ids.shape[1]
    env_mask = torch.zeros(len(episodes), T, dtype=torch.bool, device=device)  # [N, T]
    for n, e in enumerate(episodes):
        env_mask[n, : len(e.from_env)] = torch.tensor(e.from_env, dtype=torch.bool)
    extras = {
        "env_mask": env_mask,  # [N, T]
        "tool_calls": torch.tensor([e.tool_calls for e in episodes], dtype=torch.long, device=device),  # [N]
        "turns": torch.tensor([e.turns for e in episodes], dtype=torch.long, device=device),  # [N]
    }
    return gen, extras


def _next_turns(
    engine: HFEngine,
    model: Any,
    active: list[_Episode],
    limit: int,
    max_positions: int | None,
    stop: list[str],
    greedy: bool,
    temperature: float | None,
) -> list[tuple[list[int], str, bool]]:
    """The next turn of every active episode: (new token ids, their text, truncated). Each episode's turn may take
    ``limit`` tokens or what is left of the model's positions, whichever is less (at least 1: observations are cut
    to leave it), so episodes near the position limit are generated in their own call and never shorten the turns
    of the others."""
    device = active[0].prompt.device
    contexts = [torch.cat([e.prompt, torch.tensor(e.tokens, dtype=torch.long, device=device)]) for e in active]
    rooms = [limit if max_positions is None else min(limit, max_positions - len(c)) for c in contexts]
    turns: list[tuple[list[int], str, bool]] = [([], "", False)] * len(active)
    for room in sorted(set(rooms), reverse=True):  # usually one call: every room is the turn limit
        members = [m for m, r in enumerate(rooms) if r == room]
        ids, attn = _left_pad([contexts[m] for m in members], engine.pad_id)  # [M, W]
        out = engine.generate_ids(
            model, ids, attn, num_generations=1, greedy=greedy, temperature=temperature, max_new_tokens=room, stop=stop
        )
        lengths = out.completion_mask.sum(-1).tolist()
        for j, m in enumerate(members):
            turns[m] = (out.completion_ids[j, : lengths[j]].tolist(), out.texts[j], bool(out.truncated[j]))
    return turns


def _left_pad(rows: list[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token-id rows left-padded into ids [M, W] and mask [M, W]."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=rows[0].device)  # [M, W]
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=rows[0].device)  # [M, W]
    for m, r in enumerate(rows):
        ids[m, width - len(r) :] = r
        mask[m, width - len(r) :] = True
    return ids, mask
