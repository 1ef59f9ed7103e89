"""The Task contract between data, rewards and the trainer.

A task is rows plus the reward functions that score completions of them. A row is a dict with a ``prompt``
(a string, or chat messages ``[{"role": ..., "content": ...}, ...]``) and any reference columns (``answer``
...). Reward functions follow TRL's plain-callable convention, so a TRL user's functions work unchanged::

    fn(prompts: list, completions: list, **columns) -> list[float | None]

``columns`` holds every non-prompt column of the rows as lists aligned with ``completions``. For string
prompts a completion is a string; for chat prompts it is ``[{"role": "assistant", "content": text}]``. ``None``
means "this function does not apply to this sample".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grpolab.core.registry import Registry

RewardFn = Callable[..., list[float | None]]

#: Built-in and file-backed tasks by name: ``TASKS[name](**options) -> Task``.
TASKS = Registry("task")


@dataclass
class Task:
    """Rows to train and evaluate on, and how to score completions.

    - ``train``, ``eval``: rows (dicts with ``prompt`` and reference columns); ``eval`` is held out.
    - ``reward_funcs``: TRL-convention reward functions; the combined reward is their weighted sum.
    - ``reward_weights``: one weight per function (default 1 each).
    - ``accuracy``: a 0/1 verifier (same convention) used for the accuracy metric and pass@k; default the first
      reward function.
    - ``env``: a multi-turn environment (``grpolab.envs.Environment``); None (default) for single-turn tasks. With
      one, every completion (training and evaluation) is an episode of model turns and environment replies
      (``grpolab.rollout.multiturn``), scored as a whole transcript.
    """

    name: str
    train: Sequence[dict[str, Any]]
    eval: Sequence[dict[str, Any]]
    reward_funcs: list[RewardFn]
    reward_weights: list[float] | None = None
    accuracy: RewardFn | None = None
    info: dict[str, Any] = field(default_factory=dict)
    env: Any = None

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"task {self.name!r}: no training rows")
        if not self.reward_funcs:
            raise ValueError(f"task {self.name!r}: at least one reward function is needed")
        for row in [*self.train[:1], *self.eval[:1]]:
            if "prompt" not in row:
                raise ValueError(f"task {self.name!r}: rows need a 'prompt' column, got columns {sorted(row)}")
        if self.reward_weights is None:
            self.reward_weights = [1.0] * len(self.reward_funcs)
        if len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(
                f"task {self.name!r}: {len(self.reward_weights)} weights for {len(self.reward_funcs)} reward functions"
            )
        if self.accuracy is None:
            self.accuracy = self.reward_funcs[0]
