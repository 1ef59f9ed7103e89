"""Prompt sampler ``variance_select``: Temporal-RLT's variance-aware data selection, run online.

Paper: "Reinforcement Learning Tuning for VideoLLMs: Reward Design and Data Efficiency" (arXiv 2506.01908). The
paper selects its training set OFFLINE: every candidate sample is answered several times by the model ("repeated
inference"), and the samples whose rewards vary across the repeats are kept (Temporal-RLT-32k out of a 490k pool);
GRPO then trains on the kept set. A trainer cannot score a whole data set before its first step, and a fixed
selection goes stale as the policy learns, so this sampler runs the same selection online, in the sampler protocol
(``grpolab.data.sampler``):

1. Estimation rounds (a refresh): ``pool_size`` candidate rows, taken in the seeded uniform epoch order, are rolled
   out ``num_samples`` times each; every group is dropped (nothing trains on these rollouts, they are generation
   cost). A row whose reward variance passes ``variance_keep`` (``grpolab.core.variance_select``) joins the kept set.
2. Training rounds: the step's ``num_prompts`` rows are drawn from the kept set (each kept row once per pass, in a
   seeded shuffled order; rows repeat only when the kept set is smaller than a batch), ``num_generations``
   completions each, every group kept.
3. Every ``refresh_every`` steps a new pool is scored and replaces the kept set (rows that the policy has since
   mastered drop out); ``refresh_every=0`` selects once, as the paper does. A refresh that keeps nothing is retried
   at the next step.

The last round a step may run (``max_rounds``) is always a training round, so a step never ends on estimation
rollouts. A refresh that needs more estimation rounds than a step allows continues at the next step; meanwhile
batches come from the previous kept set, or, before the first refresh completes, from the rows kept so far; when
no row has passed yet the batch is drawn in the uniform order (as GRPO would), counted in ``sampler/fallback``.

Logged (``sampler/<key>``): ``kept`` (size of the kept set), ``pass_frac`` (fraction of the last completed pool that
passed), ``pool_variance`` (its mean reward variance), ``refreshes``, ``scored`` (rows scored so far) and
``fallback`` (training rounds drawn uniformly because nothing had passed).

>>> import torch
>>> s = VarianceSelectSampler(10, seed=0, pool_size=3)
>>> first = s.request(2, 4)  # no kept set yet: an estimation round over the pool
>>> first.num_generations
[4, 4, 4]
>>> rewards = [torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.ones(4), torch.tensor([0.2, 0.4, 0.2, 0.2])]
>>> s.observe(Observation(first.rows, rewards, rewards))  # estimation: nothing trains
[False, False, False]
>>> sorted(s.request(2, 4).rows) == sorted([first.rows[0], first.rows[2]])  # drawn from the kept rows
True
"""

from __future__ import annotations

import math
from typing import Any

import torch

from grpolab.core.checks import check_choice, check_int
from grpolab.core.variance_select import group_reward_variance, variance_keep
from grpolab.data.sampler import SAMPLERS, Observation, Request, UniformSampler, next_in_passes

OBJECTIVES = ("reward", "accuracy")


