"""Independent cross-check of the ``vade``, ``hard_mining`` and ``variance_select`` prompt samplers and of the
``dual`` verifier against plain-loop reference implementations.

Written from the papers / official material, not from grpolab's implementation:

- VADE (arXiv 2511.18902): the framework figure of the project page (VADE-RL/VADE-RL.github.io
  ``asset/main_framework.png``): p ~ Beta(α+1, β+1), I = p(1−p)², "Select top-B", selected rows
  α ← λ₁α + r, β ← λ₁β + G − r ("fast adaptation"), unselected rows α ← λ₂α, β ← λ₂β ("gradual decay"); the
  figure's worked example fixes λ₁ = 0.2, λ₂ = 0.999 ((0.1, 8.4) with 1/8 correct → (1.02, 8.68); (2.7, 5.3) with
  4/8 → (4.54, 5.06); (9.0, 0.2) idle → (8.991, 0.1998), the figure prints "1.998"). The method text was out of
  reach. The reference applies λ₂ EAGERLY (every idle row, every step); grpolab applies it lazily (documented).
- Fleming-R1 (arXiv 2509.15279): abstract only ("two-stage RLVR ... adaptive hard-sample mining"); the spec's
  test "the miner returns exactly the prompts with p̂ ≤ τ after stage 1". Stage split, τ, batch mix and re-mining
  are grpolab's documented choices; the reference follows those documented rules.
- Temporal-RLT (arXiv 2506.01908, abstract) and the authors' released code (appletea233/Temporal-R1,
  ``verl/utils/reward_score/tvg.py``: temporal IoU = max(0, min(e) − max(s)) / (max(e) − min(s)); the answer is
  ``<answer>{"start_time": "s", "end_time": "e"}</answer>``). The online pool refresh is grpolab's documented
  choice (the paper selects offline).

Sampler checks go through the protocol exactly as ``Trainer._sample_batch`` drives it (request / observe until
``num_prompts`` groups are kept or ``max_rounds`` rounds ran), with a deterministic synthetic "world" that scores
each completion from (row, step, round, position).
"""

from __future__ import annotations

import io
import math
import random
from fractions import Fraction

import pytest
import torch

import grpolab.data.vade as vade_module
from grpolab.core.hard_mining import mine_hard
from grpolab.core.vade import decay_counts, info_gain, thompson_draw, update_counts, vade_step
from grpolab.core.variance_select import group_reward_variance, variance_keep
from grpolab.data.hard_mining import HardMiningSampler
from grpolab.data.sampler import SAMPLERS, Observation, UniformSampler
from grpolab.data.vade import VADESampler
from grpolab.data.variance_select import VarianceSelectSampler
from grpolab.rewards.dual import closeness, dual_parts, parse_interval, reference_kind, temporal_iou
from grpolab.rewards.verifiers import VERIFIERS

REL = 1e-9


# ============================================================================================ protocol driver
def world_accuracy(row: int, step: int, rnd: int, pos: int, *, nan_rate: float = 0.0) -> float:
    """A deterministic synthetic verifier: row r has pass rate (r mod 5) / 4 (0, ¼, ½, ¾, 1), so rows 0, 5, 10 ...
    are always wrong and rows 4, 9, ... always right; occasionally NaN (a failed reward) when asked."""
    rng = random.Random(f"{row}:{step}:{rnd}:{pos}")
    if nan_rate and rng.random() < nan_rate:
        return math.nan
    return 1.0 if rng.random() < (row % 5) / 4 else 0.0


def drive(sampler, *, steps, num_rows, num_prompts, G, total_steps, start=0, nan_rate=0.0, log=None):
    """Trainer._sample_batch's loop, checking the protocol invariants on every round. Returns a log of rounds:
    (step, round, rows, num_generations, keep flags, accuracies)."""
    log = [] if log is None else log
    for step in range(start, start + steps):
        needed, rounds = num_prompts, 0
        while needed > 0 and rounds < sampler.max_rounds:
            req = sampler.request(needed, G, step=step, total_steps=total_steps)
            assert len(req.rows) == len(req.num_generations) >= 1
            assert all(isinstance(r, int) and 0 <= r < num_rows for r in req.rows), req.rows
            assert all(isinstance(n, int) and n >= 1 for n in req.num_generations), req.num_generations
            accs = [
                torch.tensor([world_accuracy(r, step, rounds, j, nan_rate=nan_rate) for j in range(n)])
                for r, n in zip(req.rows, req.num_generations, strict=True)
            ]  # [G_i] each
            rewards = [torch.nan_to_num(a, nan=0.0) for a in accs]  # [G_i] each
            completions = [[[1 + r, 2] for _ in range(n)] for r, n in zip(req.rows, req.num_generations, strict=True)]
            obs = Observation(list(req.rows), rewards, accs, completions, step=step, total_steps=total_steps)
            keep = sampler.observe(obs)
            assert len(keep) == len(req.rows) and all(isinstance(k, bool) for k in keep)
            log.append((step, rounds, list(req.rows), list(req.num_generations), list(keep), accs))
            rounds += 1
            needed -= min(sum(keep), needed)
        assert isinstance(sampler.metrics(), dict)
    return log


