"""MedS³-style process rewards (arXiv 2501.12051): step segmentation, MCTS statistics, the soft dual-sided PRM
target and loss, PRM-guided Vote-Sum / best-of-N, and the process-supervision advantage (DeepSeekMath §4.1.3)."""

import math

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.prm import (
    backup,
    best_of_n,
    completed_nodes,
    completion_scores,
    dual_sided_targets,
    first_step_end,
    node_values,
    normalised_step_rewards,
    prm_loss,
    select_leaf,
    step_ends,
    step_index,
    steps_to_tokens,
    tokens_to_steps,
    uct_scores,
    vote_sum,
)
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.types import Rollout


# ---------------------------------------------------------------------------------------------- steps
def test_step_ends_close_at_delimiters_and_at_the_last_valid_token():
    # row 0: "(7," "5)" "9<eos>" with '(' 19, ',' 22, ')' 20, <eos> 2; row 1 has no delimiter; row 2 ends on one
    ids = torch.tensor([[19, 11, 22, 9, 20, 13, 2], [5, 6, 2, 0, 0, 0, 0], [5, 22, 0, 0, 0, 0, 0]])
    mask = ids != 0
    end = step_ends(ids, mask, [22, 20])
    assert end.int().tolist() == [[0, 0, 1, 0, 1, 0, 1], [0, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]]
    assert step_ends(ids, mask, []).int().tolist()[0] == [0, 0, 0, 0, 0, 0, 1]  # no delimiter: one step
    # a delimiter in the padding does not count
    padded = ids.clone()
    padded[1, 4] = 22
    assert torch.equal(step_ends(padded, mask, [22, 20]), end)
    assert step_index(end, mask).tolist() == [[0, 0, 0, 1, 1, 2, 2], [0, 0, 0, -1, -1, -1, -1], [0, 0, -1] + [-1] * 4]
    assert first_step_end(end, mask, torch.tensor([3, 0, 1])).tolist() == [4, 2, 1]
    with pytest.raises(ValueError, match="no step end"):
        first_step_end(end, mask, torch.tensor([0, 5, 0]))


def test_tokens_to_steps_and_back_round_trip():
    g = torch.Generator().manual_seed(1)
    mask = torch.arange(9)[None, :] < torch.tensor([9, 3, 6, 1])[:, None]  # [4, 9]
    ids = torch.randint(4, 9, (4, 9), generator=g)
    end = step_ends(ids, mask, [5, 6])
    values = torch.rand(4, 9, generator=g)
    steps, valid = tokens_to_steps(values, end)
    assert valid.sum(1).tolist() == end.sum(1).tolist()
    for b in range(4):  # loop: the s-th step end of row b holds the s-th step value
        pos = end[b].nonzero().flatten().tolist()
        assert steps[b, : len(pos)].tolist() == values[b, pos].tolist()
    back = steps_to_tokens(steps, end)
    assert torch.equal(back, torch.where(end, values, torch.zeros_like(values)))


# ---------------------------------------------------------------------------------------------- MCTS
def test_uct_scores_by_hand():
    # Q + 2·sqrt(ln N / n): N = 3 → [0.5 + 2·sqrt(1.098612 / 2), 1 + 2·sqrt(1.098612)] = [1.982304, 3.096294]
    s = uct_scores(torch.tensor([0.5, 1.0]), torch.tensor([2.0, 1.0]), 3.0)
    assert s.tolist() == pytest.approx([1.982304, 3.096294], abs=1e-6)
    s = uct_scores(
        torch.tensor([0.5, 1.0, 0.2]),
        torch.tensor([2.0, 0.0, 1.0]),
        3.0,
        c=1.0,
        completed=torch.tensor([False, False, True]),
    )
    assert s[0].item() == pytest.approx(0.5 + math.sqrt(math.log(3) / 2)) and s[1] == math.inf and s[2] == -math.inf
    assert uct_scores(torch.tensor([0.3]), torch.tensor([1.0]), 5.0, c=0.0).tolist() == pytest.approx([0.3])
    with pytest.raises(ValueError, match="c must be"):
        uct_scores(torch.tensor([0.3]), torch.tensor([1.0]), 5.0, c=-1.0)


