"""Prompt samplers: which prompts are rolled out next, how many completions each gets, and which groups of a
round enter the batch.

The protocol a trainer drives (one training step may take several generation rounds)::

    request = sampler.request(num_prompts, num_generations, step=s, total_steps=n)  # rows + a G per row
    ... generate and score request.num_generations[i] completions of each request.rows[i] ...
    keep = sampler.observe(Observation(request.rows, rewards, accuracies, completions, step, ...))
    # -> one keep flag per group; repeat while fewer than num_prompts groups are kept and rounds < max_rounds

A round whose groups are all dropped is an *estimation* round: samplers that score prompts with extra rollouts
(VAS's curriculum rollouts, CurES's difficulty and gradient estimates) request such rounds; their completions count
as generated (cost) but never train. ``Request.measure`` asks the trainer for more than rewards: ``"grad_norms"``
(per completion, the L2 norm of the gradient of −log π(y|x) with respect to the policy's first trainable tensor,
as CurES uses) and ``"completions"`` (the completion token ids, for diversity scores such as VAS's).
``state_dict`` returns a snapshot (new lists and tensors, never mutated afterwards: the trainer keeps the one a step
started with to save on a crash) and ``load_state_dict`` restores everything a resumed run needs. ``SAMPLERS`` maps a
name to a factory ``fn(num_rows, *, seed, **hparams)``; ``uniform`` is the default.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from grpolab.core.registry import Registry

SAMPLERS = Registry("sampler")


#: What a request may ask the trainer to measure beyond rewards (see the module docstring).
MEASURES = frozenset({"grad_norms", "completions"})


@dataclass(frozen=True)
class Request:
    """What to roll out next: task row indices, the number of completions of each (>= 1), and extra
    measurements the observation needs (``MEASURES``)."""

    rows: list[int]
    num_generations: list[int]
    measure: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if len(self.rows) != len(self.num_generations) or not self.rows:
            raise ValueError("a sampler request needs one num_generations per row and at least one row")
        if min(self.num_generations) < 1:
            raise ValueError(f"num_generations must be >= 1 per row, got {self.num_generations}")
        unknown = sorted(set(self.measure) - MEASURES)
        if unknown:
            raise ValueError(f"a sampler request can measure {sorted(MEASURES)}, not {unknown}")


@dataclass
class Observation:
    """The scored results of one round, one entry per requested row (group), in request order.

    - ``rows``: the task row indices; ``rewards``, ``accuracies``: float tensors [G_i] per group.
    - ``completions``: the completion token ids per group (``completions[i][j]``: a list of ints, EOS included) when
      the request measured ``"completions"``, else an empty list.
    - ``step``, ``total_steps``: training steps completed before this one, and those of the run.
    - ``grad_norms``: float tensors [G_i] per group when the request measured ``"grad_norms"``, else None.
    """

    rows: list[int]
    rewards: list[Tensor]
    accuracies: list[Tensor]
    completions: list[list[list[int]]] = field(default_factory=list)
    step: int = 0
    total_steps: int = 1
    grad_norms: list[Tensor] | None = None

    def flat(self, values: Sequence[Tensor], *, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Per-group values (``self.rewards``, ``self.accuracies``, ``self.grad_norms``: one tensor [G_i] per group)
        as one flat CPU tensor [N] of ``dtype`` (detached) and the group index of each entry, long [N] (group i =
        ``values[i]``, in request order), ready for ``grpolab.core.stats``' group functions.

        >>> obs = Observation([7, 3], [torch.tensor([1.0, 0.0]), torch.tensor([0.5])], [])
        >>> x, group = obs.flat(obs.rewards)
        >>> x.tolist(), group.tolist()
        ([1.0, 0.0, 0.5], [0, 0, 1])
        """
        if not values:
            return torch.zeros(0, dtype=dtype), torch.zeros(0, dtype=torch.long)  # [0], [0]
        flat = torch.cat([v.detach().to(dtype).flatten().cpu() for v in values])  # [N]
        sizes = torch.tensor([v.numel() for v in values])  # [P]
        group = torch.repeat_interleave(torch.arange(len(values)), sizes)  # [N]
        return flat, group


def next_in_passes(
    rng: random.Random, source: Sequence[int], order: list[int], pos: int, k: int
) -> tuple[list[int], list[int], int, int]:
    """The next ``k`` items of successive seeded passes over ``source``: each pass is a fresh ``rng.shuffle`` of
    ``list(source)``, started when the current pass ``order`` is used up at position ``pos``.

    Returns ``(items, order, pos, passes)``: the items, the pass and position to continue from, and the number of
    passes started (``UniformSampler.next``'s epochs; ``VarianceSelectSampler``'s passes over the kept rows).

    >>> rng = random.Random(0)
    >>> items, order, pos, passes = next_in_passes(rng, range(3), [], 0, 4)
    >>> sorted(items[:3]), items[3] == order[0], pos, passes
    ([0, 1, 2], True, 1, 2)
    """
    if k > 0 and not source:
        raise ValueError("next_in_passes: nothing to draw from (an empty source)")
    out: list[int] = []
    passes = 0
    while len(out) < k:
        if pos >= len(order):
            order = list(source)
            rng.shuffle(order)
            pos = 0
            passes += 1
        out.append(order[pos])
        pos += 1
    return out, order, pos, passes