def requests_only(log):
    return [(s, r, rows, ng, keep) for s, r, rows, ng, keep, _ in log]


def roundtrip(sampler, fresh):
    """state_dict -> torch.save -> torch.load (as the trainer's checkpoint does) -> load_state_dict(fresh)."""
    buf = io.BytesIO()
    torch.save(sampler.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=False))
    return fresh


def soft_counts(acc: torch.Tensor) -> tuple[float, float]:
    """(correct, rollouts) of one group: NaN entries skipped, accuracies clamped to [0, 1] (documented)."""
    vals = [min(max(float(a), 0.0), 1.0) for a in acc.tolist() if not math.isnan(a)]
    return sum(vals), float(len(vals))


# ================================================================================================ VADE
class RefVADE:
    """The framework figure, eagerly: λ₁ update of the rows rolled out this step, λ₂ decay of every other row."""

    def __init__(self, n, l1, l2):
        self.a, self.b, self.l1, self.l2 = [0.0] * n, [0.0] * n, l1, l2

    @staticmethod
    def top_b(draws, B):
        scores = [p * (1 - p) * (1 - p) for p in draws]
        order = sorted(range(len(draws)), key=lambda i: (-scores[i], i))  # ties: lower index first
        return order[:B]

    def end_step(self, rows, accs):
        seen = set()
        for row, acc in zip(rows, accs, strict=True):
            r, n = soft_counts(acc)
            self.a[row] = self.l1 * self.a[row] + r
            self.b[row] = self.l1 * self.b[row] + (n - r)
            seen.add(row)
        for i in range(len(self.a)):
            if i not in seen:
                self.a[i] *= self.l2
                self.b[i] *= self.l2


class FixedDraws:
    """Stands in for ``thompson_draw``: seeded uniform 'draws', recording the (α, β) each request saw."""

    def __init__(self, seed):
        self.rng, self.calls = random.Random(seed), []

    def __call__(self, alpha, beta, *, generator=None):
        draws = [self.rng.random() for _ in range(alpha.numel())]
        self.calls.append((alpha.tolist(), beta.tolist(), draws))
        return torch.tensor(draws, dtype=torch.float64)


def test_vade_figure_worked_example_by_hand():
    a, b = update_counts(
        torch.tensor([0.1, 2.7]), torch.tensor([8.4, 5.3]), torch.tensor([1.0, 4.0]), torch.tensor([8.0, 8.0])
    )
    assert a.tolist() == pytest.approx([1.02, 4.54])  # 0.2·0.1 + 1, 0.2·2.7 + 4
    assert b.tolist() == pytest.approx([8.68, 5.06])  # 0.2·8.4 + 7, 0.2·5.3 + 4
    a, b = decay_counts(torch.tensor([9.0]), torch.tensor([0.2]), 1)
    assert a.item() == pytest.approx(8.991) and b.item() == pytest.approx(0.1998)  # figure prints 1.998 (typo)
    # spec unit test: (α, β) = (3, 1) → posterior Beta(4, 2), mean 4/6
    g = torch.Generator().manual_seed(0)
    draws = thompson_draw(torch.full((40_000,), 3.0), torch.full((40_000,), 1.0), generator=g)  # [40000]
    mean, var = 4 / 6, 4 * 2 / (6**2 * 7)  # Beta(4, 2)
    assert draws.mean().item() == pytest.approx(mean, abs=0.006)  # 5 standard errors
    assert draws.var().item() == pytest.approx(var, rel=0.05)