def test_backup_and_node_values_by_hand():
    # root 0 → 1 → 2, root → 3; simulations from 2 (verified), 3 (wrong), 1 (verified)
    parent = torch.tensor([-1, 0, 1, 0])
    wins, sims = backup(parent, torch.zeros(4), torch.zeros(4), torch.tensor([2, 3, 1]), torch.tensor([1.0, 0.0, 1.0]))
    assert wins.tolist() == [2.0, 2.0, 1.0, 0.0] and sims.tolist() == [3.0, 2.0, 1.0, 1.0]
    assert node_values(wins, sims).tolist() == pytest.approx([2 / 3, 1.0, 1.0, 0.0])
    # a soft outcome (fractional accuracy) is averaged the same way; statistics accumulate
    wins, sims = backup(parent, wins, sims, torch.tensor([3]), torch.tensor([0.5]))
    assert wins.tolist() == [2.5, 2.0, 1.0, 0.5] and sims.tolist() == [4.0, 2.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="creation order"):
        backup(torch.tensor([-1, 2, 0]), torch.zeros(3), torch.zeros(3), torch.tensor([1]), torch.ones(1))


def test_backup_loop_vs_vectorised_on_a_random_tree():
    g = torch.Generator().manual_seed(3)
    N = 30
    parent = torch.tensor([-1] + [int(torch.randint(0, n, (1,), generator=g)) for n in range(1, N)])
    node = torch.randint(0, N, (50,), generator=g)
    outcome = torch.rand(50, generator=g, dtype=torch.float64)
    wins, sims = backup(parent, torch.zeros(N, dtype=torch.float64), torch.zeros(N, dtype=torch.float64), node, outcome)
    w_loop, s_loop = [0.0] * N, [0.0] * N
    for m in range(50):
        k = int(node[m])
        while k >= 0:
            w_loop[k] += float(outcome[m])
            s_loop[k] += 1
            k = int(parent[k])
    assert wins.tolist() == pytest.approx(w_loop) and sims.tolist() == s_loop
    assert sims[0] == 50


def test_completed_nodes_and_selection():
    # root → 1 (expanded) → 3 (terminal); root → 2 (not expanded, not terminal): 2 is the only open leaf
    parent = torch.tensor([-1, 0, 0, 1])
    terminal = torch.tensor([False, False, False, True])
    expanded = torch.tensor([True, True, False, False])
    done = completed_nodes(parent, terminal, expanded)
    assert done.tolist() == [False, True, False, True]
    wins, sims = torch.tensor([3.0, 3.0, 0.0, 3.0]), torch.tensor([4.0, 3.0, 1.0, 3.0])
    # node 1 is completed (-inf) although its value is 1: selection goes to 2
    assert select_leaf(parent, wins, sims, done) == 2
    # without the completed flag UCT picks 1 (1 + 2·sqrt(ln 4 / 3) = 2.36 > 0 + 2·sqrt(ln 4) = 2.35), then leaf 3
    open_all = torch.zeros(4, dtype=torch.bool)
    assert select_leaf(parent, wins, sims, open_all) == 3
    # with c = 0 the greedy child (value 1) is taken too; everything completed → -1
    assert select_leaf(parent, wins, sims, open_all, c=0.0) == 3
    all_done = completed_nodes(parent, torch.tensor([False, False, True, True]), expanded)
    assert all_done.tolist() == [True, True, True, True] and select_leaf(parent, wins, sims, all_done) == -1
    # a fresh root (no child) is the leaf
    one = torch.tensor([-1])
    assert select_leaf(one, torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.bool)) == 0


# ---------------------------------------------------------------------------------------------- PRM target, loss
def test_dual_sided_targets_by_hand_and_invariants():
    v = torch.tensor([0.5, 1.0, 0.6, 0.4])
    parent = torch.tensor([1.0, 0.5, 0.8, 0.4])
    # 0.5 − (1 − 0.5) = 0; 1 + 0.5 → 1 (clamped); 0.6 − 0.2 = 0.4; unchanged value → the value itself
    assert dual_sided_targets(v, parent).tolist() == pytest.approx([0.0, 1.0, 0.4, 0.4])
    assert dual_sided_targets(v, parent, look_back=0.5).tolist() == pytest.approx([0.25, 1.0, 0.5, 0.4])
    assert torch.equal(dual_sided_targets(v, parent, look_back=0.0), v)  # λ = 0: the plain soft label
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(100, generator=g), torch.rand(100, generator=g)
    t = dual_sided_targets(a, b)
    assert bool(((t <= a) | (a >= b)).all()) and bool(((t >= a) | (a <= b)).all())  # a drop lowers, a rise raises
    assert bool(((t >= 0) & (t <= 1)).all())
    with pytest.raises(ValueError, match="look_back"):
        dual_sided_targets(a, b, look_back=-1.0)


