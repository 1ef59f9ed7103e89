"""Prompt samplers: which prompts are rolled out next. ``uniform`` is the default (issue 5 adds the rest)."""

from __future__ import annotations

import random
from typing import Any


class UniformSampler:
    """Every training row once per epoch, in a seeded random order; the state survives checkpoints.

    >>> s = UniformSampler(5, seed=0)
    >>> sorted(s.next(5)) == [0, 1, 2, 3, 4]
    True
    """

    def __init__(self, num_rows: int, *, seed: int = 0) -> None:
        if num_rows < 1:
            raise ValueError("the task has no training rows")
        self.num_rows = num_rows
        self._rng = random.Random(seed)
        self._order: list[int] = []
        self._pos = 0
        self.epoch = 0

    def next(self, k: int) -> list[int]:
        """The next ``k`` row indices (an epoch boundary reshuffles)."""
        out = []
        while len(out) < k:
            if self._pos >= len(self._order):
                self._order = list(range(self.num_rows))
                self._rng.shuffle(self._order)
                self._pos = 0
                self.epoch += 1
            out.append(self._order[self._pos])
            self._pos += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.getstate(), "order": list(self._order), "pos": self._pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.setstate(state["rng"])
        self._order, self._pos, self.epoch = list(state["order"]), state["pos"], state["epoch"]
