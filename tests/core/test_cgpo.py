"""CGPO (The Perfect Blend, arXiv 2409.20370): judges, calibrated reward, CRPG / CODPO / CRRAFT, hand-checked."""

import math
import random

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.cgpo import (
    calibrated_reward,
    cgpo_judges,
    codpo,
    codpo_roles,
    crpg,
    crpg_targets,
    crraft,
    crraft_targets,
    judge_columns,
    kl_weight,
    sequence_kl,
)
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def log_sig(x):
    return -math.log1p(math.exp(-x))


# ---------------------------------------------------------------------------------------------------- a hand batch
# Two prompts, two responses each. Columns: rm (reward model) and judge_x. ȳ scores rm 1 (prompt 0) and 2 (prompt 1).
# Sequence log-probs (on-policy: old = logp): (-2, -0.5, -3, -3) over lengths (2, 1, 3, 2); reference sums
# (-2, -5.5, -3, -2), so KL = old - ref = (0, 5, 0, -1).
LOGP = [[-1.0, -1.0, 0.0], [-0.5, 0.0, 0.0], [-1.0, -1.0, -1.0], [-2.0, -1.0, 0.0]]
REF = [[-1.0, -1.0, 0.0], [-5.5, 0.0, 0.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]
LENGTHS = [2, 1, 3, 2]


def hand_batch(logp_rows=LOGP, *, extras=None):
    mask = torch.arange(3)[None, :] < torch.tensor(LENGTHS)[:, None]  # [4, 3]
    logp = torch.tensor(logp_rows, dtype=torch.float64)
    return Rollout(
        group=torch.tensor([0, 0, 1, 1]),
        mask=mask,
        reward=torch.tensor([2.0, 1.0, 2.0, 4.0], dtype=torch.float64),  # rm + judge_x (the task's combined reward)
        rewards=torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 0.0], [3.0, 1.0]], dtype=torch.float64),
        reward_names=("rm", "judge_x"),
        old_logp=logp.clone(),
        ref_logp=torch.tensor(REF, dtype=torch.float64),
        extras={
            "baseline_reward": torch.tensor([2.0, 2.0, 3.0, 3.0], dtype=torch.float64),
            "baseline_rewards": torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 1.0], [2.0, 1.0]], dtype=torch.float64),
            **(extras or {}),
        },
    ), logp


def shaped_hand_batch(kl_threshold=10.0, **kw):
    rollout, logp = hand_batch(**kw)
    shaped, metrics = cgpo_judges(rollout, kl_threshold=kl_threshold)
    return shaped, logp.clone().requires_grad_(), metrics


