"""MMR1's Variance-Aware Sampling (VAS) prompt sampler, registered as ``SAMPLERS["vas"]``.

MMR1: Enhancing Multimodal Reasoning with Variance-Aware Sampling and Open Resources (Leng et al., arXiv
2509.21268; code ``LengSicong/MMR1``: ``verl/curriculum/samplers.py`` ``MixedCurriculumSampler``,
``verl/trainer/ray_trainer.py`` ``_update_curriculum_weights``, ``examples/mmr1.yaml``). Each training batch of B
prompts mixes ``n_w = int(B · λ)`` prompts drawn *with replacement* in proportion to their sampling weight with
``B − n_w`` prompts from a seeded uniform epoch order, interleaved (weighted, uniform, weighted, ...) as the code
does. Every ``update_every`` steps the weights are re-estimated: ``curriculum_rollouts`` completions of each prompt
of an estimation pool give its VPS = w_ovs · OVS + w_tds · TDS (``grpolab.core.vas``), min-max normalised over
the pool and smoothed with momentum.

Interpretation (the paper re-scores the *whole* training set at each refresh): here a refresh scores a random pool
of ``pool_size`` rows (all rows when the task has no more), because scoring every row of a large task (the built-in
arithmetic task has 19,500) every few steps would cost many times the training generation. A refresh costs
``pool_size · curriculum_rollouts`` completions (64 · 8 = 512 by default, the same as 4 training steps of 16
prompts × 8 completions, so with ``update_every = 4`` VAS roughly doubles the generation of a GRPO run; the paper's
whole-set refresh of 15k prompts every 4 steps of 512 prompts costs about 7×). A larger pool covers more of the
data per refresh at a proportional cost. Rows outside the current pool get a new weight of 0 before the momentum
update: with the default momentum 0 the weighted half of each batch is drawn from the latest pool only (the
freshest scores), with momentum m > 0 earlier pools keep a weight decaying as m^k (and a row scored for the first
time after the first refresh enters with (1 − m) · its new weight). Rows never scored have weight 0 in the weighted
part; the uniform part still reaches every row once per epoch.

The estimation round is a separate request at the start of a refresh step: ``request`` returns the pool with
``curriculum_rollouts`` completions each, ``observe`` scores it and keeps no group (they never train: an estimation
round, whose completions count as generated cost), and the next request of the same step is the training batch,
whose groups are all kept. Hence ``max_rounds = 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from grpolab.core.checks import check_choice, check_int, check_number, is_number
from grpolab.core.vas import (
    DIVERSITY_MEASURES,
    min_max_normalize,
    momentum_update,
    outcome_variance,
    trajectory_diversity,
    variance_promotion_score,
)
from grpolab.data.sampler import SAMPLERS, Observation, Request, UniformSampler

#: What an estimation round asks the trainer for beyond rewards: the completions' token ids (trajectory diversity).
DIVERSITY = frozenset({"completions"})


class VASSampler(UniformSampler):
    """Variance-Aware Sampling (MMR1, arXiv 2509.21268): half of each batch by VPS weight, half uniform; the
    weights are re-estimated from extra rollouts of a random pool every ``update_every`` steps.

    Args:
        mixture_ratio: λ, the fraction of each batch drawn by weight (``curriculum_mixture_ratio``: 0.5 in the yaml,
            0.8 in the advanced example, 1.0 in the README ablation; in [0, 1]). ``n_w = int(B · λ)``.
        update_every: T_update, steps between refreshes (``curriculum_update_freq``: 4 in the yaml; usually 1 to 10;
            the code's 0 = once per epoch is not supported here). The first request of step 0 always refreshes.
        pool_size: rows scored per refresh (see the module docstring; default 64, usually 32 to 512; all rows when
            the task has fewer).
        curriculum_rollouts: n_c, completions per pool row used to score it (``curriculum_rollout_n``: 8; usually 4
            to 16; at least 2 so that OVS and TDS can be non-zero).
        weights: (w_ovs, w_tds), the VPS weights (the repository's multi-metric example 0.8 / 0.2; its yaml default
            uses OVS alone, 1.0 / 0; usually 0.7 to 1 for OVS). Both >= 0, not both 0.
        diversity: the TDS measure, ``"edit_distance"`` (mean pairwise Levenshtein distance over token ids divided by
            the longer length), ``"distinct_n"`` (distinct 3-grams / 3-grams) or ``"self_bleu"`` (1 − self-BLEU-123);
            see ``grpolab.core.vas.trajectory_diversity``.
        momentum: m in [0, 1], w ← m · w_old + (1 − m) · w_new (``curriculum_momentum``: 0 in the yaml, the new
            weights replace the old; 1 freezes them). The first refresh takes its weights as they are.

    When every weight is 0 (all pool scores equal, e.g. a model that fails every pool prompt and writes identical
    answers) the weighted part draws uniformly from the latest pool instead, so a batch still has n_w pool rows.

    >>> import torch
    >>> s = VASSampler(100, seed=0, pool_size=2, curriculum_rollouts=2)
    >>> est = s.request(4, 8, step=0, total_steps=10)  # step 0: an estimation round over the pool
    >>> est.num_generations
    [2, 2]
    >>> acc = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])]  # OVS 0.25 and 0
    >>> s.observe(Observation(est.rows, acc, acc, [[[1], [2]], [[3], [3]]], step=0))  # never trains
    [False, False]
    >>> s.weight(est.rows[0]) > 0.99 and s.weight(est.rows[1]) == 0.0
    True
    >>> len(s.request(4, 8, step=0, total_steps=10).rows)  # then the training batch: 2 weighted + 2 uniform
    4
    """

    max_rounds = 2
    # UniformSampler.aux_rng draws the pool and the weighted rows; the uniform part keeps the seeded epoch order
    aux_seed = "vas-{seed}"
    legacy_aux_key = "weighted_rng"

    def __init__(
        self,
        num_rows: int,
        *,
        seed: int = 0,
        mixture_ratio: float = 0.5,
        update_every: int = 4,
        pool_size: int = 64,
        curriculum_rollouts: int = 8,
        weights: Sequence[float] = (0.8, 0.2),
        diversity: str = "edit_distance",
        momentum: float = 0.0,
    ) -> None:
        super().__init__(num_rows, seed=seed)
        where = "vas sampler"
        check_number("mixture_ratio", mixture_ratio, minimum=0, maximum=1, where=where, hint="paper 0.5")
        check_int("update_every", update_every, minimum=1, where=where)
        check_int("pool_size", pool_size, minimum=1, where=where)
        hint = "paper 8; one rollout has no outcome variance"
        check_int("curriculum_rollouts", curriculum_rollouts, minimum=2, where=where, hint=hint)
        if (
            isinstance(weights, (str, bytes))
            or not isinstance(weights, Sequence)
            or len(weights) != 2
            or not all(is_number(w) and w >= 0 for w in weights)
            or not any(w > 0 for w in weights)
        ):
            raise ValueError(
                f"vas sampler: weights must be two numbers (w_ovs, w_tds) >= 0, not both 0 (paper 0.8, 0.2), "
                f"got {weights!r}"
            )
        check_choice(where, "diversity", diversity, DIVERSITY_MEASURES)
        check_number("momentum", momentum, minimum=0, maximum=1, where=where, hint="0 replaces the weights")
        self.mixture_ratio = float(mixture_ratio)
        self.update_every = update_every
        self.pool_size = pool_size
        self.curriculum_rollouts = curriculum_rollouts
        self.ovs_weight, self.tds_weight = float(weights[0]), float(weights[1])
        self.diversity = diversity
        self.momentum = float(momentum)
        self._weights: dict[int, float] = {}  # row -> sampling weight (> 0 only; absent rows weigh 0)
        self._pool: list[int] = []  # rows scored at the last refresh
        self._pending: list[int] | None = None  # the pool of a requested, not yet observed, estimation round
        self._refreshed_at: int | None = None  # step of the last refresh
        self._step = 0  # step of the last request
        self._stats: dict[str, float] = {}  # pool statistics of the last refresh
        self._weighted_slots: list[bool] = []  # which positions of the last training request were drawn by weight
        self._batch_stats: dict[str, float] = {}  # signal in the last training batch, weighted vs uniform part

    # ----------------------------------------------------------------------------------------------- protocol
    def request(self, num_prompts: int, num_generations: int, *, step: int = 0, total_steps: int = 1) -> Request:
        """An estimation round over a fresh pool when a refresh is due (the first request of every
        ``update_every``-step window), else the training batch: ``int(num_prompts · λ)`` weighted rows interleaved
        with uniform ones, ``num_generations`` completions each."""
        self._step = step
        if self._pending is not None:  # the estimation round was not observed (e.g. asked again): ask it again
            return Request(list(self._pending), [self.curriculum_rollouts] * len(self._pending), measure=DIVERSITY)
        if self._refresh_due(step):
            if self.num_rows <= self.pool_size:
                pool = list(range(self.num_rows))
            else:
                pool = sorted(self.aux_rng.sample(range(self.num_rows), self.pool_size))
            self._pending = pool
            return Request(list(pool), [self.curriculum_rollouts] * len(pool), measure=DIVERSITY)
        n_weighted = int(num_prompts * self.mixture_ratio)  # MixedCurriculumSampler: int(B · λ)
        weighted = self._draw_weighted(n_weighted)
        uniform = self.next(num_prompts - n_weighted)
        rows, slots = [], []
        for i in range(max(len(weighted), len(uniform))):  # interleaved as the code does: w0, u0, w1, u1, ...
            rows.extend(weighted[i : i + 1] + uniform[i : i + 1])
            slots.extend([True] * len(weighted[i : i + 1]) + [False] * len(uniform[i : i + 1]))
        self._weighted_slots = slots
        return Request(rows, [num_generations] * num_prompts)

    def observe(self, obs: Observation) -> list[bool]:
        """An estimation round: score the pool (VPS), update the weights and keep nothing. A training round: keep
        every group."""
        if self._pending is None:
            self._record_batch(obs)
            return [True] * len(obs.rows)
        if list(obs.rows) != self._pending:
            raise ValueError(
                "vas sampler: the observation after an estimation request must hold the requested pool rows in order"
            )
        if self.tds_weight > 0 and len(obs.completions) != len(obs.rows):
            raise ValueError(
                "vas sampler: the estimation round needs the completions' token ids (Observation.completions)"
            )
        accuracy, group = obs.flat(obs.accuracies)  # [N] float32, [N]
        ovs = outcome_variance(accuracy, group)  # [P] p(1 − p)
        if len(obs.completions) == len(obs.rows):
            tds = trajectory_diversity(obs.completions, measure=self.diversity).to(ovs)  # [P]
        else:
            tds = torch.zeros_like(ovs)  # [P] w_tds = 0: diversity unused
        vps = variance_promotion_score(ovs, tds, ovs_weight=self.ovs_weight, tds_weight=self.tds_weight)  # [P]
        fresh = min_max_normalize(vps)  # [P] in [0, 1]
        # Momentum over every row that holds a weight: rows outside this pool get a new weight of 0, rows without a
        # weight an old weight of 0. The first refresh takes the new weights as they are (as the code does).
        rows = sorted(set(self._weights) | set(self._pending))
        new = dict(zip(self._pending, fresh.tolist(), strict=True))
        old_w = torch.tensor([self._weights.get(r, 0.0) for r in rows], dtype=torch.float64)  # [R]
        new_w = torch.tensor([new.get(r, 0.0) for r in rows], dtype=torch.float64)  # [R]
        momentum = 0.0 if self._refreshed_at is None else self.momentum
        smoothed = momentum_update(old_w, new_w, momentum=momentum)  # [R]
        self._weights = {r: w for r, w in zip(rows, smoothed.tolist(), strict=True) if w > 0}
        self._pool = list(self._pending)
        self._pending = None
        self._refreshed_at = obs.step
        self._stats = {
            "pool_vps": float(vps.mean()),
            "pool_ovs": float(ovs.mean()),
            "pool_tds": float(tds.mean()),
            "pool_ovs_positive": float((ovs > 0).float().mean()),
            "weighted_rows": float(len(self._weights)),
        }
        return [False] * len(obs.rows)

    def metrics(self) -> dict[str, float]:
        """Statistics of the last refresh's pool (``pool_vps``, ``pool_ovs``, ``pool_tds`` means, ``pool_ovs_positive``
        the fraction with OVS > 0, ``weighted_rows`` the rows with a weight), ``refreshed`` (1 when this step
        re-estimated the weights) and, for the last training batch, ``mixed_weighted`` / ``mixed_uniform``: the
        fraction of its weighted / uniform groups whose accuracies differ (the groups that carry a GRPO signal,
        which VAS aims to raise)."""
        refreshed = float(self._refreshed_at is not None and self._refreshed_at == self._step)
        return {**self._stats, **self._batch_stats, "refreshed": refreshed}

    def weight(self, row: int) -> float:
        """The current sampling weight of a row (0 when it was never scored or scored lowest)."""
        return self._weights.get(row, 0.0)

    # ------------------------------------------------------------------------------------------------ helpers
    def _refresh_due(self, step: int) -> bool:
        if self._refreshed_at is None:
            return True
        return step // self.update_every != self._refreshed_at // self.update_every

    def _record_batch(self, obs: Observation) -> None:
        """Fraction of the training batch's weighted and uniform groups with differing accuracies."""
        if len(self._weighted_slots) != len(obs.rows):
            return  # not the batch this sampler requested (a direct observe call): nothing to attribute
        mixed = [bool(a.numel() > 1 and (a.max() - a.min()).item() > 0) for a in obs.accuracies]
        self._batch_stats = {}
        for name, part in (("mixed_weighted", True), ("mixed_uniform", False)):
            flags = [m for m, w in zip(mixed, self._weighted_slots, strict=True) if w == part]
            if flags:
                self._batch_stats[name] = sum(flags) / len(flags)

    def _draw_weighted(self, k: int) -> list[int]:
        """``k`` rows drawn with replacement in proportion to their weight (WeightedRandomSampler); uniformly from
        the latest pool when no row has a positive weight."""
        if k == 0:
            return []
        if self._weights:
            rows = sorted(self._weights)
            return self.aux_rng.choices(rows, weights=[self._weights[r] for r in rows], k=k)
        candidates = self._pool or list(range(self.num_rows))
        return [candidates[self.aux_rng.randrange(len(candidates))] for _ in range(k)]

    # ------------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        rows = sorted(self._weights)
        return {
            **super().state_dict(),
            "weight_rows": rows,
            "weight_values": [self._weights[r] for r in rows],
            "pool": list(self._pool),
            "pending": None if self._pending is None else list(self._pending),
            "refreshed_at": self._refreshed_at,
            "step": self._step,
            "stats": dict(self._stats),
            "weighted_slots": list(self._weighted_slots),
            "batch_stats": dict(self._batch_stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._weights = dict(zip(state["weight_rows"], state["weight_values"], strict=True))
        self._pool = list(state["pool"])
        self._pending = None if state["pending"] is None else list(state["pending"])
        self._refreshed_at = state["refreshed_at"]
        self._step = state["step"]
        self._stats = dict(state["stats"])
        self._weighted_slots = list(state["weighted_slots"])
        self._batch_stats = dict(state["batch_stats"])


SAMPLERS.add("vas", VASSampler)