def test_vade_info_gain_shape():
    grid = [i / 3000 for i in range(3001)]
    ref = [p * (1 - p) ** 2 for p in grid]
    got = info_gain(torch.tensor(grid, dtype=torch.float64)).tolist()
    assert got == pytest.approx(ref, abs=1e-15)
    assert grid[max(range(len(grid)), key=lambda i: got[i])] == pytest.approx(1 / 3)
    assert got[0] == 0 and got[-1] == 0 and max(got) == pytest.approx(4 / 27)
    # asymmetric: a hard prompt (p = 0.2) beats an easy one (p = 0.8)
    assert info_gain(torch.tensor([0.2])).item() > info_gain(torch.tensor([0.8])).item()


@pytest.mark.parametrize("seed", range(3))
def test_vade_step_and_lazy_decay_match_eager_loops(seed):
    gen = torch.Generator().manual_seed(seed)
    N, l1, l2 = 9, 0.3, 0.9
    alpha = torch.rand(N, generator=gen, dtype=torch.float64) * 5  # [N]
    beta = torch.rand(N, generator=gen, dtype=torch.float64) * 5  # [N]
    sel = torch.randperm(N, generator=gen)[:4]  # [4]
    total = torch.randint(1, 9, (4,), generator=gen).double()  # [4]
    correct = (torch.rand(4, generator=gen, dtype=torch.float64) * total).floor()  # [4]
    a, b = vade_step(alpha, beta, sel, correct, total, decay_selected=l1, decay_unselected=l2)
    ea, eb = alpha.tolist(), beta.tolist()
    for i in range(N):
        if i in sel.tolist():
            k = sel.tolist().index(i)
            ea[i], eb[i] = l1 * ea[i] + correct[k].item(), l1 * eb[i] + total[k].item() - correct[k].item()
        else:
            ea[i], eb[i] = l2 * ea[i], l2 * eb[i]
    assert a.tolist() == pytest.approx(ea, rel=REL) and b.tolist() == pytest.approx(eb, rel=REL)
    # λ₂^k applied at once equals k single-step decays
    steps = torch.randint(0, 6, (N,), generator=gen)  # [N]
    la, lb = decay_counts(alpha, beta, steps, decay_unselected=l2)
    for i in range(N):
        x, y = alpha[i].item(), beta[i].item()
        for _ in range(int(steps[i])):
            x, y = l2 * x, l2 * y
        assert la[i].item() == pytest.approx(x, rel=REL) and lb[i].item() == pytest.approx(y, rel=REL)


@pytest.mark.parametrize(
    ("seed", "l1", "l2", "nan_rate"), [(0, 0.2, 0.999, 0.0), (1, 0.5, 0.7, 0.2), (2, 1.0, 1.0, 0.1)]
)
def test_vade_sampler_matches_eager_reference_given_fixed_draws(monkeypatch, seed, l1, l2, nan_rate):
    """Thompson / top-B selection given fixed draws, the posterior each request sees (lazy λ₂^idle vs the eager
    per-step decay) and the λ₁ update, over 12 steps of the trainer protocol."""
    fake = FixedDraws(seed)
    monkeypatch.setattr(vade_module, "thompson_draw", fake)
    N, B, G = 13, 4, 4
    s = VADESampler(N, seed=seed, decay_selected=l1, decay_unselected=l2)
    ref = RefVADE(N, l1, l2)
    log = []
    for step in range(12):
        drive(s, steps=1, start=step, num_rows=N, num_prompts=B, G=G, total_steps=12, nan_rate=nan_rate, log=log)
        seen_a, seen_b, draws = fake.calls[-1]
        assert seen_a == pytest.approx(ref.a, rel=REL, abs=1e-12)  # the posterior the request scored
        assert seen_b == pytest.approx(ref.b, rel=REL, abs=1e-12)
        _, _, rows, ng, keep, accs = log[-1]
        assert rows == ref.top_b(draws, B) and ng == [G] * B and keep == [True] * B
        ref.end_step(rows, accs)
    assert len(log) == 12  # one round per step, every group trains


def test_vade_ties_choose_lower_index_and_unequal_groups(monkeypatch):
    draws = torch.tensor([0.9, 1 / 3, 0.5, 1 / 3, 0.0], dtype=torch.float64)  # I: .009, 4/27, .125, 4/27, 0
    monkeypatch.setattr(vade_module, "thompson_draw", lambda a, b, *, generator=None: draws)
    s = VADESampler(5, seed=0)
    assert s.request(3, 2, step=0).rows == [1, 3, 2]
    # groups of unequal size and soft accuracies: r = Σ clamp(acc), n = #non-NaN
    s.observe(
        Observation([1, 3], [torch.zeros(3), torch.zeros(1)], [torch.tensor([1.0, 0.5, math.nan]), torch.tensor([2.0])])
    )
    assert s.alpha[1].item() == pytest.approx(1.5) and s.beta[1].item() == pytest.approx(0.5)
    assert s.alpha[3].item() == pytest.approx(1.0) and s.beta[3].item() == pytest.approx(0.0)


