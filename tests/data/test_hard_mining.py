import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.data.hard_mining import HardMiningSampler
from grpolab.data.sampler import SAMPLERS, Observation, UniformSampler


def observe(sampler, rows, accuracies, step, total_steps=10):
    acc = [torch.tensor(a, dtype=torch.float32) for a in accuracies]
    return sampler.observe(Observation(rows, [a.clone() for a in acc], acc, step=step, total_steps=total_steps))


def test_stage_one_is_uniform_and_the_stage_switch_follows_step_over_total_steps():
    s = SAMPLERS["hard_mining"](12, seed=3, stage1_fraction=0.5)
    uniform = UniformSampler(12, seed=3)
    stages = []
    for step in range(6):
        request = s.request(3, 4, step=step, total_steps=6)
        stages.append(s.metrics()["stage"])
        if step < 3:
            assert request.rows == uniform.next(3)  # stage 1: exactly the uniform epoch order
        observe(s, request.rows, [[0.0] * 4] * 3, step=step, total_steps=6)
    assert stages == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]


def test_the_first_stage_two_request_mines_exactly_the_rows_with_low_pass_rate():
    s = HardMiningSampler(8, seed=0, stage1_fraction=0.5, tau=0.25, hard_fraction=0.5)
    # hand-made stage 1 (steps 0, 1 of 4): rows 0..7 with 0, 1, 2, 3, 4, 1, 0, 4 correct of 4
    correct = [0, 1, 2, 3, 4, 1, 0, 4]
    for step in range(2):
        rows = s.request(4, 4, step=step, total_steps=4).rows
        observe(s, rows, [[1.0] * correct[r] + [0.0] * (4 - correct[r]) for r in rows], step=step, total_steps=4)
    assert s.total.nonzero().flatten().tolist() == list(range(8))  # stage 1 saw every row once
    assert s.pool is None  # not mined before stage 2
    request = s.request(4, 4, step=2, total_steps=4)
    # p̂ = [0, .25, .5, .75, 1, .25, 0, 1]: hard = p̂ <= 0.25
    assert s.pool == [0, 1, 5, 6]
    hard, rest = request.rows[:2], request.rows[2:]
    assert set(hard) <= {0, 1, 5, 6} and len(set(hard)) == 2  # round(0.5 · 4) = 2 drawn without replacement
    assert rest == UniformSampler(8, seed=0).next(12)[8:10]  # the rest continue the uniform epoch order
    m = s.metrics()
    assert (m["stage"], m["hard_in_batch"], m["pool_size"], m["uniform_fallback"]) == (2.0, 2.0, 4.0, 0.0)
    assert "hard_pass_rate" not in m
    # the hard rows solve 1 and 2 of 4 -> 3 / 8; the uniform rows do not count
    observe(s, request.rows, [[1.0, 0, 0, 0], [1.0, 1, 0, 0], [1.0] * 4, [1.0] * 4], step=2, total_steps=4)
    assert s.metrics()["hard_pass_rate"] == 3 / 8


def test_a_pool_smaller_than_the_hard_share_is_used_whole_then_drawn_with_replacement():
    s = HardMiningSampler(20, seed=1, stage1_fraction=0.5, tau=0.0, hard_fraction=0.75)
    rows = s.request(8, 2, step=0, total_steps=2).rows
    # rows[0] and rows[1] never solved: the only hard rows
    observe(s, rows, [[0.0, 0.0], [0.0, 0.0]] + [[1.0, 0.0]] * 6, step=0, total_steps=2)
    request = s.request(8, 2, step=1, total_steps=2)
    hard = request.rows[:6]  # round(0.75 · 8) = 6 from a pool of 2
    assert sorted(hard[:2]) == sorted(rows[:2]) and set(hard) == set(rows[:2])
    assert len(request.rows) == 8 and s.metrics()["hard_in_batch"] == 6.0


def test_an_empty_pool_gives_a_uniform_batch_and_says_so():
    s = HardMiningSampler(10, seed=2, stage1_fraction=0.5, tau=0.25)
    uniform = UniformSampler(10, seed=2)
    rows = s.request(4, 2, step=0, total_steps=2).rows
    assert rows == uniform.next(4)
    observe(s, rows, [[1.0, 1.0]] * 4, step=0, total_steps=2)  # everything solved: nothing is hard
    assert s.request(4, 2, step=1, total_steps=2).rows == uniform.next(4)
    m = s.metrics()
    assert (m["stage"], m["pool_size"], m["uniform_fallback"], m["hard_in_batch"]) == (2.0, 0.0, 1.0, 0.0)


