"""VADE's prompt sampler: online Beta difficulty estimates, Thompson sampling of an information-gain score, top-B
selection, two-scale prior decay (VADE, arXiv 2511.18902; the math is in ``grpolab.core.vade``)."""

from __future__ import annotations

from typing import Any

import torch

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

    Args:
        decay_selected: λ₁, weight the old counts of a rolled-out row keep before its new rollouts are added
            ("fast adaptation"; 0.2 in the paper's framework-figure example, unverified as the training default;
            1 = plain Bayesian accumulation; usually 0.1 to 1).
        decay_unselected: λ₂, per-step decay of the counts of rows not rolled out ("gradual decay"; 0.999 in the
            figure's example, unverified as the training default; 1 = none; usually 0.99 to 1).
        candidates: rows scored per step: 0 (default, the paper) scores every row; k > 0 scores a seeded random
            subset of k rows (for very large datasets; scoring 19,500 rows costs about 4 ms on one CPU core).

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
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"vade sampler: {name} must be in [0, 1] (1 = no decay), got {value!r}")
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
            raise ValueError(f"vade sampler: candidates must be an integer >= 0 (0 = every row), got {candidates!r}")
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
        if 0 < self.candidates < self.num_rows:
            pool = torch.randperm(self.num_rows, generator=self._generator)[: self.candidates]  # [C]
        else:
            pool = torch.arange(self.num_rows)  # [C = N]
        draws = thompson_draw(alpha[pool], beta[pool], generator=self._generator)  # [C]
        scores = info_gain(draws)  # [C]
        order = select_top(scores, pool.numel())  # [C] best first
        # more prompts than candidates (tiny tasks): go round the ranking again
        picked = order[torch.arange(num_prompts) % order.numel()]  # [B]
        rows = pool[picked]  # [B]
        self._metrics = {
            "batch_posterior_mean": posterior_mean(alpha[rows], beta[rows]).mean().item(),
            "batch_info_gain": scores[picked].mean().item(),
            "batch_new_frac": (self.updated[rows] < 0).double().mean().item(),
        }
        return Request(rows.tolist(), [num_generations] * num_prompts)

    def observe(self, obs: Observation) -> list[bool]:
        """Update the rolled-out rows' posteriors from their accuracies; every group is kept."""
        for row, acc in zip(obs.rows, obs.accuracies, strict=True):
            acc = acc.detach().double().cpu()  # [G]
            acc = acc[~torch.isnan(acc)].clamp(0.0, 1.0)  # [G'] failed rewards carry no evidence
            idle = (obs.step - 1 - self.updated[row : row + 1]).clamp(min=0)  # [1]
            alpha, beta = decay_counts(
                self.alpha[row : row + 1], self.beta[row : row + 1], idle, decay_unselected=self.decay_unselected
            )  # [1], [1] the counts as this step saw them
            new_alpha, new_beta = update_counts(
                alpha,
                beta,
                acc.sum().reshape(1),
                torch.tensor([float(acc.numel())], dtype=torch.float64),
                decay_selected=self.decay_selected,
            )  # [1], [1]
            self.alpha[row], self.beta[row] = new_alpha[0], new_beta[0]
            self.updated[row] = obs.step
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