def test_vade_duplicate_rows_in_one_step_pool_their_evidence():
    s = VADESampler(2, seed=0, decay_selected=0.2)
    rows = s.request(4, 2, step=0).rows  # each of the 2 rows twice
    acc = torch.tensor([1.0, 0.0])
    s.observe(Observation(rows, [acc] * 4, [acc] * 4, step=0))
    # fresh rows (α = β = 0), two groups of (1 correct, 1 wrong) each: α = 0.2·0 + 1 + 1 = 2
    assert s.alpha.tolist() == pytest.approx([2.0, 2.0]) and s.beta.tolist() == pytest.approx([2.0, 2.0])


def test_vade_candidates_smaller_than_batch_gives_distinct_rows_or_raises():
    try:
        rows = VADESampler(100, seed=0, candidates=4).request(8, 4, step=0).rows
    except ValueError:
        return
    assert len(set(rows)) == len(rows)


# ========================================================================================= hard mining
def ref_mine(correct, total, tau, min_rollouts):
    tau = Fraction(str(tau))
    return [
        i
        for i in range(len(total))
        if total[i] >= min_rollouts and total[i] > 0 and Fraction(correct[i]) / Fraction(total[i]) <= tau
    ]


def test_miner_returns_exactly_the_rows_at_or_below_tau():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        total = torch.randint(0, 9, (30,), generator=gen).double()  # [30] (0 = never seen)
        correct = (torch.rand(30, generator=gen, dtype=torch.float64) * (total + 1)).floor().clamp(max=total)
        for tau, m in [(0.25, 1), (0.0, 1), (0.5, 4), (1.0, 8)]:
            got = mine_hard(correct, total, tau=tau, min_rollouts=m).tolist()
            assert got == ref_mine(correct.tolist(), total.tolist(), tau, m)


class RefHard:
    """The documented rules: stage 2 iff step ≥ fraction·total; pool mined at the first stage-2 request, then
    re-mined every ``remine_every`` stage-2 steps (0: only rows whose running p̂ exceeds τ leave); a stage-2 batch
    takes round-half-up(hard_fraction·B) pool rows (none when the pool is empty) and the rest in the uniform order."""

    def __init__(self, n, seed, frac, tau, hf, m, re):
        self.correct, self.total = [0.0] * n, [0.0] * n
        self.frac, self.tau, self.hf, self.m, self.re = frac, tau, hf, m, re
        self.pool, self.mined_at = None, None
        self.uniform = UniformSampler(n, seed=seed)

    def plan(self, step, total_steps, B):
        stage2 = step >= self.frac * total_steps
        k = 0
        if stage2:
            if self.pool is None or (self.re > 0 and step - self.mined_at >= self.re):
                self.pool, self.mined_at = ref_mine(self.correct, self.total, self.tau, self.m), step
            elif self.re == 0:
                self.pool = [
                    i
                    for i in self.pool
                    if not Fraction(self.correct[i]) / Fraction(self.total[i]) > Fraction(str(self.tau))
                ]
            k = 0 if not self.pool else min(B, math.floor(Fraction(str(self.hf)) * B + Fraction(1, 2)))
        return stage2, k, self.uniform.next(B - k)

    def record(self, rows, accs):
        for row, acc in zip(rows, accs, strict=True):
            c, n = soft_counts(acc)
            self.correct[row] += c
            self.total[row] += n