def test_stage_two_keeps_counting_and_re_mines_the_pool():
    s = HardMiningSampler(6, seed=0, stage1_fraction=0.5, tau=0.25, hard_fraction=0.5, remine_every=1)
    rows = s.request(6, 4, step=0, total_steps=4).rows  # one stage-1 step covers every row
    observe(s, rows, [[0.0] * 4 if r in (1, 3) else [1.0] * 4 for r in rows], step=0, total_steps=4)
    s.request(2, 4, step=2, total_steps=4)
    assert s.pool == [1, 3]
    # row 1 now solves 4 of 4 (running p̂ = 4/8 > τ) and row 4 fails 12 of 12 (running 4/16 = 0.25 <= τ)
    observe(s, [1, 4], [[1.0] * 4, [0.0] * 12], step=2, total_steps=4)
    s.request(2, 4, step=3, total_steps=4)
    assert s.pool == [3, 4]
    # remine_every = 0: the stage-switch pool only loses rows that got easy; new hard rows do not join
    fixed = HardMiningSampler(6, seed=0, stage1_fraction=0.5, tau=0.25, remine_every=0)
    observe(fixed, rows, [[0.0] * 4 if r in (1, 3) else [1.0] * 4 for r in rows], step=0, total_steps=4)
    fixed.request(2, 4, step=2, total_steps=4)
    observe(fixed, [1, 4], [[1.0] * 4, [0.0] * 12], step=2, total_steps=4)
    fixed.request(2, 4, step=3, total_steps=4)
    assert fixed.pool == [3]


def test_resume_across_the_stage_switch_gives_identical_next_requests():
    g = torch.Generator().manual_seed(0)
    s = HardMiningSampler(30, seed=5, stage1_fraction=0.4, tau=0.5)
    for step in range(3):
        rows = s.request(5, 4, step=step, total_steps=8).rows
        observe(s, rows, (torch.rand(5, 4, generator=g) < 0.4).float().tolist(), step=step, total_steps=8)
    state = s.state_dict()
    again = HardMiningSampler(30, seed=123, stage1_fraction=0.4, tau=0.5)
    again.load_state_dict(state)
    for step in range(3, 8):  # stage 2 from step 4 (0.4 · 8 = 3.2)
        first, second = s.request(5, 4, step=step, total_steps=8), again.request(5, 4, step=step, total_steps=8)
        assert first == second and s.metrics() == again.metrics()
        acc = (torch.rand(5, 4, generator=g) < 0.4).float().tolist()
        observe(s, first.rows, acc, step=step, total_steps=8)
        observe(again, second.rows, acc, step=step, total_steps=8)
    assert s.metrics()["stage"] == 2.0 and s.pool == again.pool
    with pytest.raises(ValueError, match="rows"):
        HardMiningSampler(31).load_state_dict(state)


def test_failed_rewards_are_skipped_and_soft_accuracies_count():
    s = HardMiningSampler(4, seed=0)
    assert observe(s, [2], [[0.5, float("nan"), 1.0]], step=0) == [True]
    assert (s.correct[2].item(), s.total[2].item()) == (1.5, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tau": 1.5}, "tau"),
        ({"stage1_fraction": -0.1}, "stage1_fraction"),
        ({"hard_fraction": 2}, "hard_fraction"),
        ({"min_rollouts": 0}, "min_rollouts"),
        ({"remine_every": -1}, "remine_every"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HardMiningSampler(5, **kwargs)


def test_the_hard_mining_preset_is_grpo_with_the_two_stage_sampler():
    preset, grpo = PRESETS["hard_mining"], PRESETS["grpo"]
    assert preset.trainer["sampler"] == "hard_mining" and preset.arxiv == "2509.15279"
    assert (preset.advantage, preset.loss, preset.aggregation, preset.regularizers) == (
        grpo.advantage,
        grpo.loss,
        grpo.aggregation,
        grpo.regularizers,
    )
    sampler = SAMPLERS[preset.trainer["sampler"]](10, seed=0, **preset.trainer["sampler_args"])
    assert (sampler.stage1_fraction, sampler.tau, sampler.hard_fraction) == (0.5, 0.25, 0.5)
