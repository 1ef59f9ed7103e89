import time

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.vade import info_gain, thompson_draw, vade_step
from grpolab.data.sampler import SAMPLERS, Observation
from grpolab.data.vade import VADESampler


def observe(sampler, rows, accuracies, step):
    acc = [torch.tensor(a, dtype=torch.float32) for a in accuracies]
    return sampler.observe(Observation(rows, [a.clone() for a in acc], acc, step=step, total_steps=10))


def test_first_request_is_the_top_info_gain_of_uniform_thompson_draws():
    s = SAMPLERS["vade"](50, seed=4)
    request = s.request(5, 8, step=0, total_steps=10)
    assert request.num_generations == [8] * 5 and len(set(request.rows)) == 5
    # every row starts at Beta(1, 1): the same draws from a generator with the same seed rank the rows
    draws = thompson_draw(torch.zeros(50), torch.zeros(50), generator=torch.Generator().manual_seed(4))
    assert request.rows == torch.argsort(info_gain(draws), descending=True, stable=True)[:5].tolist()
    assert s.max_rounds == 1


def test_observe_updates_the_chosen_rows_by_hand_and_keeps_every_group():
    s = VADESampler(6, seed=0)  # λ1 = 0.2, λ2 = 0.999
    assert observe(s, [2, 4], [[1.0, 0.0, 1.0, 1.0], [0.5, float("nan"), 0.0]], step=0) == [True, True]
    # row 2: α = 0.2·0 + 3, β = 0.2·0 + 1; row 4: soft count 0.5 of 2 valid rollouts (the NaN one is skipped)
    assert s.alpha[[2, 4]].tolist() == pytest.approx([3.0, 0.5]) and s.beta[[2, 4]].tolist() == pytest.approx([1, 1.5])
    # step 3: row 2 sat out steps 1 and 2 -> 0.999² = 0.998001 before the λ1 update; 0 of 4 correct
    observe(s, [2], [[0.0, 0.0, 0.0, 0.0]], step=3)
    assert s.alpha[2].item() == pytest.approx(0.2 * 3 * 0.998001)  # 0.5988006
    assert s.beta[2].item() == pytest.approx(0.2 * 1 * 0.998001 + 4)  # 4.1996002
    # reading at step 5: row 4 idle for steps 1..4 -> 0.999⁴
    alpha, beta = s.counts(5)
    assert alpha[4].item() == pytest.approx(0.5 * 0.999**4) and beta[4].item() == pytest.approx(1.5 * 0.999**4)
    assert s.metrics()["rows_seen"] == 2.0


def test_sampler_counts_equal_the_figure_rule_applied_every_step():
    g = torch.Generator().manual_seed(1)
    s = VADESampler(12, seed=2, decay_selected=0.4, decay_unselected=0.8)
    alpha, beta = torch.zeros(12, dtype=torch.float64), torch.zeros(12, dtype=torch.float64)
    for step in range(8):
        rows = s.request(3, 4, step=step, total_steps=8).rows
        acc = (torch.rand(3, 4, generator=g) < 0.4).float()  # [3, 4]
        observe(s, rows, acc.tolist(), step=step)
        alpha, beta = vade_step(
            alpha,
            beta,
            torch.tensor(rows),
            acc.sum(-1).double(),
            torch.full((3,), 4.0, dtype=torch.float64),
            decay_selected=0.4,
            decay_unselected=0.8,
        )
        got_alpha, got_beta = s.counts(step + 1)  # what the next step sees
        assert got_alpha.tolist() == pytest.approx(alpha.tolist()) and got_beta.tolist() == pytest.approx(beta.tolist())


def test_informative_rows_win_and_metrics_report_the_batch():
    picks = []
    for seed in range(20):
        s = VADESampler(3, seed=seed, decay_unselected=1.0)
        # settled easy (p ≈ 31/32), settled hard (p ≈ 1/32), and p ≈ 11/32 near InfoGain's peak at 1/3
        s.alpha = torch.tensor([30.0, 0.0, 10.0], dtype=torch.float64)
        s.beta = torch.tensor([0.0, 30.0, 20.0], dtype=torch.float64)
        s.updated = torch.tensor([0, 0, 0])
        picks.append(s.request(1, 4, step=1).rows[0])
    assert picks == [2] * 20
    metrics = s.metrics()
    assert metrics["batch_posterior_mean"] == pytest.approx(11 / 32)
    assert metrics["batch_new_frac"] == 0.0 and metrics["rows_seen"] == 3.0
    assert 0 < metrics["batch_info_gain"] <= 4 / 27


def test_more_prompts_than_rows_go_round_the_ranking_again():
    s = VADESampler(2, seed=0)
    rows = s.request(5, 2, step=0).rows
    assert sorted(set(rows)) == [0, 1] and rows[:2] == rows[2:4] and rows[4] == rows[0]