@pytest.mark.parametrize(
    ("seed", "B", "frac", "tau", "hf", "m", "re"),
    [
        (0, 5, 0.5, 0.25, 0.5, 1, 1),
        (1, 5, 0.3, 0.5, 0.75, 4, 0),
        (2, 5, 0.4, 0.25, 1.0, 1, 3),
        (3, 5, 0.0, 0.25, 0.5, 1, 1),  # stage 2 from the start: empty pool first
        (4, 9, 0.5, 0.0, 1.0, 1, 1),  # pool smaller than the hard share: whole pool + draws with replacement
    ],
)
def test_hard_mining_matches_reference_through_the_protocol(seed, B, frac, tau, hf, m, re):
    N, G, T = 23, 4, 16
    s = HardMiningSampler(
        N, seed=seed, stage1_fraction=frac, tau=tau, hard_fraction=hf, min_rollouts=m, remine_every=re
    )
    ref = RefHard(N, seed, frac, tau, hf, m, re)
    log = []
    for step in range(T):
        stage2, k, uniform_part = ref.plan(step, T, B)
        drive(s, steps=1, start=step, num_rows=N, num_prompts=B, G=G, total_steps=T, nan_rate=0.1, log=log)
        _, _, rows, ng, keep, accs = log[-1]
        assert ng == [G] * B and keep == [True] * B
        assert s.metrics()["stage"] == (2.0 if stage2 else 1.0)
        if stage2:
            assert sorted(s.pool) == ref.pool  # the miner's pool after the stage switch / re-mining
        hard = rows[:k]
        assert rows[k:] == uniform_part  # the rest: the uniform epoch order, undisturbed by the hard draws
        assert set(hard) <= set(ref.pool or [])
        if k <= len(ref.pool or []):
            assert len(set(hard)) == k  # without replacement
        else:
            assert set(hard) == set(ref.pool)  # the whole pool, then draws with replacement
        ref.record(rows, accs)
    assert s.correct.tolist() == pytest.approx(ref.correct) and s.total.tolist() == pytest.approx(ref.total)


def test_hard_mining_stage_one_is_uniform_and_empty_pool_falls_back():
    N, acc = 10, torch.ones(2)
    s, u = HardMiningSampler(N, seed=5, stage1_fraction=0.5, tau=0.0), UniformSampler(N, seed=5)
    for step in range(4):  # stage 1 (steps 0..3 of 8): identical to the uniform sampler
        r = s.request(3, 2, step=step, total_steps=8)
        assert r.rows == u.next(3) and s.metrics()["stage"] == 1.0
        s.observe(Observation(r.rows, [acc] * 3, [acc] * 3, step=step))  # every row solved
    r = s.request(3, 2, step=4, total_steps=8)  # stage 2 with an empty pool: a uniform batch, flagged
    assert r.rows == u.next(3)
    assert s.metrics()["uniform_fallback"] == 1.0 and s.metrics()["hard_in_batch"] == 0.0


# ===================================================================================== variance selection
def ref_variance(values):
    m = sum(values) / len(values)
    return 0.0 if max(values) == min(values) else sum((v - m) ** 2 for v in values) / len(values)


@pytest.mark.parametrize("seed", range(4))
def test_group_reward_variance_and_keep_rule_match_loops(seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 7, (8,), generator=gen).tolist()
    group = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    group = group[torch.randperm(len(group), generator=gen)]  # [N] non-contiguous
    reward = torch.randint(0, 3, (len(group),), generator=gen).double() / 2  # [N] in {0, .5, 1}: many ties
    reward[group == 0] = 0.1  # all equal, with a value whose mean rounds
    got = group_reward_variance(reward, group, len(sizes)).tolist()
    ref = [ref_variance([reward[j].item() for j in range(len(group)) if group[j] == g]) for g in range(len(sizes))]
    assert got == pytest.approx(ref, rel=REL, abs=1e-15)
    assert got[0] == 0.0  # exactly
    for lo, hi in [(0.0, math.inf), (0.05, 0.2), (0.1, 0.25)]:
        keep = variance_keep(torch.tensor(got), min_variance=lo, max_variance=hi).tolist()
        assert keep == [lo < v <= hi for v in got]


