"""CurES's prompt sampler: a Bayesian prompt sampling distribution plus per-prompt rollout allocation, registered as
``SAMPLERS["cures"]``.

CurES: From Gradient Analysis to Efficient Curriculum Learning for Reasoning LLMs (Zeng, Sun et al., arXiv
2510.01037; official code ``ZexuSun/CurES``: ``epic/stage_0_init_difficulty_sample_size.py`` estimates, then
``epic/epic_sampler.py`` samples, driven by ``runs/scripts/run_epic.sh``). The code alternates two stages, 15 outer
iterations of 10 training steps each (``EpicSampler.__len__`` = 10, checkpoints ``global_step_10``):

1. **Estimation** (``EPICInitializer``): N_min = 4 rollouts of every prompt of the iteration's data give its counts
   (c correct of N, "Accepted" = reward > 0.5) and, from one backward per rollout, the gradient norms g of
   −log π(y|x) with respect to the embedding matrix; from them the prompt's σ (``grpolab.core.cures``).
2. **Training**: each batch draws B prompts without replacement from ``P ∝ exp(sqrt(p̂(1 − p̂))/t)``, p̂ = (c+1)/(N+2)
   (``sampling_distribution``), and rolls out prompt i ``n_i = round(B · N_max · σ_i/Σσ_j)`` times; prompts with
   n_i = 0 are skipped. The advantage is GRPO's, on the resulting groups of unequal size.

Here (the choices, with their reasons):

- **Estimation pool.** The code re-estimates the whole iteration's data (each iteration reads a new chunk,
  ``numina_math_{i}``). Estimating all 19,500 rows of the built-in task every 10 steps would cost 78,000 rollouts
  and as many backward passes per refresh, so a refresh estimates a **pool** of ``pool_size`` rows (default 64,
  at least the step's num_prompts) taken from a seeded epoch order, so successive pools walk through the data as
  the code's chunks do. A refresh costs ``pool_size · n_min`` completions plus one forward-backward each for the
  gradient norms (64 · 4 = 256 by default, two training steps of 16 × 8; about 20 % more generation over a
  10-step window, plus the backward passes). A larger pool gives the draw more prompts to prefer at a proportional
  cost. The estimation is a separate round of a refresh step (``update_every`` steps apart, and the first step):
  ``request`` returns the pool with ``n_min`` completions each and ``measure={"grad_norms"}``, ``observe`` stores
  c, N and σ and keeps no group (they never train; they count as generated), the next request of the same step is
  the training batch. Hence ``max_rounds = 2``. Counts start afresh at each refresh (the code builds a new counter
  per iteration).
- **Allocation budget.** The code shares ``B · N_max`` over every prompt it estimated (a whole data shard), so a
  batch of B prompts gets far fewer rollouts than B · N_max. Here the budget is shared over the **drawn batch**,
  so a training step generates B · N_max completions (up to rounding), the same as GRPO with N_max per prompt.
  n_i is not capped (neither in the code).
- **Zero allocations.** A drawn prompt whose n_i is 0 (σ = 0: all estimation rollouts correct or all wrong, or
  a σ so small that it rounds to 0) is dropped and replaced by the next draw, the allocation being recomputed over
  the new batch, so the batch keeps B prompts whenever the pool holds B prompts with n_i >= 1 (the code's batch
  simply shrinks; a smaller batch here would make the trainer request a second round). The count of such drops
  is logged (``skipped``). When the pool has fewer than B prompts with σ > 0, those share
  ``k · N_max`` by σ and the batch is filled with the next drawn prompts at N_max completions each (``filled``);
  with no σ > 0 at all the batch is B drawn prompts at N_max each (GRPO on the pool).
- **Counts on training rounds.** With ``update_counts`` (default) every training group adds its correct and total
  counts to its prompt's (c, N), the Bayesian update the paper describes to follow the drifting policy; the code
  has this update only under ``filter_groups``, which its script disables. σ is not updated (it needs gradient
  norms, measured on estimation rounds only), so the allocation changes at refreshes only.
- **Group sizes.** ``n_max`` defaults to the trainer's ``num_generations`` (the request's G), n_min to 4.
- **Draws.** Without replacement within a batch (Gumbel-top-k, equal to successive sampling ∝ P), independently
  across batches (the script's ``epic_replacement=True``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from grpolab.core.checks import check_choice, check_int, check_number
from grpolab.core.cures import (
    FORMS,
    allocation_sigma,
    posterior_accuracy,
    rollout_allocation,
    sampling_distribution,
    sampling_logits,
)
from grpolab.data.sampler import SAMPLERS, Observation, Request, UniformSampler


class CurESSampler(UniformSampler):
    """CurES (arXiv 2510.01037): prompts drawn by a Bayesian difficulty distribution over an estimated pool, each
    rolled out in proportion to its gradient spread σ; the pool is re-estimated every ``update_every`` steps from
    ``n_min`` rollouts and their gradient norms (see the module docstring for every choice).

    Args:
        n_min: N_min, estimation rollouts per pool prompt (script and argparse 4; usually 4 to 8); >= 2 (σ needs a
            correct and a wrong rollout).
        n_max: N_max, the average completions per training prompt (script 8, argparse default 16; usually 4 to 16);
            None (default) = the trainer's num_generations.
        update_every: steps between re-estimations (the code's 10 steps per outer iteration; usually 5 to 50); 0 =
            estimate once, at the first step.
        pool_size: prompts estimated per refresh (default 64, usually 32 to 512; at least num_prompts, at most
            the task's rows). The code estimates the whole data chunk of an iteration (see the module docstring).
        threshold: a completion is correct when its accuracy exceeds this (the code's ``correct_threshold`` 0.5).
        form: the sampling distribution, ``"code"`` (default, per-prompt temperature t = (c+1)/scale) or
            ``"entropy"`` (one temperature; a hypothesis for the paper's closed form), ``grpolab.core.cures``.
        scale: the code's 1e-2 in t = (c + 1)/1e-2 (form "code"); > 0.
        temperature: the single temperature of form "entropy" (default 1.0, the script's unused ``entropy_param``);
            > 0, usually 0.05 to 1.
        update_counts: add every training group's counts to its prompt's (c, N) (default True; see the module
            docstring).

    >>> import torch
    >>> s = CurESSampler(100, seed=0, pool_size=4, n_min=2)
    >>> est = s.request(2, 8, step=0)
    >>> est.num_generations, sorted(est.measure)
    ([2, 2, 2, 2], ['grad_norms'])
    >>> acc = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.zeros(2)]
    >>> norms = [torch.tensor([1.0, 3.0]), torch.ones(2), torch.tensor([3.0, 3.0]), torch.ones(2)]
    >>> s.observe(Observation(est.rows, acc, acc, grad_norms=norms))  # an estimation round trains nothing
    [False, False, False, False]
    >>> train = s.request(2, 8, step=0)  # σ = [1, 0, 1.5, 0]: 16 rollouts shared 1 : 1.5
    >>> sorted(train.rows) == sorted([est.rows[0], est.rows[2]]), sorted(train.num_generations)
    (True, [6, 10])
    """

    max_rounds = 2
    # UniformSampler.aux_rng draws the batches; the inherited epoch order (self.next) chooses the pools
    aux_seed = "cures-{seed}"
    legacy_aux_key = "draw_rng"

    def __init__(
        self,
        num_rows: int,
        *,
        seed: int = 0,
        n_min: int = 4,
        n_max: int | None = None,
        update_every: int = 10,
        pool_size: int = 64,
        threshold: float = 0.5,
        form: str = "code",
        scale: float = 0.01,
        temperature: float = 1.0,
        update_counts: bool = True,
    ) -> None:
        super().__init__(num_rows, seed=seed)
        where = "cures sampler"
        check_int("n_min", n_min, minimum=2, where=where, hint="paper 4; σ needs a correct and a wrong rollout")
        if n_max is not None:
            check_int("n_max", n_max, minimum=1, where=where, hint="or None; script 8")
        check_int("update_every", update_every, minimum=0, where=where, hint="0 = once; code 10")
        check_int("pool_size", pool_size, minimum=1, where=where)
        check_number("threshold", threshold, where=where, hint="code 0.5")
        check_choice(where, "form", form, FORMS)
        check_number("scale", scale, above=0, where=where, hint="code 0.01")
        check_number("temperature", temperature, above=0, where=where, hint="usually 0.05 to 1")
        if not isinstance(update_counts, bool):
            raise ValueError(f"cures sampler: update_counts must be true or false, got {update_counts!r}")
        self.n_min = n_min
        self.n_max = n_max
        self.update_every = update_every
        self.pool_size = pool_size
        self.threshold = float(threshold)
        self.form = form
        self.scale = float(scale)
        self.temperature = float(temperature)
        self.update_counts = update_counts
        self._pool: list[int] = []  # rows estimated at the last refresh
        self._correct: list[int] = []  # c per pool row
        self._total: list[int] = []  # N per pool row
        self._sigma: list[float] = []  # σ per pool row (from the refresh's gradient norms)
        self._pending: list[int] | None = None  # the pool of a requested, not yet observed, estimation round
        self._estimated_at: int | None = None  # step of the last refresh
        self._step = 0  # step of the last request
        self._draw: dict[str, float] = {}  # statistics of the last training draw

    # ----------------------------------------------------------------------------------------------- protocol
    def request(self, num_prompts: int, num_generations: int, *, step: int = 0, total_steps: int = 1) -> Request:
        """An estimation round over a fresh pool when a refresh is due (the first request of every
        ``update_every``-step window), else the training batch: ``num_prompts`` prompts drawn from the sampling
        distribution over the pool, each with its allocated number of completions."""
        self._step = step
        if self._pending is None and self._refresh_due(step):
            self._pending = self._draw_pool(max(self.pool_size, num_prompts))
        if self._pending is not None:  # (asked again before its observation: the same estimation round)
            return Request(list(self._pending), [self.n_min] * len(self._pending), measure=frozenset({"grad_norms"}))
        rows, counts = self._draw_batch(num_prompts, self.n_max or num_generations)
        return Request(rows, counts)

    def observe(self, obs: Observation) -> list[bool]:
        """An estimation round: store each pool prompt's counts and σ, keep nothing. A training round: keep every
        group (and, with ``update_counts``, add its counts to its prompt's)."""
        if self._pending is None:
            if self.update_counts:
                index = {row: i for i, row in enumerate(self._pool)}
                for row, acc in zip(obs.rows, obs.accuracies, strict=True):
                    i = index.get(row)
                    if i is not None:
                        self._correct[i] += int((acc.detach().float() > self.threshold).sum())
                        self._total[i] += int(acc.numel())
            return [True] * len(obs.rows)
        if list(obs.rows) != self._pending:
            raise ValueError(
                "cures sampler: the observation after an estimation request must hold the requested pool rows in order"
            )
        if obs.grad_norms is None or len(obs.grad_norms) != len(obs.rows):
            raise ValueError(
                "cures sampler: the estimation round needs per-completion gradient norms (Observation.grad_norms, "
                "measured by the trainer for a request with measure={'grad_norms'})"
            )
        accuracy, group = obs.flat(obs.accuracies)  # [N] float32, [N]
        norms, _ = obs.flat(obs.grad_norms)  # [N]
        sizes = [int(a.numel()) for a in obs.accuracies]
        if norms.shape != accuracy.shape or [int(g.numel()) for g in obs.grad_norms] != sizes:
            raise ValueError(
                "cures sampler: one gradient norm per completion is needed (grad_norms[i] like accuracies[i])"
            )
        correct = accuracy > self.threshold  # [N] the code's "Accepted": score > correct_threshold
        sigma = allocation_sigma(norms, correct, group, len(sizes))  # [P]
        self._pool = list(self._pending)
        self._correct = torch.zeros(len(sizes), dtype=torch.long).index_add(0, group, correct.long()).tolist()
        self._total = sizes
        self._sigma = sigma.tolist()
        self._pending = None
        self._estimated_at = self._step
        return [False] * len(obs.rows)

    def metrics(self) -> dict[str, float]:
        """``estimated`` (1 when this step ran an estimation round), the pool's mean p̂ (``pool_p_hat``), fraction
        with σ > 0 (``pool_informative``) and mean σ (``pool_sigma``), and of the last training draw: the
        allocation spread ``alloc_min`` / ``alloc_max`` (completions per prompt), ``alloc_total``, ``skipped``
        (drawn prompts dropped for n_i = 0 and replaced), ``filled`` (prompts added at N_max because too few had
        σ > 0) and ``prob_ratio`` (max / min sampling probability over the pool; ≈ 1 for the code's form)."""
        out = dict(self._draw)
        if self._pool:
            sigma = torch.tensor(self._sigma, dtype=torch.float64)  # [K]
            out["pool_p_hat"] = float(posterior_accuracy(*self._counts()).mean())
            out["pool_informative"] = float((sigma > 0).double().mean())
            out["pool_sigma"] = float(sigma.mean())
        out["estimated"] = float(self._estimated_at is not None and self._estimated_at == self._step)
        return out

    def probabilities(self) -> list[float]:
        """The current sampling distribution over the pool rows (``pool_rows()`` order)."""
        if not self._pool:
            return []
        return sampling_distribution(
            *self._counts(), form=self.form, scale=self.scale, temperature=self.temperature
        ).tolist()

    def pool_rows(self) -> list[int]:
        """The rows of the current pool."""
        return list(self._pool)

    # ------------------------------------------------------------------------------------------------ helpers
    def _counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self._correct, dtype=torch.float64), torch.tensor(self._total, dtype=torch.float64)

    def _refresh_due(self, step: int) -> bool:
        if self._estimated_at is None:
            return True
        if self.update_every == 0:
            return False
        return step // self.update_every != self._estimated_at // self.update_every

    def _draw_pool(self, k: int) -> list[int]:
        """``k`` distinct rows (all rows when the task has fewer) from the seeded epoch order."""
        k = min(k, self.num_rows)
        rows: list[int] = []
        seen: set[int] = set()
        while len(rows) < k:  # an epoch boundary may repeat a row: skip it
            (row,) = self.next(1)
            if row not in seen:
                seen.add(row)
                rows.append(row)
        return rows

    def _draw_batch(self, num_prompts: int, n_max: int) -> tuple[list[int], list[int]]:
        """``num_prompts`` pool rows drawn without replacement ∝ P, with their allocated completion counts."""
        if not self._pool:
            raise ValueError("cures sampler: a training request before any estimation round was observed")
        logits = sampling_logits(*self._counts(), form=self.form, scale=self.scale, temperature=self.temperature)
        # Gumbel-top-k: sorting logit − log(Exp(1)) keys is successive sampling without replacement ∝ exp(logit).
        keys = []
        for logit in logits.tolist():
            e = self.aux_rng.expovariate(1.0)
            keys.append(math.inf if e <= 0 else logit - math.log(e))
        order = sorted(range(len(keys)), key=lambda i: -keys[i])  # pool indices in draw order
        sigma = self._sigma
        informative = [i for i in order if sigma[i] > 0]
        chosen, queue = informative[:num_prompts], informative[num_prompts:]
        counts: list[int] = []
        dropped: set[int] = set()
        while chosen:
            # n_i = round(B · N_max · σ_i / Σσ) over the drawn batch; a 0 is dropped and replaced by the next draw
            counts = rollout_allocation(torch.tensor([sigma[i] for i in chosen]), n_max=n_max).tolist()
            zero = {i for i, n in zip(chosen, counts, strict=True) if n == 0}
            if not zero:
                break
            dropped |= zero
            chosen = [i for i in chosen if i not in zero] + queue[: len(zero)]
            queue = queue[len(zero) :]
        taken = set(chosen)
        # too few prompts with σ > 0: fill with the next drawn prompts at N_max each (GRPO's group size); a prompt
        # allocated 0 rollouts stays out (CurES gives it none), so the batch may end up smaller
        fill = [i for i in order if i not in taken and i not in dropped][: num_prompts - len(chosen)]
        batch = chosen + fill
        counts = counts[: len(chosen)] + [n_max] * len(fill)
        position = {i: p for p, i in enumerate(order)}
        probs = torch.softmax(logits, dim=0)  # [K]
        self._draw = {
            "alloc_min": float(min(counts)),
            "alloc_max": float(max(counts)),
            "alloc_total": float(sum(counts)),
            "skipped": float(max(position[i] for i in batch) + 1 - len(batch)),
            "filled": float(len(fill)),
            "prob_ratio": float(probs.max() / probs.min()),
        }
        return [self._pool[i] for i in batch], counts

    # ------------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "pool": list(self._pool),
            "correct": list(self._correct),
            "total": list(self._total),
            "sigma": list(self._sigma),
            "pending": None if self._pending is None else list(self._pending),
            "estimated_at": self._estimated_at,
            "step": self._step,
            "draw": dict(self._draw),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._pool = list(state["pool"])
        self._correct = list(state["correct"])
        self._total = list(state["total"])
        self._sigma = list(state["sigma"])
        self._pending = None if state["pending"] is None else list(state["pending"])
        self._estimated_at = state["estimated_at"]
        self._step = state["step"]
        self._draw = dict(state["draw"])


SAMPLERS.add("cures", CurESSampler)
