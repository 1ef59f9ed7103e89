"""VADE's prompt sampler: online Beta difficulty estimates, Thompson sampling of an information-gain score, top-B
selection, two-scale prior decay (VADE, arXiv 2511.18902; the math is in ``grpolab.core.vade``)."""

from __future__ import annotations

from typing import Any

import torch

from grpolab.core.checks import check_int, check_number
from grpolab.core.stats import soft_counts
from grpolab.core.vade import decay_counts, info_gain, posterior_mean, select_top, thompson_draw, update_counts
from grpolab.data.sampler import SAMPLERS, Observation, Request


class VADESampler:
    """VADE (Hu et al., "VADE: Variance-Aware Dynamic Sampling via Online Sample-Level Difficulty Estimation for
    Multimodal RL", arXiv 2511.18902): every training row keeps Beta(α + 1, β + 1) over its pass rate; each step draws
    p̃ ~ Beta(α + 1, β + 1) for the candidates, scores I = p̃ (1 − p̃)², rolls out the top ``num_prompts`` rows
    (G completions each) and updates their counts from the rollouts' accuracies (α ← λ₁ α + r, β ← λ₁ β + G − r).
    Rows not rolled out decay by λ₂ per step. No extra rollouts: one round per step, every group is kept.

    The λ₂ decay is applied lazily: a row stores its counts as of its last update and is multiplied by
    λ₂^(steps since then) when read, which equals decaying every idle row every step (``core.vade.vade_step``).
    Accuracies are counted softly (r = Σ accuracy clamped to [0, 1]); NaN accuracies (failed rewards) are skipped.

    A row may appear more than once in one step's batch (only when ``num_prompts`` exceeds the number of rows; the
    ranking is then used round-robin). All its groups of one step are evidence of the same step, so they are pooled:
    α ← λ₁ α + Σ r, β ← λ₁ β + Σ (n − r), the λ₁ decay applied once per step per row (not once per group, which
    would discount the first group's evidence by λ₁). Rows observed again at a step they were already updated at
    likewise add their counts without a second λ₁.

    Args:
        decay_selected: λ₁, weight the old counts of a rolled-out row keep before its new rollouts are added
            ("fast adaptation"; 0.2 in the paper's framework-figure example, unverified as the training default;
            1 = plain Bayesian accumulation; usually 0.1 to 1).
        decay_unselected: λ₂, per-step decay of the counts of rows not rolled out ("gradual decay"; 0.999 in the
            figure's example, unverified as the training default; 1 = none; usually 0.99 to 1).
        candidates: rows scored per step: 0 (default, the paper) scores every row; k > 0 scores a seeded random
            subset of k rows (for very large datasets; scoring 19,500 rows costs about 4 ms on one CPU core). A
            subset smaller than the batch is enlarged to max(k, num_prompts) rows (all rows when that reaches the
            task size), so the batch never repeats a row while the task has enough distinct rows.

    >>> s = VADESampler(100, seed=0)
    >>> r = s.request(4, 8, step=0)
    >>> len(set(r.rows)), r.num_generations
    (4, [8, 8, 8, 8])
    """

    max_rounds = 1

    def __init__(
        self,
        num_rows: int,
        *,
        seed: int = 0,
        decay_selected: float = 0.2,
        decay_unselected: float = 0.999,
        candidates: int = 0,
    ) -> None:
        if num_rows < 1:
            raise ValueError("the task has no training rows")
        for name, value in (("decay_selected", decay_selected), ("decay_unselected", decay_unselected)):
            check_number(name, value, minimum=0, maximum=1, where="vade sampler", hint="1 = no decay")
        check_int("candidates", candidates, minimum=0, where="vade sampler", hint="0 = every row")
        self.num_rows = num_rows
        self.decay_selected = float(decay_selected)
        self.decay_unselected = float(decay_unselected)
        self.candidates = candidates
        self.alpha = torch.zeros(num_rows, dtype=torch.float64)  # [N] decayed correct counts at the last update
        self.beta = torch.zeros(num_rows, dtype=torch.float64)  # [N] decayed incorrect counts at the last update
        self.updated = torch.full((num_rows,), -1, dtype=torch.long)  # [N] step of the last update (-1: never)
        self._generator = torch.Generator().manual_seed(seed)
        self._metrics: dict[str, float] = {}

    def counts(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, β) of every row as seen at the start of ``step``: λ₂ applied once per step since its last update."""
        idle = (step - 1 - self.updated).clamp(min=0)  # [N] steps the row sat out since its last update
        return decay_counts(self.alpha, self.beta, idle, decay_unselected=self.decay_unselected)  # [N], [N]

    def request(self, num_prompts: int, num_generations: int, *, step: int = 0, total_steps: int = 1) -> Request:
        """The top ``num_prompts`` rows by I(p̃), p̃ a Thompson draw from each candidate's posterior."""
        alpha, beta = self.counts(step)  # [N], [N]
        # a candidate subset smaller than the batch would repeat rows although enough distinct ones exist: enlarge
        # it to the batch (documented choice; the paper scores every row, so it is never smaller there)
        num_candidates = max(self.candidates, num_prompts) if self.candidates > 0 else self.num_rows
        if num_candidates < self.num_rows:
            pool = torch.randperm(self.num_rows, generator=self._generator)[:num_candidates]  # [C]
        else:
            pool = torch.arange(self.num_rows)  # [C = N]
        draws = thompson_draw(alpha[pool], beta[pool], generator=self._generator)  # [C]
        scores = info_gain(draws)  # [C]
        order = select_top(scores, pool.numel())  # [C] best first
        # more prompts than rows (tiny tasks): go round the ranking again (observe pools the repeats' evidence)
        picked = order[torch.arange(num_prompts) % order.numel()]  # [B]
        rows = pool[picked]  # [B]
        self._metrics = {
            "batch_posterior_mean": posterior_mean(alpha[rows], beta[rows]).mean().item(),
            "batch_info_gain": scores[picked].mean().item(),
            "batch_new_frac": (self.updated[rows] < 0).double().mean().item(),
        }
        return Request(rows.tolist(), [num_generations] * num_prompts)

    def observe(self, obs: Observation) -> list[bool]:
        """Update the rolled-out rows' posteriors from their accuracies; every group is kept.

        The groups of one row are pooled first (a row requested twice in one step gets ONE update with the summed
        counts: α ← λ₁ α + r₁ + r₂), since they are evidence of the same step."""
        pooled: dict[int, list[float]] = {}  # row -> [Σ correct, Σ valid rollouts] over this step's groups
        for row, acc in zip(obs.rows, obs.accuracies, strict=True):
            correct, total = soft_counts(acc)  # NaN (failed rewards) skipped, clamped to [0, 1]
            counts = pooled.setdefault(int(row), [0.0, 0.0])
            counts[0] += correct
            counts[1] += float(total)
        if not pooled:
            return []
        rows = torch.tensor(list(pooled), dtype=torch.long)  # [M] distinct rows
        correct = torch.tensor([c for c, _ in pooled.values()], dtype=torch.float64)  # [M]
        total = torch.tensor([n for _, n in pooled.values()], dtype=torch.float64)  # [M]
        correct = torch.minimum(correct, total)  # [M] guard float round-off of the soft sums
        idle = (obs.step - 1 - self.updated[rows]).clamp(min=0)  # [M] steps sat out since the last update
        alpha, beta = decay_counts(
            self.alpha[rows], self.beta[rows], idle, decay_unselected=self.decay_unselected
        )  # [M], [M] the counts as this step saw them
        # λ₁ once per step per row: a row already updated at this step (a second observe of the same step) only
        # adds its new counts
        again = self.updated[rows] == obs.step  # [M]
        new_alpha, new_beta = update_counts(alpha, beta, correct, total, decay_selected=self.decay_selected)  # [M], [M]
        add_alpha, add_beta = update_counts(alpha, beta, correct, total, decay_selected=1.0)  # [M], [M]
        self.alpha[rows] = torch.where(again, add_alpha, new_alpha)  # [M]
        self.beta[rows] = torch.where(again, add_beta, new_beta)  # [M]
        self.updated[rows] = obs.step
        return [True] * len(obs.rows)

    def metrics(self) -> dict[str, float]:
        """Mean posterior mean, mean I(p̃) and fraction of never-seen rows of the last batch; rows seen so far."""
        return {**self._metrics, "rows_seen": float((self.updated >= 0).sum())}

    def state_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha.clone(),
            "beta": self.beta.clone(),
            "updated": self.updated.clone(),
            "generator": self._generator.get_state(),
            "metrics": dict(self._metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["alpha"].numel() != self.num_rows:
            raise ValueError(f"vade sampler state holds {state['alpha'].numel()} rows, the task has {self.num_rows}")
        self.alpha = state["alpha"].clone().double()
        self.beta = state["beta"].clone().double()
        self.updated = state["updated"].clone().long()
        self._generator.set_state(state["generator"])
        self._metrics = dict(state["metrics"])


SAMPLERS.add("vade", VADESampler)