class RefVarianceSelect:
    """The documented procedure: estimation rounds while a refresh is due and the round is not the step's last;
    a refresh scores ``pool_size`` rows (``estimate_batch`` per round) and its passing rows replace the kept set;
    training rounds draw from the kept set, or the rows passed so far in the first refresh, else uniformly."""

    def __init__(self, pool, eb, R, max_rounds, ns, lo, hi, objective):
        self.pool, self.eb, self.R, self.max_rounds, self.ns = pool, eb, R, max_rounds, ns
        self.lo, self.hi, self.objective = lo, hi, objective
        self.kept, self.fresh, self.refreshing, self.scored, self.last = [], [], False, 0, None

    def due(self, step):
        if self.refreshing or self.last is None:
            return True
        if not self.kept and step > self.last:
            return True
        return self.R > 0 and step - self.last >= self.R

    def plan(self, step, rnd, B, G):
        """('estimate', n, G') or ('train', source rows or None for the uniform fallback, B, G)."""
        if self.due(step) and rnd + 1 < self.max_rounds:
            if not self.refreshing:
                self.refreshing, self.fresh, self.scored, self.last = True, [], 0, step
            n = self.pool - self.scored if self.eb is None else min(self.pool - self.scored, self.eb)
            return "estimate", n, self.ns or G
        return "train", (list(self.kept or self.fresh) or None), B, G

    def record_estimate(self, rows, rewards, accs):
        values = rewards if self.objective == "reward" else accs
        for row, v in zip(rows, values, strict=True):
            var = ref_variance(v.tolist())
            if self.lo < var <= self.hi:
                self.fresh.append(row)
        self.scored += len(rows)
        if self.scored >= self.pool:
            self.kept, self.fresh, self.refreshing = self.fresh, [], False
            return True
        return False


@pytest.mark.parametrize(
    ("seed", "kw"),
    [
        (0, dict(pool_size=12, refresh_every=3)),
        (1, dict(pool_size=12, refresh_every=2, estimate_batch=5, max_rounds=3)),
        (2, dict(pool_size=9, refresh_every=0, num_samples=6, objective="accuracy")),
        (3, dict(pool_size=20, refresh_every=4, estimate_batch=7, max_rounds=2, min_variance=0.1)),
        (4, dict(pool_size=6, refresh_every=1, min_variance=0.2, max_variance=0.24)),  # often keeps nothing
    ],
)
def test_variance_select_matches_reference_through_the_protocol(seed, kw):
    N, B, G, T = 30, 4, 4, 14
    s = VarianceSelectSampler(N, seed=seed, **kw)
    ref = RefVarianceSelect(
        kw["pool_size"],
        kw.get("estimate_batch"),
        kw["refresh_every"],
        kw.get("max_rounds", 4),
        kw.get("num_samples"),
        kw.get("min_variance", 0.0),
        kw.get("max_variance", math.inf),
        kw.get("objective", "reward"),
    )
    refreshes = fallbacks = from_kept = 0
    for step in range(T):
        needed, rnd, trained_rounds = B, 0, 0
        while needed > 0 and rnd < s.max_rounds:
            plan = ref.plan(step, rnd, needed, G)
            req = s.request(needed, G, step=step, total_steps=T)
            accs = [
                torch.tensor([world_accuracy(r, step, rnd, j) for j in range(n)])
                for r, n in zip(req.rows, req.num_generations, strict=True)
            ]
            # a continuous reward: 0.75·accuracy plus, for rows ≡ 0 mod 4, a position-dependent bonus (so the
            # "reward" and "accuracy" objectives disagree on those rows)
            rewards = [
                torch.tensor(
                    [0.75 * x + (0.125 * ((j % 3) == 0) if r % 4 == 0 else 0.0) for j, x in enumerate(a.tolist())]
                )
                for a, r in zip(accs, req.rows, strict=True)
            ]  # [G_i] each
            keep = s.observe(Observation(list(req.rows), rewards, accs, step=step, total_steps=T))
            if plan[0] == "estimate":
                assert len(req.rows) == plan[1] and req.num_generations == [plan[2]] * plan[1]
                assert keep == [False] * plan[1]  # estimation: nothing trains
                if ref.record_estimate(req.rows, rewards, accs):  # a refresh completed: the new kept set
                    refreshes += 1
                    assert sorted(s._kept) == sorted(ref.kept) and s.metrics()["kept"] == len(ref.kept)
                    assert s.metrics()["refreshes"] == refreshes
            else:
                source = plan[1]
                assert req.num_generations == [G] * needed and keep == [True] * needed
                if source is None:  # nothing passed yet: uniform rows, counted as a fallback
                    fallbacks += 1
                    assert s.metrics()["fallback"] == fallbacks
                else:
                    from_kept += 1
                    assert set(req.rows) <= set(source)
                trained_rounds += 1
                needed = 0
            rnd += 1
        assert trained_rounds == 1  # the last round of a step always trains (never ends on estimation)
    assert refreshes >= 1 and from_kept + fallbacks == T


