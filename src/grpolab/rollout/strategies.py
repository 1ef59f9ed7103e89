"""Rollout strategies: methods that change what is sampled, not how it is scored or optimised.

A strategy runs right after the batch is sampled and scored, before any log-prob pass::

    fn(ctx: RolloutContext, sampled: Sampled, **hparams) -> (Sampled, metrics)

It may add extras (ReMax's greedy reward, SPO's Monte-Carlo segment values), append completions (vine or tree
continuations, off-policy anchors), or replace some (AEPO's re-sampled positives). The math that turns those
extras into advantages lives in ``grpolab.core``; a strategy only samples, through the context: ``ctx.sample``
(new completions of task rows) and ``ctx.continue_from`` (continuations of a prefix of existing completions),
both scored with the task's rewards. Strategies may declare the run arguments of parts (``step``,
``total_steps``, ``state``, ``max_len``; see ``grpolab.algorithms.preset.RUN_ARGUMENTS``).

A strategy that scores new completions under other rows than they were generated from (ICPO's demonstration
prompt swapped back) generates them unscored with ``ctx.generate`` and scores them once with ``ctx.score``.

Everything per completion in ``Sampled`` is aligned on its N rows: ``gen`` rows, rewards, ``group`` (the
advantage group, by default the prompt) and ``extras`` (tensors with first dimension N, or lists of N).

Two extras have a fixed meaning, and ``Sampled.append`` fills them for completions that lack them:

- ``off_policy`` bool [N]: the completion was not sampled from the current policy given its prompt (an expert or
  reference answer, a completion generated under another prompt such as ICPO's demonstration prompt, a roll-in
  from an offline response). The trainer's "old" log-probs of such a row are the current policy's, not its
  behaviour policy's, so a loss that relies on the PPO ratio should treat it apart (``POLICY_LOSSES["mixed_policy"]``
  does). Filled with False.
- ``prefix_len`` long [N]: leading completion tokens that were given, not sampled (a continuation's prefix, a
  roll-in); ``SELECTORS["mask_prefix"]`` keeps them out of the loss. Filled with 0.

The trainer fills both for the whole batch before it builds the Rollout (and ``SELECTORS["mask_prefix"]`` and
``POLICY_LOSSES["mixed_policy"]`` read a missing one as its fill value), so a strategy need not write them for a
step where it adds nothing. A strategy that adds or replaces completions first checks
(:func:`check_fillable_extras`) that every extra already in the batch can be filled for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from grpolab.core.registry import Registry
from grpolab.rollout.hf import Generation

ROLLOUT_STRATEGIES = Registry("rollout strategy")
#: Values ``Sampled.append`` gives the fixed-meaning extras on the side that lacks them (see the module docstring).
DEFAULT_FILL: dict[str, Any] = {"off_policy": False, "prefix_len": 0}


@dataclass
class Sampled:
    """A scored batch of N completions of the task rows ``rows``.

    - ``rows``: the P task rows (dicts with "prompt" and the task's columns); ``gen.prompt_index`` indexes them.
    - ``gen``: the completions (token ids and masks).
    - ``reward`` float [N], ``rewards`` float [N, K] (NaN where a function returned None), ``reward_names``,
      ``valid`` bool [N] (False: the reward failed and the sample leaves the batch), ``accuracy`` float [N].
    - ``group`` long [N]: the advantage group of each completion (the prompt, unless a strategy says otherwise).
    - ``extras``: per-completion values for ``Rollout.extras`` (tensors [N, ...]).
    - ``metrics``: the scoring metrics (per-function reward means, errors) of the first scoring.
    """

    rows: list[dict]
    gen: Generation
    reward: Tensor
    rewards: Tensor
    reward_names: tuple[str, ...]
    valid: Tensor
    accuracy: Tensor
    group: Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.reward.shape[0])

    def take(self, index: Tensor) -> Sampled:
        """The completions ``index`` (long [M]), in that order, with their extras."""
        N = self.size
        return replace(
            self,
            gen=self.gen.take(index),
            reward=self.reward[index],
            rewards=self.rewards[index],
            valid=self.valid[index],
            accuracy=self.accuracy[index],
            group=self.group[index],
            extras={k: _take(v, index, N) for k, v in self.extras.items()},
        )

    def append(self, other: Sampled, pad_id: int, fill: dict[str, Any] | None = None) -> Sampled:
        """This batch followed by ``other`` (completions of the same rows). An extra present in only one of the two
        is filled for the other's rows with ``fill[key]`` (a scalar), which must then be given unless ``DEFAULT_FILL``
        has it (``off_policy`` False, ``prefix_len`` 0)."""
        if other.reward_names != self.reward_names:
            raise ValueError("append: both batches must be scored by the same reward functions")
        fill = {**DEFAULT_FILL, **(fill or {})}
        extras: dict[str, Any] = {}
        for key in {*self.extras, *other.extras}:
            if (key not in self.extras or key not in other.extras) and key not in fill:
                raise ValueError(f"append: extra {key!r} is missing on one side; give fill={{{key!r}: value}}")
            a = self.extras[key] if key in self.extras else _full_like(other.extras[key], self.size, fill[key])
            b = other.extras[key] if key in other.extras else _full_like(self.extras[key], other.size, fill[key])
            extras[key] = _cat_rows(a, b) if isinstance(a, Tensor) else [*a, *b]
        return replace(
            self,
            gen=Generation.cat([self.gen, other.gen], pad_id),
            reward=torch.cat([self.reward, other.reward]),  # [N + M]
            rewards=torch.cat([self.rewards, other.rewards]),  # [N + M, K]
            valid=torch.cat([self.valid, other.valid]),  # [N + M]
            accuracy=torch.cat([self.accuracy, other.accuracy]),  # [N + M]
            group=torch.cat([self.group, other.group]),  # [N + M]
            extras=extras,
        )


def extend(first: Sampled, other: Sampled, pad_id: int) -> Sampled:
    """Completions of two sets of task rows in one batch (a sampler's generation rounds): ``other``'s rows are
    appended to ``first``'s and its prompt indices and groups shifted past ``first``'s."""
    shift_rows = len(first.rows)
    shift_groups = int(first.group.max()) + 1 if first.size else 0
    gen = replace(other.gen, prompt_index=other.gen.prompt_index + shift_rows)
    moved = replace(other, rows=first.rows, gen=gen, group=other.group + shift_groups)
    return replace(first.append(moved, pad_id), rows=[*first.rows, *other.rows])


def check_fillable_extras(sampled: Sampled, name: str, extra_fill: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` unless every extra already in ``sampled`` can be filled for the completions strategy
    ``name`` adds or puts in place: the fixed-meaning ones (``DEFAULT_FILL``) and ``extra_fill`` (the strategy's own
    extras, which it gives ``Sampled.append`` as ``fill``). An extra an earlier strategy wrote (``token_ids`` ...)
    has no value for the new completions, so ``name`` must come before that strategy in the preset's rollout."""
    other = sorted(set(sampled.extras) - set(DEFAULT_FILL) - set(extra_fill))
    if other:
        raise ValueError(
            f"{name}: the batch already has per-completion extras {other} that its new completions cannot fill; "
            f"put {name!r} before the strategies that write them in the preset's rollout"
        )


def with_default_extras(sampled: Sampled, fill: dict[str, Any] | None = None) -> Sampled:
    """``sampled`` with every extra of ``{**DEFAULT_FILL, **fill}`` present: one that is missing is added as a
    tensor [N] of its fill value (bool for a bool value, long for an int), for strategies whose output has them on
    every row whatever they did (``dataset_reset``, ``scaf_grpo``, ``difficulty_augment``)."""
    extras = dict(sampled.extras)
    for key, value in {**DEFAULT_FILL, **(fill or {})}.items():
        if key not in extras:
            extras[key] = torch.full((sampled.size,), value, device=sampled.reward.device)  # [N]
    return replace(sampled, extras=extras)


def _take(value: Any, index: Tensor, n: int) -> Any:
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value[index]
    if isinstance(value, list) and len(value) == n:
        return [value[i] for i in index.tolist()]
    return value


def _cat_rows(a: Tensor, b: Tensor) -> Tensor:
    """Rows of ``a`` then ``b``; per-token extras ([N, T, ...], e.g. ``env_mask``) of different widths are first padded
    on the right with zeros (False), as ``Generation.cat`` pads the completions they align with."""
    if a.dim() >= 2 and a.shape[1] != b.shape[1]:
        width = max(a.shape[1], b.shape[1])
        a, b = (torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, width - x.shape[1])) for x in (a, b))
    return torch.cat([a, b])