class UniformSampler:
    """Every training row once per epoch, in a seeded random order, G completions each; one round per step,
    every group kept. The state survives checkpoints.

    Subclasses that need randomness besides the epoch order draw it from ``self.aux_rng``, a second
    ``random.Random`` stream (so the epoch order stays exactly ``UniformSampler(seed)``'s), seeded with
    ``aux_seed.format(seed=seed)``: a subclass sets the class attribute ``aux_seed`` to a string of its own (a string
    seed is hashed with SHA-512 by ``random.Random``, so the stream is the same in every process). Both streams are
    saved by ``state_dict`` (``"rng"``, ``"aux_rng"``); ``legacy_aux_key`` names the key under which a subclass
    saved its stream before it moved here, so its older checkpoints still load.

    >>> s = UniformSampler(5, seed=0)
    >>> sorted(s.next(5)) == [0, 1, 2, 3, 4]
    True
    >>> s.request(2, 4, step=0, total_steps=10).num_generations
    [4, 4]
    """

    max_rounds = 1
    #: The auxiliary stream's seed, formatted with the sampler's ``seed``.
    aux_seed = "uniform-aux-{seed}"
    #: The state key of the auxiliary stream in checkpoints written before ``"aux_rng"`` (None: no such key).
    legacy_aux_key: str | None = None

    def __init__(self, num_rows: int, *, seed: int = 0) -> None:
        if num_rows < 1:
            raise ValueError("the task has no training rows")
        self.num_rows = num_rows
        self._rng = random.Random(seed)
        self.aux_rng = random.Random(self.aux_seed.format(seed=seed))
        self._order: list[int] = []
        self._pos = 0
        self.epoch = 0

    def next(self, k: int) -> list[int]:
        """The next ``k`` row indices (an epoch boundary reshuffles)."""
        out, self._order, self._pos, epochs = next_in_passes(self._rng, range(self.num_rows), self._order, self._pos, k)
        self.epoch += epochs
        return out

    def request(self, num_prompts: int, num_generations: int, *, step: int = 0, total_steps: int = 1) -> Request:
        """The next ``num_prompts`` rows, ``num_generations`` completions each."""
        return Request(self.next(num_prompts), [num_generations] * num_prompts)

    def observe(self, obs: Observation) -> list[bool]:
        """Every group is kept."""
        return [True] * len(obs.rows)

    def metrics(self) -> dict[str, float]:
        """Numbers worth logging after a step's rounds (logged as ``sampler/<name>``); none here."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self._rng.getstate(),
            "aux_rng": self.aux_rng.getstate(),
            "order": list(self._order),
            "pos": self._pos,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.setstate(state["rng"])
        # a checkpoint written before the auxiliary stream lived here: its subclass key, or none (plain uniform)
        aux_key = "aux_rng" if "aux_rng" in state else self.legacy_aux_key
        if aux_key is not None and aux_key in state:
            self.aux_rng.setstate(state[aux_key])
        self._order, self._pos, self.epoch = list(state["order"]), state["pos"], state["epoch"]


class DynamicSampler(UniformSampler):
    """DAPO's dynamic sampling (DAPO, arXiv 2503.14476, §3.2 and Algorithm 1): keep generating and drop every group
    whose completions are all correct or all wrong, until the batch holds ``num_prompts`` groups or
    ``max_rounds`` rounds were generated; groups beyond the batch size are discarded.

    Args:
        max_rounds: generation rounds per training step at most (verl's ``max_num_gen_batches``, 10 in the DAPO
            recipe; usually 3 to 20). When the rounds run out the batch is what was kept (the trainer falls back to
            the last round when nothing was).
        oversample: prompts generated per round as a multiple of the groups still missing (DAPO's generation batch
            1536 for 512 training prompts: 3; usually 1 to 4).
        objective: ``"accuracy"`` (the paper: "accuracy equal to 1 or 0") or ``"reward"`` (any equal rewards).
        tol: a group is kept when max − min of its values exceeds ``tol`` (default 0: exact equality).

    >>> import torch
    >>> s = DynamicSampler(10, seed=0)
    >>> acc = [torch.tensor([1., 1.]), torch.tensor([0., 1.]), torch.zeros(2)]
    >>> s.observe(Observation([0, 1, 2], [torch.zeros(2)] * 3, acc))
    [False, True, False]
    """

    def __init__(
        self,
        num_rows: int,
        *,
        seed: int = 0,
        max_rounds: int = 10,
        oversample: float = 3.0,
        objective: str = "accuracy",
        tol: float = 0.0,
    ) -> None:
        super().__init__(num_rows, seed=seed)
        if not isinstance(max_rounds, int) or max_rounds < 1:
            raise ValueError(f"dynamic sampler: max_rounds must be a positive integer, got {max_rounds!r}")
        if not oversample >= 1:
            raise ValueError(f"dynamic sampler: oversample must be >= 1, got {oversample!r}")
        if objective not in ("accuracy", "reward"):
            raise ValueError(f"dynamic sampler: objective must be 'accuracy' or 'reward', got {objective!r}")
        self.max_rounds = max_rounds
        self.oversample = float(oversample)
        self.objective = objective
        self.tol = float(tol)

    def request(self, num_prompts: int, num_generations: int, *, step: int = 0, total_steps: int = 1) -> Request:
        k = math.ceil(self.oversample * num_prompts)
        return Request(self.next(k), [num_generations] * k)

    def observe(self, obs: Observation) -> list[bool]:
        values = obs.accuracies if self.objective == "accuracy" else obs.rewards
        return [bool(v.numel() > 1 and (v.max() - v.min()).item() > self.tol) for v in values]


SAMPLERS.add("uniform", UniformSampler)
SAMPLERS.add("dynamic", DynamicSampler)