class VarianceSelectSampler(UniformSampler):
    """Temporal-RLT's variance-aware data selection (arXiv 2506.01908) as an online prompt sampler.

    See the module docstring for the procedure. Hyper-parameters (keyword-only; the paper selects offline, so the
    online ones are grpolab's choices, documented as such):

    Args:
        pool_size: candidate rows scored per refresh (default 64; the paper scores its whole 490k pool once;
            usually 4 to 32 times num_prompts). Capped at the number of training rows.
        num_samples: completions per candidate, the paper's number of repeated inferences (default None: the
            run's num_generations; usually 4 to 16). At least 2 (one sample has no variance).
        min_variance: a row is kept when its reward variance exceeds this (default 0.0: any disagreement; the
            paper's threshold is not in the available text; for 0/1 rewards the variance is at most 0.25; usually
            0 to 0.05). Population variance (ddof 0), exactly 0 for all-equal rewards.
        max_variance: and does not exceed this (default inf: no upper bound).
        refresh_every: training steps between refreshes (default 10; 0 = select once at the start, as the paper's
            offline selection; usually 5 to 50).
        estimate_batch: candidate rows per estimation round (default None: the whole pool in one round; set it
            to bound the generation batch, e.g. to num_prompts).
        objective: "reward" (default: the variance of the combined reward, continuous with the dual reward) or
            "accuracy" (the variance of the 0/1 accuracy).
        max_rounds: generation rounds per training step at most, estimation rounds included (default 4); the last
            one is always a training round. At least 2.
    """

    def __init__(
        self,
        num_rows: int,
        *,
        seed: int = 0,
        pool_size: int = 64,
        num_samples: int | None = None,
        min_variance: float = 0.0,
        max_variance: float = math.inf,
        refresh_every: int = 10,
        estimate_batch: int | None = None,
        objective: str = "reward",
        max_rounds: int = 4,
    ) -> None:
        super().__init__(num_rows, seed=seed)
        where = "variance_select sampler"
        check_int("pool_size", pool_size, minimum=1, where=where)
        if num_samples is not None:
            check_int("num_samples", num_samples, minimum=2, where=where, hint="or None")
        variance_keep(torch.zeros(1), min_variance=min_variance, max_variance=max_variance)  # validates the range
        check_int("refresh_every", refresh_every, minimum=0, where=where, hint="0 = never")
        if estimate_batch is not None:
            check_int("estimate_batch", estimate_batch, minimum=1, where=where, hint="or None")
        check_choice(where, "objective", objective, OBJECTIVES)
        check_int("max_rounds", max_rounds, minimum=2, where=where, hint="estimation + training")
        self.pool_size = min(pool_size, num_rows)
        self.num_samples = num_samples
        self.min_variance = float(min_variance)
        self.max_variance = float(max_variance)
        self.refresh_every = refresh_every
        self.estimate_batch = estimate_batch
        self.objective = objective
        self.max_rounds = max_rounds
        self._kept: list[int] = []  # rows selected by the last completed refresh
        self._fresh: list[int] = []  # rows that passed in the refresh under way
        self._refreshing = False
        self._scored_in_refresh = 0
        self._pool_variance_sum = 0.0
        self._last_refresh: int | None = None  # step at which the last refresh started
        self._train_order: list[int] = []  # the current pass over the kept rows
        self._train_pos = 0
        self._step: int | None = None  # the step of the last request, and the rounds it has run
        self._round = 0
        self._pending: str | None = None  # "estimate" or "train": what the last request was, and its rows
        self._pending_rows: list[int] = []
        self._stats = {"kept": 0.0, "pass_frac": math.nan, "pool_variance": math.nan, "refreshes": 0.0}
        self._stats.update({"scored": 0.0, "fallback": 0.0})

    # ------------------------------------------------------------------------------------------------ protocol
    def request(self, num_prompts: int, num_generations: int, *, step: int = 0, total_steps: int = 1) -> Request:
        """An estimation round while a refresh is due (never the step's last allowed round), else a training round
        of ``num_prompts`` kept rows."""
        if step != self._step:
            self._step, self._round = step, 0
        self._round += 1
        if self._refresh_due(step) and self._round < self.max_rounds:
            samples = self.num_samples if self.num_samples is not None else num_generations
            if samples < 2:
                raise ValueError(
                    f"variance_select sampler: the reward variance needs >= 2 completions per candidate, got "
                    f"{samples}; set num_samples >= 2 or num_generations >= 2"
                )
            if not self._refreshing:  # a new pool: its passing rows will replace the kept set
                self._refreshing, self._fresh, self._scored_in_refresh, self._pool_variance_sum = True, [], 0, 0.0
                self._last_refresh = step
            remaining = self.pool_size - self._scored_in_refresh
            n = remaining if self.estimate_batch is None else min(remaining, self.estimate_batch)
            self._pending, self._pending_rows = "estimate", self.next(n)
            return Request(list(self._pending_rows), [samples] * n)
        self._pending, self._pending_rows = "train", self._draw(num_prompts)
        return Request(list(self._pending_rows), [num_generations] * num_prompts)

    def observe(self, obs: Observation) -> list[bool]:
        """Estimation rounds: score each row's reward variance, drop every group. Training rounds: keep all."""
        if list(obs.rows) != self._pending_rows:
            raise ValueError(
                f"variance_select sampler: the observation's rows {list(obs.rows)[:8]} are not those of the last "
                f"request {self._pending_rows[:8]}; observe each round once, right after its request"
            )
        self._pending_rows = []  # observed: a second observation of the same round would count it twice
        if self._pending != "estimate":
            return [True] * len(obs.rows)
        values = obs.rewards if self.objective == "reward" else obs.accuracies
        if len(values) != len(obs.rows):
            raise ValueError(
                f"variance_select sampler: {len(values)} groups of {self.objective} for {len(obs.rows)} rows"
            )
        flat, group = obs.flat(values, dtype=torch.float64)  # [N], [N]
        variance = group_reward_variance(flat, group, len(values))  # [P]
        keep = variance_keep(variance, min_variance=self.min_variance, max_variance=self.max_variance)  # [P]
        self._fresh += [row for row, k in zip(obs.rows, keep.tolist(), strict=True) if k]
        self._scored_in_refresh += len(obs.rows)
        self._pool_variance_sum += float(variance.sum())
        self._stats["scored"] += len(obs.rows)
        if self._scored_in_refresh >= self.pool_size:  # the pool is scored: its passing rows become the kept set
            self._kept, self._fresh, self._refreshing = self._fresh, [], False
            self._train_order, self._train_pos = [], 0  # the next training round starts a pass over the new set
            self._stats["pass_frac"] = len(self._kept) / self._scored_in_refresh
            self._stats["pool_variance"] = self._pool_variance_sum / self._scored_in_refresh
            self._stats["refreshes"] += 1
        self._stats["kept"] = float(len(self._kept))
        return [False] * len(obs.rows)

    def metrics(self) -> dict[str, float]:
        return dict(self._stats)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            kept=list(self._kept),
            fresh=list(self._fresh),
            refreshing=self._refreshing,
            scored_in_refresh=self._scored_in_refresh,
            pool_variance_sum=self._pool_variance_sum,
            last_refresh=self._last_refresh,
            train_order=list(self._train_order),
            train_pos=self._train_pos,
            step=self._step,
            round=self._round,
            pending=self._pending,
            pending_rows=list(self._pending_rows),
            stats=dict(self._stats),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._kept, self._fresh = list(state["kept"]), list(state["fresh"])
        self._refreshing, self._scored_in_refresh = state["refreshing"], state["scored_in_refresh"]
        self._pool_variance_sum, self._last_refresh = state["pool_variance_sum"], state["last_refresh"]
        self._train_order, self._train_pos = list(state["train_order"]), state["train_pos"]
        self._step, self._round, self._pending = state["step"], state["round"], state["pending"]
        self._pending_rows = list(state["pending_rows"])
        self._stats = dict(state["stats"])

    # ------------------------------------------------------------------------------------------------ internals
    def _refresh_due(self, step: int) -> bool:
        if self._refreshing or self._last_refresh is None:
            return True
        if not self._kept and step > self._last_refresh:  # the last pool kept nothing: look again, once per step
            return True
        return self.refresh_every > 0 and step - self._last_refresh >= self.refresh_every

    def _draw(self, n: int) -> list[int]:
        """``n`` rows from the kept set (or the rows passed so far in the first refresh), one pass at a time in a
        seeded shuffled order; the uniform epoch order when no row has passed yet."""
        source = self._kept or self._fresh
        if not source:
            self._stats["fallback"] += 1
            return self.next(n)
        # the same seeded passes as the uniform epoch order (and the same stream), over the kept rows
        out, self._train_order, self._train_pos, _ = next_in_passes(
            self._rng, source, self._train_order, self._train_pos, n
        )
        return out


SAMPLERS.add("variance_select", VarianceSelectSampler)