def _full_like(template: Any, n: int, value: Any) -> Any:
    if isinstance(template, Tensor):
        return torch.full((n, *template.shape[1:]), value, dtype=template.dtype, device=template.device)
    return [value] * n


@dataclass
class RolloutContext:
    """What a strategy may use: sampling and scoring with the current policy, and the run's position.

    ``sample_fn(rows, num_generations, greedy=..., temperature=..., max_new_tokens=..., score=True) -> Sampled``
    (with ``score=False``: the Generation only, unscored; a ``sample_fn`` without a ``score`` keyword is called
    without it and :meth:`generate` drops its scores), ``score_fn(rows, gen) -> Sampled``, ``continue_fn``
    (``HFEngine.continue_from`` bound to the policy) and
    ``outputs_fn(gen) -> (logp [N, T], entropy [N, T])`` (the current policy, no gradient, sampling temperature)
    are supplied by the trainer. ``model`` and ``optimizer`` are there for strategies that model the next update
    (CAPO's curvature); a strategy must not step or modify them.
    """

    sample_fn: Callable[..., Sampled]
    score_fn: Callable[[list[dict], Generation], Sampled]
    continue_fn: Callable[..., tuple[Generation, Tensor]]
    outputs_fn: Callable[[Generation], tuple[Tensor, Tensor]]
    model: Any
    optimizer: Any
    pad_id: int
    tokenizer: Any
    device: torch.device
    num_generations: int
    max_new_tokens: int
    temperature: float

    def sample(
        self,
        rows: list[dict],
        num_generations: int,
        *,
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> Sampled:
        """``num_generations`` new scored completions of each of ``rows`` (greedy, or at ``temperature``)."""
        return self.sample_fn(
            rows, num_generations, greedy=greedy, temperature=temperature, max_new_tokens=max_new_tokens
        )

    def generate(
        self,
        rows: list[dict],
        num_generations: int,
        *,
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation:
        """``num_generations`` new completions of each of ``rows``, as :meth:`sample` draws them but not scored:
        for completions a strategy scores under other rows (:meth:`score`), so the task's rewards run once. Their
        tokens count as generated like any sample's. A ``sample_fn`` that has no ``score`` keyword (a hand-built
        context) is called as by :meth:`sample` and its scores are dropped."""
        kwargs: dict[str, Any] = {"greedy": greedy, "temperature": temperature, "max_new_tokens": max_new_tokens}
        if not _takes_keyword(self.sample_fn, "score"):
            return self.sample_fn(rows, num_generations, **kwargs).gen
        return self.sample_fn(rows, num_generations, score=False, **kwargs)

    def continue_from(
        self,
        sampled: Sampled,
        index: Tensor,
        cut: Tensor,
        num_generations: int,
        *,
        suffix_ids: list[int] | None = None,
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> Sampled:
        """Scored continuations of completions ``index`` (long [M]) of ``sampled`` after their first ``cut[m]``
        tokens (+ ``suffix_ids``), ``num_generations`` each, as full completions of the same prompts. Their
        ``group`` is that of the source completion; ``extras["prefix_len"]`` (long) counts the given tokens."""
        gen, prefix_len = self.continue_fn(
            sampled.gen,
            index,
            cut,
            num_generations=num_generations,
            suffix_ids=suffix_ids,
            greedy=greedy,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
        )
        out = self.score_fn(sampled.rows, gen)
        src = index.to(self.device).long().repeat_interleave(num_generations)  # [M * n]
        return replace(out, group=sampled.group[src], extras={"prefix_len": prefix_len})

    def token_outputs(self, gen: Generation) -> tuple[Tensor, Tensor]:
        """Log-probs and entropies [N, T] of the completions of ``gen`` under the current policy (no gradient)."""
        return self.outputs_fn(gen)

    def score(self, rows: list[dict], gen: Generation) -> Sampled:
        """Score completions ``gen`` of ``rows`` with the task's rewards."""
        return self.score_fn(rows, gen)


def _takes_keyword(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name`` (by name or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read: call it the plain way
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY) for p in parameters)


def cut_to_limit(ctx: RolloutContext, cont: Sampled, limit: int) -> Sampled:
    """``cont`` with every completion longer than ``limit`` tokens cut back to ``limit`` (marked truncated, its text
    decoded again) and scored again: continuations and roll-ins (whose given prefix counts toward the length) obey
    the same generation limit as the rollouts they come from."""
    gen = cont.gen
    over = (gen.completion_mask.sum(-1) > limit).nonzero().flatten()  # [m]
    if over.numel() == 0:
        return cont
    ids, mask = gen.completion_ids[:, :limit], gen.completion_mask[:, :limit]  # [M, limit]
    truncated = gen.truncated.clone()  # [M]
    truncated[over] = True
    texts = list(gen.texts)
    cut_texts = ctx.tokenizer.batch_decode(torch.where(mask[over], ids[over], ctx.pad_id), skip_special_tokens=True)
    for i, text in zip(over.tolist(), cut_texts, strict=True):
        texts[i] = text
    short = replace(gen, completion_ids=ids, completion_mask=mask, truncated=truncated, texts=texts)
    rescored = ctx.score(cont.rows, short.take(over))
    at = over.to(cont.reward.device)  # [m]
    fields = {}
    for name in ("reward", "rewards", "valid", "accuracy"):
        value = getattr(cont, name).clone()
        value[at] = getattr(rescored, name).to(value)
        fields[name] = value
    return replace(cont, gen=short, **fields)


@ROLLOUT_STRATEGIES.register("greedy_baseline")
def greedy_baseline(ctx: RolloutContext, sampled: Sampled) -> tuple[Sampled, dict[str, float]]:
    """One greedy decode per prompt, scored; its reward is written to ``extras["greedy_reward"]`` [N] for every
    completion of that prompt (ReMax's baseline, arXiv 2310.10505, Algorithm 1). Costs one extra generation."""
    greedy = ctx.sample(sampled.rows, 1, greedy=True)
    extras = {**sampled.extras, "greedy_reward": greedy.reward[sampled.gen.prompt_index]}  # [N]
    return replace(sampled, extras=extras), {"greedy_reward": greedy.reward.mean().item()}