def test_variance_select_passes_cover_the_kept_set_once():
    s = VarianceSelectSampler(40, seed=7, pool_size=40, refresh_every=0)
    r = s.request(5, 4, step=0)
    accs = [torch.tensor([1.0, 0.0, 1.0, 1.0]) if row % 3 else torch.ones(4) for row in r.rows]
    s.observe(Observation(r.rows, accs, accs, step=0))
    kept = sorted(row for row in r.rows if row % 3)
    drawn = []
    for step in range(len(kept)):  # batches of 1: the draws form consecutive passes
        t = s.request(1, 4, step=step)
        s.observe(Observation(t.rows, [torch.ones(4)], [torch.ones(4)], step=step))
        drawn += t.rows
    assert sorted(drawn) == kept


# ================================================================================= state-dict round trips
SAMPLER_CASES = [
    ("vade", dict(decay_selected=0.2, decay_unselected=0.9)),
    ("vade", dict(candidates=7)),
    ("hard_mining", dict(stage1_fraction=0.3, tau=0.5, hard_fraction=0.6, remine_every=2)),
    ("hard_mining", dict(stage1_fraction=0.3, tau=0.5, remine_every=0, min_rollouts=3)),
    ("variance_select", dict(pool_size=14, refresh_every=3, estimate_batch=4, max_rounds=3)),
    ("variance_select", dict(pool_size=10, refresh_every=2, num_samples=3, objective="accuracy")),
]


@pytest.mark.parametrize(("name", "kw"), SAMPLER_CASES)
@pytest.mark.parametrize("cut", [2, 5])
def test_state_dict_round_trip_resumes_identically(name, kw, cut):
    """Save after ``cut`` steps (mid-refresh included), load into a fresh instance with another seed: the next
    steps' requests (estimation rounds included) and keep flags are identical."""
    N, B, G, T = 26, 4, 3, 12
    a = SAMPLERS[name](N, seed=11, **kw)
    # NaN accuracies (failed rewards; the trainer itself passes finite values) only for the samplers that skip them
    nan = 0.0 if name == "variance_select" else 0.05
    drive(a, steps=cut, num_rows=N, num_prompts=B, G=G, total_steps=T, nan_rate=nan)
    b = roundtrip(a, SAMPLERS[name](N, seed=99, **kw))
    c = SAMPLERS[name](N, seed=99, **kw)  # control: the other seed without the state does differ
    la = drive(a, steps=T - cut, start=cut, num_rows=N, num_prompts=B, G=G, total_steps=T, nan_rate=nan)
    lb = drive(b, steps=T - cut, start=cut, num_rows=N, num_prompts=B, G=G, total_steps=T, nan_rate=nan)
    lc = drive(c, steps=T - cut, start=cut, num_rows=N, num_prompts=B, G=G, total_steps=T, nan_rate=nan)
    assert requests_only(la) == requests_only(lb)
    assert requests_only(la) != requests_only(lc)
    assert a.metrics() == pytest.approx(b.metrics(), nan_ok=True)
    if name == "variance_select":
        assert any(not any(k) for *_, k in requests_only(la))  # estimation rounds happened after the resume


# ============================================================================================ dual reward
def ref_iou_cells(p, r):
    """Temporal IoU by counting unit cells [k, k+1) of integer end points: an obviously correct reference."""
    cp = set(range(p[0], p[1]))
    cr = set(range(r[0], r[1]))
    union = cp | cr
    if not union:
        return 1.0 if p == r else 0.0
    return len(cp & cr) / len(union)


def authors_iou(a, b):
    """appletea233/Temporal-R1 verl/utils/reward_score/tvg.py temporal_iou (hull denominator)."""
    inter = max(min(a[1], b[1]) - max(a[0], b[0]), 0)
    return max(0, inter / (max(a[1], b[1]) - min(a[0], b[0])))


FORMATS = ["[{s}, {e}]", "({s}, {e})", "{s}-{e}", "{s},{e}", "{s} to {e}", "{s} \u2013 {e}", "[ {s} ; {e} ]"]


def test_temporal_iou_matches_cell_count_and_authors_formula():
    rng = random.Random(0)
    for _ in range(400):
        p = sorted(rng.randint(0, 20) for _ in range(2))
        r = sorted(rng.randint(0, 20) for _ in range(2))
        got = temporal_iou(tuple(map(float, p)), tuple(map(float, r)))
        assert got == pytest.approx(ref_iou_cells(tuple(p), tuple(r)), abs=1e-12)
        if p[1] > p[0] or r[1] > r[0]:
            assert got == pytest.approx(authors_iou(p, r), abs=1e-12)