def test_a_row_twice_in_one_step_pools_its_groups_into_one_update():
    s = VADESampler(2, seed=0)  # λ1 = 0.2, λ2 = 0.999
    s.alpha = torch.tensor([3.0, 0.0], dtype=torch.float64)
    s.beta = torch.tensor([1.0, 0.0], dtype=torch.float64)
    s.updated = torch.tensor([0, -1])
    # step 2: row 0 (last updated at step 0, idle for step 1: × 0.999) appears twice, row 1 (never seen) once
    observe(s, [0, 1, 0], [[1.0, 0.0, 1.0], [0.5, 1.0], [0.0, 0.0]], step=2)
    # row 0: both groups are evidence of step 2: α = 0.2·(0.999·3) + (2 + 0) = 2.5994, β = 0.2·(0.999·1) + (1 + 2)
    assert s.alpha.tolist() == pytest.approx([2.5994, 1.5]) and s.beta.tolist() == pytest.approx([3.1998, 0.5])
    # (updating once per group would give α = 0.2·(0.2·2.997 + 2) + 0 = 0.51988)
    assert s.updated.tolist() == [2, 2]
    # a second observation at the same step adds its counts without another λ1 (decay once per step per row)
    observe(s, [1], [[1.0, 1.0]], step=2)
    assert s.alpha[1].item() == pytest.approx(3.5) and s.beta[1].item() == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(3))
def test_repeated_rows_match_a_per_row_pooling_loop(seed):
    """num_prompts > num_rows: batches repeat rows; a slow per-row loop (pool the step's groups, λ1 once, λ2 for the
    idle rows every step) gives the same counts."""
    g = torch.Generator().manual_seed(seed)
    n, l1, l2 = 3, 0.3, 0.8
    s = VADESampler(n, seed=seed, decay_selected=l1, decay_unselected=l2)
    alpha, beta = [0.0] * n, [0.0] * n
    for step in range(6):
        rows = s.request(7, 3, step=step).rows
        assert sorted(set(rows)) == list(range(n))  # every row, some twice or three times
        sizes = torch.randint(1, 5, (7,), generator=g).tolist()
        accs = [(torch.rand(k, generator=g) < 0.5).float().tolist() for k in sizes]
        observe(s, rows, accs, step=step)
        for row in range(n):
            groups = [acc for r, acc in zip(rows, accs, strict=True) if r == row]
            if groups:
                correct, total = sum(sum(a) for a in groups), sum(len(a) for a in groups)
                alpha[row], beta[row] = l1 * alpha[row] + correct, l1 * beta[row] + total - correct
            else:
                alpha[row], beta[row] = l2 * alpha[row], l2 * beta[row]
        got_alpha, got_beta = s.counts(step + 1)
        assert got_alpha.tolist() == pytest.approx(alpha) and got_beta.tolist() == pytest.approx(beta)


def test_a_candidate_subset_smaller_than_the_batch_is_enlarged(monkeypatch):
    import grpolab.data.vade as vade_module

    scored = []
    real = vade_module.thompson_draw

    def record(alpha, beta, *, generator=None):
        scored.append(alpha.numel())
        return real(alpha, beta, generator=generator)

    monkeypatch.setattr(vade_module, "thompson_draw", record)
    s = VADESampler(100, seed=0, candidates=4)
    assert len(s.request(3, 2).rows) == 3 and scored[-1] == 4  # the subset as set
    rows = s.request(8, 2).rows
    assert scored[-1] == 8 and len(set(rows)) == 8  # enlarged to the batch: 8 distinct rows, no repeats
    small = VADESampler(6, seed=0, candidates=4)
    rows = small.request(8, 2).rows  # the batch exceeds the task: every row scored, then round-robin
    assert scored[-1] == 6 and sorted(set(rows)) == list(range(6)) and rows[6:] == rows[:2]


def test_candidate_subsets_are_seeded_and_scoring_every_row_is_fast():
    a, b = VADESampler(1000, seed=3, candidates=10), VADESampler(1000, seed=3, candidates=10)
    assert a.request(4, 2).rows == b.request(4, 2).rows
    s = VADESampler(19_500, seed=0)
    start = time.perf_counter()
    for step in range(10):
        s.request(16, 8, step=step)
    assert (time.perf_counter() - start) / 10 < 0.1  # about 4 ms per request on one CPU core


def test_resume_gives_identical_next_requests():
    g = torch.Generator().manual_seed(0)
    s = VADESampler(40, seed=7)
    for step in range(3):
        rows = s.request(4, 3, step=step).rows
        observe(s, rows, (torch.rand(4, 3, generator=g) < 0.5).float().tolist(), step=step)
    state = s.state_dict()
    again = VADESampler(40, seed=99)
    again.load_state_dict(state)
    for step in range(3, 6):
        first, second = s.request(4, 3, step=step), again.request(4, 3, step=step)
        assert first == second
        acc = (torch.rand(4, 3, generator=g) < 0.5).float().tolist()
        observe(s, first.rows, acc, step=step)
        observe(again, second.rows, acc, step=step)
    assert torch.equal(s.alpha, again.alpha) and s.metrics() == again.metrics()
    with pytest.raises(ValueError, match="rows"):
        VADESampler(41).load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"decay_selected": 1.5}, "decay_selected"),
        ({"decay_unselected": -0.1}, "decay_unselected"),
        ({"candidates": -1}, "candidates"),
        ({"candidates": 2.5}, "candidates"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VADESampler(5, **kwargs)


def test_the_vade_preset_is_grpo_with_the_vade_sampler():
    preset, grpo = PRESETS["vade"], PRESETS["grpo"]
    assert preset.trainer["sampler"] == "vade" and preset.arxiv == "2511.18902"
    assert (preset.advantage, preset.loss, preset.aggregation, preset.regularizers) == (
        grpo.advantage,
        grpo.loss,
        grpo.aggregation,
        grpo.regularizers,
    )
    sampler = SAMPLERS[preset.trainer["sampler"]](10, seed=0, **preset.trainer["sampler_args"])
    assert (sampler.decay_selected, sampler.decay_unselected) == (0.2, 0.999)
