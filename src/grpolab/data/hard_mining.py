"""Fleming-R1's two-stage prompt sampler with adaptive hard-sample mining (Fleming-R1, arXiv 2509.15279; the math is
in ``grpolab.core.hard_mining``)."""

from __future__ import annotations

from typing import Any

import torch

from grpolab.core.checks import check_int, check_number
from grpolab.core.hard_mining import hard_count, in_stage_two, mine_hard, pass_rates
from grpolab.core.stats import soft_counts
from grpolab.data.sampler import SAMPLERS, Observation, Request, UniformSampler


class HardMiningSampler(UniformSampler):
    """Two-stage RLVR with adaptive hard-sample mining (Liu et al., "Fleming-R1: Toward Expert-Level Medical Reasoning
    via Reinforcement Learning", arXiv 2509.15279).

    - Stage 1 (step < stage1_fraction · total_steps): uniform epochs over the rows (``UniformSampler``); every
      rolled-out row's correct / total rollout counts are recorded.
    - At the first stage-2 request the miner fixes the hard pool: rows with p̂ = correct / total ≤ τ among rows with
      at least ``min_rollouts`` rollouts (``core.hard_mining.mine_hard``).
    - Stage 2: ``hard_count`` = round(hard_fraction · B) rows of each batch come from the pool (seeded; without
      replacement, or the whole pool plus draws with replacement when it is smaller), the rest from the uniform
      epoch order. Counts keep updating.
    - Adaptive: every ``remine_every`` stage-2 steps the pool is mined again from the running counts, so rows whose
      pass rate rose above τ leave it and hard rows met in the uniform share join it. ``remine_every = 0`` keeps
      the stage-switch pool and only drops rows once their running p̂ exceeds τ.
    - An empty pool gives a uniform batch (metric ``uniform_fallback`` = 1).

    One round per step, every group kept. Accuracies count softly (Σ accuracy clamped to [0, 1]); NaN (failed
    reward) entries are skipped. Hard prompts the policy never solves give all-wrong groups, which carry no GRPO
    signal; that is the paper's trade-off (it emphasises persistent failures), not a bug of the sampler.

    Args:
        stage1_fraction: share of the run in stage 1 (unverified, the paper's split was not found; usually 0.3 to
            0.8).
        tau: pass-rate threshold of a hard row, p̂ ≤ τ (unverified; 0.25 = at most 2 of 8 correct; usually 0 to 0.5).
        hard_fraction: share of a stage-2 batch drawn from the pool (unverified; 1 = hard rows only; usually 0.25
            to 1).
        min_rollouts: rollouts a row needs before the miner judges it (1 = any observed row; usually 1 to 2·G).
        remine_every: stage-2 steps between full re-minings (1 = every step, the default; 0 = fixed pool that only
            loses rows whose running pass rate exceeds τ).

    >>> s = HardMiningSampler(10, seed=0, stage1_fraction=0.5)
    >>> s.request(2, 4, step=0, total_steps=4).num_generations
    [4, 4]
    """

    max_rounds = 1
    # UniformSampler.aux_rng draws the hard rows, so stage 1 draws exactly UniformSampler(seed)'s order
    aux_seed = "hard_mining:{seed}"
    legacy_aux_key = "hard_rng"

    def __init__(
        self,
        num_rows: int,
        *,
        seed: int = 0,
        stage1_fraction: float = 0.5,
        tau: float = 0.25,
        hard_fraction: float = 0.5,
        min_rollouts: int = 1,
        remine_every: int = 1,
    ) -> None:
        super().__init__(num_rows, seed=seed)
        where = "hard_mining sampler"
        for name, value in (("stage1_fraction", stage1_fraction), ("tau", tau), ("hard_fraction", hard_fraction)):
            check_number(name, value, minimum=0, maximum=1, where=where)
        check_int("min_rollouts", min_rollouts, minimum=1, where=where)
        check_int("remine_every", remine_every, minimum=0, where=where, hint="0 = a fixed pool")
        self.stage1_fraction = float(stage1_fraction)
        self.tau = float(tau)
        self.hard_fraction = float(hard_fraction)
        self.min_rollouts = min_rollouts
        self.remine_every = remine_every
        self.correct = torch.zeros(num_rows, dtype=torch.float64)  # [N] correct rollouts (soft) so far
        self.total = torch.zeros(num_rows, dtype=torch.float64)  # [N] rollouts so far
        self.pool: list[int] | None = None  # the hard rows; None until the first stage-2 request
        self.mined_at = -1  # step of the last full mining
        self._num_hard = 0
        self._metrics: dict[str, float] = {}

    def _mine(self, step: int) -> None:
        self.pool = mine_hard(self.correct, self.total, tau=self.tau, min_rollouts=self.min_rollouts).tolist()
        self.mined_at = step

    def _update_pool(self, step: int) -> None:
        """Mine at the stage switch; afterwards re-mine every ``remine_every`` steps, or (0) drop rows that got easy."""
        if self.pool is None or (self.remine_every > 0 and step - self.mined_at >= self.remine_every):
            self._mine(step)
        elif self.remine_every == 0 and self.pool:
            rates = pass_rates(self.correct, self.total)  # [N]
            self.pool = [row for row in self.pool if not rates[row].item() > self.tau + 1e-9]

    def _draw_hard(self, k: int) -> list[int]:
        """``k`` pool rows: without replacement, or the whole pool plus draws with replacement when it is smaller."""
        pool = self.pool or []
        if k <= len(pool):
            return self.aux_rng.sample(pool, k)
        rows = self.aux_rng.sample(pool, len(pool))
        return rows + self.aux_rng.choices(pool, k=k - len(pool))

    def request(self, num_prompts: int, num_generations: int, *, step: int = 0, total_steps: int = 1) -> Request:
        """Stage 1: uniform. Stage 2: round(hard_fraction · B) rows from the hard pool, the rest uniform."""
        stage_two = in_stage_two(step, total_steps, stage1_fraction=self.stage1_fraction)
        k = 0
        if stage_two:
            self._update_pool(step)
            k = hard_count(num_prompts, len(self.pool or []), hard_fraction=self.hard_fraction)
        hard = self._draw_hard(k) if k else []
        self._num_hard = k  # the first k groups of the observation are the hard rows
        rows = hard + self.next(num_prompts - k)
        self._metrics = {
            "stage": 2.0 if stage_two else 1.0,
            "hard_in_batch": float(k),
            "pool_size": float(len(self.pool or [])),  # 0 until the stage switch
            "uniform_fallback": float(stage_two and not self.pool),  # stage 2 with an empty pool: a uniform batch
        }
        return Request(rows, [num_generations] * num_prompts)

    def observe(self, obs: Observation) -> list[bool]:
        """Record each group's correct / total rollouts; every group is kept."""
        hard_correct = hard_total = 0.0
        for i, (row, acc) in enumerate(zip(obs.rows, obs.accuracies, strict=True)):
            correct, total = soft_counts(acc)  # NaN (failed rewards) skipped, clamped to [0, 1]
            self.correct[row] += correct
            self.total[row] += total
            if i < self._num_hard:
                hard_correct, hard_total = hard_correct + correct, hard_total + total
        if hard_total:  # how the policy does on the mined rows this step
            self._metrics["hard_pass_rate"] = hard_correct / hard_total
        return [True] * len(obs.rows)

    def metrics(self) -> dict[str, float]:
        """stage (1 or 2), hard rows in the batch, pool size, uniform_fallback (stage 2 with an empty pool), rows
        seen; hard_pass_rate (mean accuracy of this step's hard rows) on steps that drew hard rows."""
        return {**self._metrics, "rows_seen": float((self.total > 0).sum())}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "correct": self.correct.clone(),
            "total": self.total.clone(),
            "pool": None if self.pool is None else list(self.pool),
            "mined_at": self.mined_at,
            "num_hard": self._num_hard,
            "metrics": dict(self._metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["total"].numel() != self.num_rows:
            raise ValueError(
                f"hard_mining sampler state holds {state['total'].numel()} rows, the task has {self.num_rows}"
            )
        super().load_state_dict(state)
        self.correct = state["correct"].clone().double()
        self.total = state["total"].clone().double()
        self.pool = None if state["pool"] is None else list(state["pool"])
        self.mined_at = state["mined_at"]
        self._num_hard = state["num_hard"]
        self._metrics = dict(state["metrics"])


SAMPLERS.add("hard_mining", HardMiningSampler)