def test_dual_interval_formats_random():
    rng = random.Random(1)
    fn = VERIFIERS["dual"]()
    for _ in range(150):
        s, e = sorted(round(rng.uniform(0, 60), rng.choice([0, 1, 2])) for _ in range(2))
        rs, re_ = sorted(rng.randint(0, 60) for _ in range(2))
        fmt = rng.choice(FORMATS)
        ref = rng.choice([[rs, re_], f"[{rs}, {re_}]", f"{rs}-{re_}", f"{rs} to {re_}"])
        text = "<think>between 1 and 2?</think><answer>" + fmt.format(s=s, e=e) + "</answer>"
        iou = authors_iou((s, e), (rs, re_)) if (e > s or re_ > rs) else float((s, e) == (rs, re_))
        same = float(math.isclose(s, rs) and math.isclose(e, re_))
        assert dual_parts(text, ref) == pytest.approx((same, iou), abs=1e-12)
        assert fn(prompts=["q"], completions=[text], answer=[ref]) == pytest.approx([same + iou], abs=1e-12)


def test_dual_numeric_closeness_and_text_by_loop():
    rng = random.Random(2)
    for _ in range(200):
        ref = rng.choice([rng.randint(-200, 200), round(rng.uniform(-5, 5), 2)])
        pred = float(f"{ref + rng.choice([0, 1, -1, rng.uniform(-3, 3), 1000]):.6f}")
        scale = rng.choice([1.0, 0.5, 10.0])
        expect_c = 1 - min(1.0, abs(pred - ref) / (scale * max(1.0, abs(ref))))
        assert closeness(pred, ref, scale=scale) == pytest.approx(expect_c, abs=1e-12)
        text = f"so the answer is {pred:.6f}"
        d, c = dual_parts(text, str(ref), scale=scale)
        assert d == float(math.isclose(pred, ref, rel_tol=1e-6, abs_tol=1e-9))
        assert c == pytest.approx(expect_c, abs=1e-9)
    assert dual_parts("it is 72", "Janet sells ... #### 72") == (1.0, 1.0)  # GSM8K reference
    assert dual_parts(" B ", "B") == (1.0, 0.0) and dual_parts("The answer is B", "B") == (0.0, 0.0)
    w = VERIFIERS["dual"](discrete_weight=0.5, continuous_weight=2.0)
    assert w(prompts=["q", "q"], completions=["69", "[2, 4]"], answer=[68, "[2, 6]"]) == pytest.approx(
        [2.0 * (1 - 1 / 68), 0.5 * 0 + 2.0 * 0.5]
    )


def test_dual_malformed_inputs():
    for text in ["", "soon", "no numbers", "nan", "inf", "1/0"]:
        for ref in ([3, 7], 5):
            assert dual_parts(text, ref) == (0.0, 0.0), (text, ref)
    assert dual_parts("[9, 2]", [3, 7]) == (0.0, 0.0)  # a backwards interval is malformed
    assert dual_parts("[9, 2]", 5) == (0.0, pytest.approx(0.4))  # a scalar reference reads the last number, 2
    assert dual_parts("[5, 5]", "[5, 5]") == (1.0, 1.0) and dual_parts("[5, 5]", [3, 7]) == (0.0, 0.0)
    for bad in ["7-3", [7, 3], [1, 2, 3], ["3", "7"]]:
        with pytest.raises(ValueError):
            dual_parts("[3, 7]", bad)
    with pytest.raises(ValueError):
        dual_parts("[3, 7]", "B", mode="interval")
    # documented: "1,234" is an interval in auto mode; mode="scalar" reads the thousands separator
    assert reference_kind("1,234") == ("interval", (1.0, 234.0)) and reference_kind("1,234", "scalar") == (
        "scalar",
        1234.0,
    )
    assert parse_interval("from 1 to 4, then 6-9") == (6.0, 9.0)  # the LAST interval


def test_dual_reads_the_authors_json_answer_format():
    text = '<think>...</think><answer>{"start_time": "3.0", "end_time": "7.0"}</answer>'
    assert dual_parts(text, [3, 7]) == (1.0, 1.0)
    assert dual_parts(text.replace("3.0", "5.0"), [3, 7]) == (0.0, pytest.approx(0.5))


def test_dual_negative_time_stamp_is_malformed():
    assert parse_interval("[-1, 5]") is None


def test_dual_text_answer_is_read_from_answer_tags():
    assert dual_parts("<think>the cat jumps first</think><answer> B </answer>", "B") == (1.0, 0.0)