def test_prm_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.25, 0.0]])
    label = torch.tensor([[True, True, False]])
    # BCE: (ln 2 + [−0.25·ln σ(2) − 0.75·ln(1 − σ(2))]) / 2 = (0.693147 + 1.626928) / 2
    sig = 1 / (1 + math.exp(-2))
    bce = (math.log(2) - 0.25 * math.log(sig) - 0.75 * math.log(1 - sig)) / 2
    assert prm_loss(logits, targets, label).item() == pytest.approx(bce, abs=1e-6)
    # Huber (delta 0.5) on σ: |0.5 − 1| = 0.5 → ½·0.25; |σ(2) − 0.25| = 0.630797 > 0.5 → 0.5·(0.630797 − 0.25)
    huber = (0.5 * 0.25 + 0.5 * (sig - 0.25 - 0.25)) / 2
    assert prm_loss(logits, targets, label, loss="huber").item() == pytest.approx(huber, abs=1e-6)
    # the unlabelled position does not matter, NaN included
    logits2 = logits.clone()
    logits2[0, 2] = float("nan")
    assert prm_loss(logits2, targets, label).item() == pytest.approx(bce, abs=1e-6)
    empty = prm_loss(logits.requires_grad_(), targets, torch.zeros_like(label))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="loss must be one of"):
        prm_loss(logits, targets, label, loss="mse")


# ---------------------------------------------------------------------------------------------- PRM-guided choice
def test_vote_sum_picks_the_answer_with_the_largest_summed_score_best_of_n_the_top_one():
    # spec: answers {A: 0.9, B: 0.6, B: 0.5} → Vote-Sum B (1.1), best-of-N A
    scores, answer = torch.tensor([0.9, 0.6, 0.5]), torch.tensor([0, 1, 1])
    winner, total, index = vote_sum(scores, answer)
    assert winner.tolist() == [1] and total.item() == pytest.approx(1.1) and index.tolist() == [1]
    assert best_of_n(scores).tolist() == [0]
    # majority voting is Vote-Sum with unit scores
    assert vote_sum(torch.ones(3), answer)[0].tolist() == [1]


def test_vote_sum_ties_go_to_the_answer_with_the_highest_single_score():
    # A: 0.5 + 0.5 = 1.0, B: 0.9 + 0.1 = 1.0 → tie; B holds the highest single score (0.9)
    winner, total, index = vote_sum(torch.tensor([0.5, 0.9, 0.5, 0.1]), torch.tensor([0, 1, 0, 1]))
    assert winner.tolist() == [1] and total.item() == pytest.approx(1.0) and index.tolist() == [1]
    # full tie (same sums, same best) → the smaller answer id
    assert vote_sum(torch.tensor([0.5, 0.5]), torch.tensor([3, 2]))[0].tolist() == [2]


def loop_vote_sum(scores, answer, group):
    out = []
    for p in range(int(group.max()) + 1):
        members = [i for i in range(len(scores)) if group[i] == p]
        sums, best = {}, {}
        for i in members:
            a = int(answer[i])
            sums[a] = sums.get(a, 0.0) + float(scores[i])
            best[a] = max(best.get(a, -math.inf), float(scores[i]))
        top = max(sums.values())
        cands = sorted(a for a in sums if sums[a] >= top - 1e-6)
        win = max(cands, key=lambda a: (best[a], -a))
        idx = max((i for i in members if int(answer[i]) == win), key=lambda i: (float(scores[i]), -i))
        top_i = max(members, key=lambda i: (float(scores[i]), -i))
        out.append((win, sums[win], idx, top_i))
    return out


def test_vote_sum_and_best_of_n_loop_vs_vectorised_on_unequal_non_contiguous_groups():
    g = torch.Generator().manual_seed(5)
    group = torch.tensor([1, 0, 1, 2, 0, 1, 3, 2, 1, 0, 1])  # sizes 3, 5, 2, 1
    scores = torch.rand(11, generator=g, dtype=torch.float64)
    answer = torch.randint(0, 3, (11,), generator=g)
    winner, total, index = vote_sum(scores, answer, group)
    best = best_of_n(scores, group)
    for p, (win, s, idx, top_i) in enumerate(loop_vote_sum(scores, answer, group)):
        assert int(winner[p]) == win and float(total[p]) == pytest.approx(s)
        assert int(index[p]) == idx and int(best[p]) == top_i