def test_shaping_reads_judges_reward_and_baseline_by_hand():
    shaped, _, m = shaped_hand_batch()
    ex = shaped.extras
    assert ex["cgpo_judge"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert ex["cgpo_reward"].tolist() == [1.0, 0.0, 2.0, 3.0]  # the rm column, not the combined reward
    # R_cal = σ(r − r(ȳ)) = σ(0), σ(−1), σ(0), σ(1)
    torch.testing.assert_close(ex["cgpo_calibrated"], torch.tensor([0.5, sig(-1), 0.5, sig(1)], dtype=torch.float64))
    torch.testing.assert_close(ex["cgpo_kl"], torch.tensor([0.0, 5.0, 0.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(shaped.reward, torch.tensor([0.5, sig(-1), 0.0, sig(1)], dtype=torch.float64))  # J·R_cal
    assert ex["cgpo_counts"] == {"rows": 4.0, "tokens": 8.0, "candidate_tokens": 8.0, "crraft": 2.0, "codpo": 2.0}
    assert m["cgpo/judge_pass_frac"] == 0.75 and m["cgpo/codpo_pairs"] == 2.0


def test_calibrated_reward_is_one_half_at_the_reference_score():
    r = torch.tensor([-3.0, 0.0, 7.5])
    assert calibrated_reward(r, r).tolist() == [0.5, 0.5, 0.5]
    assert calibrated_reward(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(sig(1.0))


def test_kl_weight_and_sequence_kl_by_hand():
    # w = clamp(1 − KL/thr, 0): thr 4 → KL 0 → 1, 1 → 0.75, 4 → 0, 9 → 0, −2 → 1.5
    assert kl_weight(torch.tensor([0.0, 1.0, 4.0, 9.0, -2.0]), kl_threshold=4.0).tolist() == [1.0, 0.75, 0.0, 0.0, 1.5]
    mask = torch.tensor([[True, False]])
    # padding holds NaN: ignored
    assert sequence_kl(torch.tensor([[-1.0, math.nan]]), torch.tensor([[-3.0, 0.0]]), mask).tolist() == [2.0]


def test_judge_columns_defaults_and_errors():
    assert judge_columns(["judge_a", "rm", "judge_b"]) == ([0, 2], 1)
    assert judge_columns(["r"]) == ([], None)  # one column, no judge: J = 1, reward = rollout.reward
    assert judge_columns(["r", "judge_a"], judges=[]) == ([], None)
    assert judge_columns(["r", "s"], reward="s") == ([], 1)
    with pytest.raises(ValueError, match="pass reward="):
        judge_columns(["a", "b", "judge_c"])
    with pytest.raises(ValueError, match="pass reward="):
        judge_columns(["judge_a"])
    with pytest.raises(ValueError, match="not a reward column"):
        judge_columns(["a"], judges=["judge_q"])
    with pytest.raises(ValueError, match="both the reward model and a judge"):
        judge_columns(["judge_a", "b"], reward="judge_a")
    with pytest.raises(ValueError, match="list of column names"):
        judge_columns(["a"], judges="a")


def test_single_column_task_default_no_judges():
    """The generic loop test's case: one reward column, no judge: J = 1, r = rollout.reward, R_cal = σ(r) without ȳ."""
    r = Rollout(
        group=torch.tensor([0, 0]),
        mask=torch.ones(2, 1, dtype=torch.bool),
        reward=torch.tensor([0.5, 0.0]),
        rewards=torch.tensor([[0.5], [0.0]]),
        reward_names=("digit_fraction",),
        old_logp=torch.zeros(2, 1),
        ref_logp=torch.zeros(2, 1),
    )
    shaped, _ = cgpo_judges(r, kl_threshold=1.0)
    assert shaped.extras["cgpo_judge"].tolist() == [1.0, 1.0]
    torch.testing.assert_close(shaped.extras["cgpo_calibrated"], torch.tensor([sig(0.5), 0.5]))
    assert shaped.extras["cgpo_crraft"].tolist() == [pytest.approx(sig(0.5)), 0.0]


# ---------------------------------------------------------------------------------------------------- CRPG
def test_crpg_loss_by_hand():
    shaped, logp, _ = shaped_hand_batch()
    # R̃ = J·R_cal·w, w = clamp(1 − KL/10, 0) = (1, 0.5, 1, 1.1)
    r_tilde = [0.5 * 1.0, sig(-1) * 0.5, 0.0, sig(1) * 1.1]
    mean = sum(r_tilde) / 4
    coef = [x - mean for x in r_tilde]
    seq = [-2.0, -0.5, -3.0, -3.0]
    expected = -sum(c * s for c, s in zip(coef, seq, strict=True)) / 8  # 8 completion tokens
    assert expected == pytest.approx(0.052829, abs=1e-6)
    loss, m = crpg(logp, shaped, torch.zeros(4, 3))
    assert loss.item() == pytest.approx(expected, rel=1e-12) and m["loss"] == pytest.approx(expected)
    loss.backward()
    # d loss / d logp[i, t] = −coef_i / 8 on valid tokens, 0 on padding
    grad = torch.tensor([[-c / 8] * 3 for c in coef], dtype=torch.float64) * shaped.mask
    torch.testing.assert_close(logp.grad, grad)


def test_judge_failing_response_contributes_zero_under_crpg():
    """R̃ = 0 for a failing response: its reward-model score does not change the CRPG loss (it only enters the mean)."""
    shaped, logp, _ = shaped_hand_batch()
    r_tilde, _ = crpg_targets(
        shaped.extras["cgpo_judge"],
        shaped.extras["cgpo_calibrated"],
        shaped.extras["cgpo_kl"],
        torch.ones(4, dtype=torch.bool),
        kl_threshold=10.0,
    )
    assert r_tilde[2].item() == 0.0  # row 2 fails judge_x
    base = crpg(logp, shaped, torch.zeros(4, 3))[0].item()
    rollout, _ = hand_batch()
    rewards = rollout.rewards.clone()
    rewards[2, 0] = 100.0  # the failing response's reward-model score soars
    hacked, _ = cgpo_judges(rollout.replace(rewards=rewards), kl_threshold=10.0)
    assert crpg(logp.detach(), hacked, torch.zeros(4, 3))[0].item() == pytest.approx(base, rel=1e-12)


# ---------------------------------------------------------------------------------------------------- CRRAFT
def test_crraft_loss_by_hand():
    shaped, logp, _ = shaped_hand_batch()
    # R̃ = 1[KL ≤ 10]·J·R_cal = (0.5, σ(−1), 0, σ(1)): prompt 0 picks row 0 (0.5 > 0.269), prompt 1 row 3
    assert shaped.extras["cgpo_crraft"].tolist() == [0.5, 0.0, 0.0, pytest.approx(sig(1))]
    expected = -(0.5 * -2.0 + sig(1) * -3.0) / 2  # two selected responses
    assert expected == pytest.approx(1.596588, abs=1e-6)
    loss, m = crraft(logp, shaped, torch.zeros(4, 3))
    assert loss.item() == pytest.approx(expected, rel=1e-12) and m["crraft_selected"] == 2.0
    loss.backward()
    assert (logp.grad[2] == 0).all()  # the judge-failing response contributes 0 (and gets no gradient)
    assert (logp.grad[1] == 0).all()  # not its prompt's best


def test_crraft_kl_constraint_and_reference_fallback():
    rollout, logp = hand_batch()
    # thr 0.5: row 1 (KL 5) fails the KL check; the failing judge still excludes row 2
    shaped, _ = cgpo_judges(rollout, kl_threshold=0.5)
    assert shaped.extras["cgpo_crraft"].tolist() == [0.5, 0.0, 0.0, pytest.approx(sig(1))]
    # prompt 1 with row 3 failing its judge too, plus an appended reference row ȳ (row 4, KL 0, passing)
    mask = torch.cat([rollout.mask, torch.tensor([[True, False, False]])])
    r = Rollout(
        group=torch.tensor([0, 0, 1, 1, 1]),
        mask=mask,
        reward=torch.zeros(5, dtype=torch.float64),
        rewards=torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 0.0], [3.0, 0.0], [2.0, 1.0]], dtype=torch.float64),
        reward_names=("rm", "judge_x"),
        old_logp=torch.cat([logp, torch.tensor([[-0.7, 0.0, 0.0]], dtype=torch.float64)]),
        ref_logp=torch.cat([rollout.ref_logp, torch.tensor([[-0.7, 0.0, 0.0]], dtype=torch.float64)]),
        extras={
            "baseline_rewards": torch.tensor([[1.0, 1.0]] * 2 + [[2.0, 1.0]] * 3, dtype=torch.float64),
            "baseline_row": torch.tensor([False, False, False, False, True]),
        },
    )
    shaped, m = cgpo_judges(r, kl_threshold=10.0)
    # R_cal(ȳ) = σ(r(ȳ) − r(ȳ)) = 0.5: TRL's constant fallback weight
    assert shaped.extras["cgpo_crraft"].tolist() == [0.5, 0.0, 0.0, 0.0, 0.5]
    assert m["cgpo/crraft_fallback"] == 1.0 and m["cgpo/crraft_selected"] == 2.0
    assert shaped.extras["cgpo_codpo"].tolist() == [1, 2, 0, 0, 0]  # ȳ is never a CODPO candidate; prompt 1 skipped
    assert shaped.extras["cgpo_crpg"][4].item() == 0.0
    # ȳ failing its judge: no fallback, prompt 1 contributes nothing
    failing = r.rewards.clone()
    failing[4, 1] = 0.0
    shaped, _ = cgpo_judges(r.replace(rewards=failing), kl_threshold=10.0)
    assert shaped.extras["cgpo_crraft"].tolist() == [0.5, 0.0, 0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------------- CODPO
def test_codpo_pairs_on_a_hand_made_reward_grid():
    """Four prompts × four responses: (mixed, all pass, none pass, mixed with negative rewards)."""
    reward = torch.tensor(
        [3.0, 1.0, 4.0, 2.0, 2.0, 5.0, 1.0, 3.0, 9.0, 8.0, 7.0, 6.0, -1.0, -3.0, -2.0, -5.0], dtype=torch.float64
    )
    judge = torch.tensor([1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0], dtype=torch.float64)
    group = torch.arange(4).repeat_interleave(4)
    role = codpo_roles(reward, judge, group, torch.ones(16, dtype=torch.bool))
    # prompt 0: chosen = best passing (3 at 0), rejected = worst failing (1 at 1)
    # prompt 1: all pass: chosen = 5 at 5, rejected = global worst 1 at 6
    # prompt 2: no passing response: skipped
    # prompt 3: chosen = best passing (−1 at 12), rejected = worst failing (−5 at 15); a 0-masked argmax would pick a
    # failing response here
    assert role.tolist() == [1, 2, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 1, 0, 0, 2]


def test_codpo_all_passing_ties_degenerate_to_one_response():
    role = codpo_roles(torch.ones(3), torch.ones(3), torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool))
    assert role.tolist() == [3, 0, 0]


def test_codpo_loss_by_hand():
    shaped, logp, _ = shaped_hand_batch()
    assert shaped.extras["cgpo_codpo"].tolist() == [1, 2, 2, 1]
    # prompt 0: w = row 0 (log π −2, ref −2), l = row 1 (−0.5, ref −5.5): logit (−2 + 0.5) − (−2 + 5.5) = −5
    term0 = -(log_sig(0.1 * -5.0) + 5.0 / 2 * -2.0)
    # prompt 1: w = row 3 (−3, ref −2), l = row 2 (−3, ref −3): logit 0 − 1 = −1
    term1 = -(log_sig(0.1 * -1.0) + 5.0 / 2 * -3.0)
    expected = (term0 + term1) / 2
    assert expected == pytest.approx(7.109237, abs=1e-6)
    loss, m = codpo(logp, shaped, torch.zeros(4, 3))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert m["codpo_pairs"] == 2.0 and m["codpo_acc"] == 0.0
    loss.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[~shaped.mask] == 0).all()


# ---------------------------------------------------------------------------------------------------- conventions
def random_batch(seed, *, baseline_rows=True):
    """Unequal, non-contiguous groups (one of size 1), tied integer rewards, some appended reference rows."""
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor([2, 0, 1, 0, 2, 3, 0, 2, 1, 4, 1, 0, 3])
    B, T = group.shape[0], 5
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 2
    ref = old + 0.8 * torch.randn(B, T, generator=g, dtype=torch.float64)
    rm = torch.randint(-2, 3, (B,), generator=g).double()
    judge = (torch.rand(B, generator=g) < 0.6).double()
    base = torch.randint(-1, 2, (5,), generator=g).double()[group]
    extras = {"baseline_rewards": torch.stack([base, torch.ones(B, dtype=torch.float64)], dim=1)}
    if baseline_rows:
        extras["baseline_row"] = torch.tensor([0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=torch.bool)
    rollout = Rollout(
        group=group,
        mask=mask,
        reward=rm + judge,
        rewards=torch.stack([rm, judge], dim=1),
        reward_names=("rm", "judge_ok"),
        old_logp=torch.where(mask, old, torch.full_like(old, math.nan)),  # garbage at padding
        ref_logp=torch.where(mask, ref, torch.full_like(ref, 1e6)),
        extras=extras,
    )
    logp = (old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_()
    return rollout, logp


def loop_targets(rollout, kl_threshold):
    """The three optimizers' targets written out with Python loops over prompts and responses."""
    B = rollout.batch_size
    rm = rollout.rewards[:, 0].tolist()
    J = [1.0 if v >= 0.5 else 0.0 for v in rollout.rewards[:, 1].tolist()]
    base = rollout.extras["baseline_rewards"][:, 0].tolist()
    cand = [not b for b in rollout.extras.get("baseline_row", torch.zeros(B, dtype=torch.bool)).tolist()]
    lengths, old, ref = rollout.lengths.tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist()
    kl = [sum(old[i][t] - ref[i][t] for t in range(lengths[i])) for i in range(B)]
    cal = [sig(rm[i] - base[i]) for i in range(B)]
    # CRPG: batch mean over the sampled responses
    rt = [J[i] * cal[i] * max(1 - kl[i] / kl_threshold, 0.0) if cand[i] else 0.0 for i in range(B)]
    mean = sum(rt) / sum(cand)
    crpg_c = [rt[i] - mean if cand[i] else 0.0 for i in range(B)]
    crraft_w, roles = [0.0] * B, [0] * B
    for p in range(rollout.num_groups):
        members = [i for i in range(B) if rollout.group[i] == p]
        rr = {i: (1.0 if kl[i] <= kl_threshold else 0.0) * J[i] * cal[i] for i in members}
        sampled = [i for i in members if cand[i]]
        best = max(sampled, key=lambda i: (rr[i], -i))
        if rr[best] > 0:
            crraft_w[best] = rr[best]
        else:
            refs = [i for i in members if not cand[i] and rr[i] > 0]
            if refs:
                pick = max(refs, key=lambda i: (rr[i], -i))
                crraft_w[pick] = rr[pick]
        passing = [i for i in sampled if J[i] == 1.0]
        failing = [i for i in sampled if J[i] == 0.0]
        if passing:
            chosen = max(passing, key=lambda i: (rm[i], -i))
            rejected = min(failing or sampled, key=lambda i: (rm[i], i))
            roles[chosen] |= 1
            roles[rejected] |= 2
    return crpg_c, crraft_w, roles


@pytest.mark.parametrize("seed", range(4))
def test_targets_loop_vs_vectorised_on_unequal_groups(seed):
    rollout, _ = random_batch(seed)
    shaped, _ = cgpo_judges(rollout, kl_threshold=1.5)
    crpg_c, crraft_w, roles = loop_targets(rollout, 1.5)
    torch.testing.assert_close(shaped.extras["cgpo_crpg"], torch.tensor(crpg_c, dtype=torch.float64))
    torch.testing.assert_close(shaped.extras["cgpo_crraft"], torch.tensor(crraft_w, dtype=torch.float64))
    assert shaped.extras["cgpo_codpo"].tolist() == roles


def test_crraft_targets_never_select_a_failing_response():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        judge = (torch.rand(12, generator=g) < 0.5).float()
        w, _ = crraft_targets(
            judge, torch.rand(12, generator=g), torch.zeros(12), torch.randint(0, 3, (12,), generator=g).sort().values,
            torch.ones(12, dtype=torch.bool), kl_threshold=1.0,
        )  # fmt: skip
        assert (w[judge == 0] == 0).all()


@pytest.mark.parametrize("name", ["crpg", "crraft", "codpo"])
def test_micro_batches_sum_to_the_batch_loss(name):
    """Whole-group micro-batches with the trainer's mini-batch counts: losses and gradients add up exactly."""
    rollout, logp = random_batch(1)
    shaped, _ = cgpo_judges(rollout, kl_threshold=1.5)
    counts = dict(num_tokens=float(shaped.mask.sum()), num_seqs=float(shaped.batch_size))
    fn = POLICY_LOSSES[name]
    full, _ = fn(logp, shaped, torch.zeros_like(logp), **counts)
    (full_grad,) = torch.autograd.grad(full, logp)
    total, grad = 0.0, torch.zeros_like(logp)
    for part in ([0, 2], [1, 3], [4]):  # whole prompt groups, as the preset's minibatch_groups gives
        keep = torch.isin(shaped.group, torch.tensor(part))
        loss, _ = fn(logp[keep], shaped.select(keep), torch.zeros_like(logp[keep]), **counts)
        total = total + loss
        grad[keep] += torch.autograd.grad(loss, logp)[0][keep]
    assert total.item() == pytest.approx(full.item(), rel=1e-10, abs=1e-12)
    torch.testing.assert_close(grad, full_grad)


@pytest.mark.parametrize("name", ["crpg", "crraft", "codpo"])
def test_padding_does_not_reach_loss_or_gradient(name):
    rollout, logp = random_batch(2)
    shaped, _ = cgpo_judges(rollout, kl_threshold=1.5)
    noisy = torch.where(shaped.mask, logp.detach(), torch.full_like(logp, math.nan)).requires_grad_()
    clean, _ = POLICY_LOSSES[name](logp, shaped, torch.zeros_like(logp))
    loss, _ = POLICY_LOSSES[name](noisy, shaped, torch.zeros_like(logp))
    assert loss.item() == pytest.approx(clean.item(), rel=1e-12)
    loss.backward()
    assert (noisy.grad[~shaped.mask] == 0).all() and torch.isfinite(noisy.grad).all()


def test_bad_inputs_raise_value_errors():
    rollout, logp = hand_batch()
    with pytest.raises(ValueError, match="kl_threshold"):
        cgpo_judges(rollout, kl_threshold=0.0)
    with pytest.raises(ValueError, match="old_logp"):
        cgpo_judges(rollout.replace(old_logp=None), kl_threshold=1.0)
    with pytest.raises(ValueError, match="cgpo_judges"):
        crraft(logp, rollout, torch.zeros(4, 3))  # no shaping ran
    shaped, logp, _ = shaped_hand_batch()
    with pytest.raises(ValueError, match="beta"):
        codpo(logp, shaped, torch.zeros(4, 3), beta=0.0)
    with pytest.raises(ValueError, match="minibatch_groups"):
        keep = torch.tensor([True, False, True, True])  # prompt 0's rejected response is missing
        codpo(logp[keep], shaped.select(keep), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="aggregation"):
        crpg(logp, shaped, torch.zeros(4, 3), aggregation="mean")


def test_nothing_selected_gives_a_zero_loss():
    rollout, logp = hand_batch()
    rewards = rollout.rewards.clone()
    rewards[:, 1] = 0.0  # every response fails the judge
    shaped, m = cgpo_judges(rollout.replace(rewards=rewards), kl_threshold=10.0)
    logp.requires_grad_()
    for fn in (crraft, codpo):
        loss, _ = fn(logp, shaped, torch.zeros(4, 3))
        assert loss.item() == 0.0
    assert m["cgpo/crraft_selected"] == 0.0 and m["cgpo/codpo_pairs"] == 0.0


# ---------------------------------------------------------------------------------------------------- the preset
def test_cgpo_preset_equals_crraft_written_by_hand():
    """PRESETS["cgpo"] composed as the trainer does (shaping, then the loss), on the hand batch: CRRAFT's loss."""
    preset = PRESETS["cgpo"]
    assert [p.name for p in preset.rollout] == ["cgpo_baseline"] and preset.loss.name == "crraft"
    assert preset.trainer["num_generations"] == 4 and preset.trainer["temperature"] == 0.9
    assert preset.requires >= {"old_logp", "ref_logp"}
    rollout, logp = hand_batch()
    for part in preset.shaping:
        fn = SHAPING[part.name]
        rollout, _ = fn(rollout, **with_run_arguments(fn, part.params, {"max_len": 3}))
    logp.requires_grad_()
    loss, _ = POLICY_LOSSES[preset.loss.name](
        logp, rollout, torch.zeros(4, 3), aggregation=preset.aggregation, num_tokens=8.0, num_seqs=4.0,
        **preset.loss.params,
    )  # fmt: skip
    # KL_thr 10 keeps every response: R̃ = (0.5, σ(−1), 0, σ(1)); best per prompt: rows 0 and 3
    assert loss.item() == pytest.approx(-(0.5 * -2.0 + sig(1) * -3.0) / 2, rel=1e-12)


def test_switching_the_optimizer_is_a_loss_override():
    from grpolab.trainer.config import resolve

    for name in ("crpg", "codpo"):
        config = resolve(None, {"algo": "cgpo", "loss": name, "model": "random-tiny", "progress": False})
        preset = config.preset()
        assert preset.loss.name == name and preset.shaping == PRESETS["cgpo"].shaping


def test_random_batches_agree_with_the_python_loop_for_several_thresholds():
    rng = random.Random(0)
    for seed in range(3):
        rollout, _ = random_batch(10 + seed, baseline_rows=seed != 0)
        thr = rng.choice([0.2, 1.0, 5.0])
        shaped, _ = cgpo_judges(rollout, kl_threshold=thr)
        crpg_c, crraft_w, roles = loop_targets(rollout, thr)
        torch.testing.assert_close(shaped.extras["cgpo_crpg"], torch.tensor(crpg_c, dtype=torch.float64))
        torch.testing.assert_close(shaped.extras["cgpo_crraft"], torch.tensor(crraft_w, dtype=torch.float64))
        assert shaped.extras["cgpo_codpo"].tolist() == roles