def test_completion_scores_by_hand():
    s = torch.tensor([[0.0, 0.5, 0.0, 0.8], [0.9, 0.0, 0.0, 0.0]])
    end = torch.tensor([[False, True, False, True], [True, False, False, False]])
    assert completion_scores(s, end).tolist() == pytest.approx([0.5, 0.9])
    assert completion_scores(s, end, reduce="mean").tolist() == pytest.approx([0.65, 0.9])
    assert completion_scores(s, end, reduce="prod").tolist() == pytest.approx([0.4, 0.9])
    assert completion_scores(s, end, reduce="last").tolist() == pytest.approx([0.8, 0.9])
    with pytest.raises(ValueError, match="at least one step end"):
        completion_scores(s, torch.zeros_like(end))


# ---------------------------------------------------------------------------------------------- the advantage
def close(actual, expected, atol=1e-5):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def worked_rollout():
    """The docstring's example: one group; completion 0 (4 tokens) has steps ending at t = 1, 3 with rewards 0.8,
    0.2 and outcome 1; completion 1 (3 tokens) one step ending at t = 2 with reward 0.5 and outcome 0."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]).bool()
    end = torch.tensor([[0, 1, 0, 1], [0, 0, 1, 0]]).bool()
    rewards = torch.tensor([[0.0, 0.8, 0.0, 0.2], [0.0, 0.0, 0.5, float("nan")]])  # NaN in padding is ignored
    return Rollout(
        group=torch.tensor([0, 0]),
        mask=mask,
        reward=torch.tensor([1.0, 0.0]),
        extras={"step_rewards": rewards, "step_end": end},
    )


def test_process_advantage_on_the_worked_example():
    r = worked_rollout()
    # step rewards {0.8, 0.2, 0.5}: mean 0.5, std (ddof 1) 0.3 → 1, −1, 0; outcome GRPO ±1/√2
    norm = normalised_step_rewards(r.extras["step_rewards"], r.extras["step_end"], r.mask, r.group)
    close(norm, [[0, 1, 0, -1], [0, 0, 0, 0]])
    adv = ADVANTAGES["process"](r)
    h = 1 / math.sqrt(2)
    expected = [[h, h, h - 1, h - 1], [-h, -h, -h, 0.0]]
    close(adv, expected)
    # outcome_coef 0: DeepSeekMath process supervision alone; process_coef 0: GRPO
    close(ADVANTAGES["process"](r, outcome_coef=0.0), [[0, 0, -1, -1], [0, 0, 0, 0]])
    assert torch.allclose(ADVANTAGES["process"](r, process_coef=0.0), ADVANTAGES["grpo"](r))


def test_process_advantage_without_step_ends_reads_dense_token_rewards():
    r = worked_rollout()
    extras = {"step_rewards": torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.0]])}
    adv = ADVANTAGES["process"](r.replace(extras=extras), outcome_coef=0.0)
    vals = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    mean = sum(vals) / 7
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / 6)
    z = [(v - mean) / std for v in vals]
    assert adv[0].tolist() == pytest.approx([sum(z[t:4]) for t in range(4)], abs=1e-4)
    assert adv[1].tolist() == pytest.approx([sum(z[4 + t : 7]) for t in range(3)] + [0.0], abs=1e-4)


def loop_process(rollout, process_coef, outcome_coef, eps=1e-6):
    B, T = rollout.mask.shape
    sr, end, mask = rollout.extras["step_rewards"], rollout.extras["step_end"], rollout.mask
    out = [[0.0] * T for _ in range(B)]
    for p in range(int(rollout.group.max()) + 1):
        members = [i for i in range(B) if rollout.group[i] == p]
        steps = [float(sr[i, t]) for i in members for t in range(T) if mask[i, t] and end[i, t]]
        m = sum(steps) / len(steps) if steps else 0.0
        s = math.sqrt(sum((x - m) ** 2 for x in steps) / (len(steps) - 1)) if len(steps) > 1 else 0.0
        rs = [float(rollout.reward[i]) for i in members]
        rm = sum(rs) / len(rs)
        rstd = math.sqrt(sum((x - rm) ** 2 for x in rs) / (len(rs) - 1)) if len(rs) > 1 else 0.0
        for i in members:
            a_out = (float(rollout.reward[i]) - rm) / (rstd + eps)
            for t in range(T):
                if not mask[i, t]:
                    continue
                a_proc = sum((float(sr[i, u]) - m) / (s + eps) for u in range(t, T) if mask[i, u] and end[i, u])
                out[i][t] = process_coef * a_proc + outcome_coef * a_out
    return out


def test_process_advantage_loop_vs_vectorised_on_unequal_groups():
    g = torch.Generator().manual_seed(11)
    B, T = 9, 7
    group = torch.tensor([2, 0, 1, 2, 0, 2, 3, 1, 2])  # sizes 2, 2, 4, 1 (a lone completion)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    mask[0, 1] = mask[0, 0]  # keep row 0 valid; a hole (tool output) inside row 3:
    mask[3, 0] = True
    if lengths[3] > 2:
        mask[3, 1] = False
    end = torch.rand(B, T, generator=g) < 0.4
    end |= torch.arange(T)[None, :] == (lengths - 1)[:, None]  # the last token ends the final step
    rollout = Rollout(
        group=group,
        mask=mask,
        reward=torch.rand(B, generator=g, dtype=torch.float64),
        extras={"step_rewards": torch.rand(B, T, generator=g, dtype=torch.float64), "step_end": end},
    )
    for pc, oc in ((1.0, 1.0), (0.5, 0.0), (1.0, 2.0)):
        adv = ADVANTAGES["process"](rollout, process_coef=pc, outcome_coef=oc)
        close(adv, loop_process(rollout, pc, oc), atol=1e-9)
        assert bool((adv[~mask] == 0).all())


def test_process_advantage_rejects_missing_or_malformed_extras():
    r = worked_rollout()
    with pytest.raises(ValueError, match=r"step_rewards.*missing"):
        ADVANTAGES["process"](r.replace(extras={}))
    with pytest.raises(ValueError, match="must be float"):
        ADVANTAGES["process"](r.replace(extras={"step_rewards": torch.zeros(2, 3)}))
    with pytest.raises(ValueError, match="must be bool"):
        ADVANTAGES["process"](r.replace(extras={**r.extras, "step_end": torch.zeros(2, 4)}))
    bad = r.extras["step_rewards"].clone()
    bad[0, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        ADVANTAGES["process"](r.replace(extras={**r.extras, "step_rewards": bad}))
    assert ADVANTAGES.requires("process") == {"step_rewards"}


# ---------------------------------------------------------------------------------------------- the preset
def test_mcts_prm_preset_is_process_supervised_grpo_written_out_by_hand():
    """Preset "mcts_prm": the "process" advantage (DeepSeekMath §4.1.3 + GRPO outcome) with GRPO's loss: PPO clip
    0.2, k3 KL 0.04, 1/|o_i| inside and the mean over completions (Eq. 3)."""
    preset = PRESETS["mcts_prm"]
    assert [p.name for p in preset.rollout] == ["mcts_prm"] and preset.advantage.name == "process"
    g = torch.Generator().manual_seed(2)
    r = worked_rollout()
    old = -torch.rand(2, 4, generator=g, dtype=torch.float64) - 0.1
    ref = old - 0.2 * torch.rand(2, 4, generator=g, dtype=torch.float64)
    logp = (old + 0.3 * torch.randn(2, 4, generator=g, dtype=torch.float64)).requires_grad_()
    r = r.replace(reward=r.reward.double(), old_logp=old, ref_logp=ref)
    adv = ADVANTAGES[preset.advantage.name](r, **preset.advantage.params)
    agg = dict(aggregation=preset.aggregation, num_tokens=7.0, num_seqs=2.0, norm_constant=4)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, r, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, r, **agg, **part.params)[0]
    h = 1 / math.sqrt(2)
    a = [[h, h, h - 1, h - 1], [-h, -h, -h]]
    total = 0.0
    for i, n in enumerate((4, 3)):
        terms = []
        for t in range(n):
            ratio = math.exp(float(logp[i, t].detach() - old[i, t]))
            pg = -min(ratio * a[i][t], min(max(ratio, 0.8), 1.2) * a[i][t])
            x = float(ref[i, t] - logp[i, t].detach())
            terms.append(pg + 0.04 * (math.exp(x) - x - 1))
        total += sum(terms) / n
    assert loss.item() == pytest.approx(total / 2, rel=1e-5)
    loss.backward()
    assert bool((logp.grad[~r.mask] == 0).all()) and logp.grad.abs().sum() > 0
