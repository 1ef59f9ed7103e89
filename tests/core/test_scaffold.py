"""Scaf-GRPO's hard-group rescue and DeepVideo-R1's difficulty-aware augmentation: the pure parts, checked by hand,
against slow loop versions, and the two presets' objectives written out by hand ("scaf_grpo", "reg_grpo_aug")."""

import math
import random
import re

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.scaffold import (
    HINT_TEMPLATE,
    answer_prefix_hints,
    apply_hint,
    augmentation_strength,
    buffer_reference,
    difficulty_gap,
    first_failing_member,
    group_member_positions,
    hint_level_for,
    map_prompt_text,
    minimal_level_choice,
    noise_count,
    noise_positions,
    prompt_text,
    scaffold_replacement,
    space_noise,
    splice_index,
    true_hard_groups,
    update_buffer,
)
from grpolab.core.types import Rollout
from grpolab.models import CHARS


# ---------------------------------------------------------------------------------------------------- Scaf-GRPO
def test_true_hard_groups_by_hand():
    # groups (non-contiguous): 0 = rows 0, 3 → [0, 0] hard; 1 = rows 1, 4 → [1, 0] not; 2 = row 2 → [nan] hard
    # (NaN counts as 0); 3 has no member → not hard
    acc = torch.tensor([0.0, 1.0, float("nan"), 0.0, 0.0])
    group = torch.tensor([0, 1, 2, 0, 1])
    assert true_hard_groups(acc, group, 4).tolist() == [True, False, True, False]
    # with threshold 0.5 a group of partial scores [0.4, 0.2] is hard, [0.6, 0] is not
    assert true_hard_groups(
        torch.tensor([0.4, 0.2, 0.6, 0.0]), torch.tensor([0, 0, 1, 1]), 2, threshold=0.5
    ).tolist() == [
        True,
        False,
    ]
    # groups past the largest id in the batch, and an empty batch, have no member: not hard
    assert true_hard_groups(torch.tensor([0.0]), torch.tensor([1]), 3).tolist() == [False, True, False]
    assert true_hard_groups(torch.zeros(0), torch.zeros(0, dtype=torch.long), 2).tolist() == [False, False]


def test_minimal_level_choice_by_hand():
    # group 0: hinted rows 0 (lvl 1, wrong), 1 (lvl 2, right), 2 (lvl 3, right) → 1
    # group 1: rows 3 (lvl 4, right), 5 (lvl 2, right) → 5 (lower level wins over the earlier index)
    # group 2: row 4 (lvl 1, wrong) → -1; group 3: no hinted row → -1
    correct = torch.tensor([False, True, True, True, False, True])
    level = torch.tensor([1, 2, 3, 4, 1, 2])
    source = torch.tensor([0, 0, 0, 1, 2, 1])
    assert minimal_level_choice(correct, level, source, 4).tolist() == [1, 5, -1, -1]
    # ties on the level go to the first index (the code's candidate_indices[0])
    assert minimal_level_choice(torch.tensor([True, True]), torch.tensor([2, 2]), torch.tensor([0, 0]), 1).tolist() == [
        0
    ]
    # no hinted completion at all
    empty = torch.zeros(0, dtype=torch.long)
    assert minimal_level_choice(empty.bool(), empty, empty, 2).tolist() == [-1, -1]


def test_first_failing_member_by_hand():
    # group 0 = rows 0, 2, 5 with acc [1, 0, 0] → 2; group 1 = rows 1, 3 with acc [0, 0] → 1; group 2 = row 4 (1) → -1
    acc = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    group = torch.tensor([0, 1, 0, 1, 2, 0])
    assert first_failing_member(acc, group, 3).tolist() == [2, 1, -1]


def test_splice_index_by_hand_and_bad_input():
    # n = 5: row 1 ← new 2 (index 7), row 4 ← new 0 (index 5)
    assert splice_index(5, torch.tensor([1, 4]), torch.tensor([2, 0])).tolist() == [0, 7, 2, 3, 5]
    assert splice_index(3, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="replaced twice"):
        splice_index(3, torch.tensor([1, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="positions"):
        splice_index(3, torch.tensor([1]), torch.tensor([0, 1]))


def test_after_replacement_a_true_hard_group_has_exactly_one_correct_sample_and_the_rest_is_untouched():
    """Spec part A §19's unit test. Batch: group 0 = rows 0-3 all wrong (hard), group 1 = rows 4-7 with one right,
    group 2 = rows 8-11 all wrong (hard) with no correct hinted completion, group 3 = rows 12-15 all wrong (hard)."""
    acc = torch.tensor([0.0] * 4 + [0.0, 1.0, 0.0, 0.0] + [0.0] * 4 + [0.0] * 4)
    group = torch.arange(4).repeat_interleave(4)
    # hinted: group 0 levels 1..3 = [0, 1, 1]; group 2 levels 1..2 = [0, 0]; group 3 levels 1..2 = [1, 1];
    # group 1 (not hard) got a hinted sample by mistake: it must be ignored
    hint_acc = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    hint_lvl = torch.tensor([1, 2, 3, 1, 2, 1, 2, 1])
    hint_grp = torch.tensor([0, 0, 0, 2, 2, 3, 3, 1])
    at, take, hard, rescued = scaffold_replacement(acc, group, hint_acc, hint_lvl, hint_grp, 4)
    # by hand: group 0 → hinted 1 (level 2) at row 0; group 3 → hinted 5 (level 1) at row 12
    assert at.tolist() == [0, 12] and take.tolist() == [1, 5]
    assert hard.tolist() == [True, False, True, True] and rescued.tolist() == [True, False, False, True]
    new_acc = torch.cat([acc, hint_acc])[splice_index(16, at, take)]  # [16]
    for g in range(4):
        rows = group == g
        if rescued[g]:
            assert int((new_acc[rows] == 1).sum()) == 1
        else:
            assert torch.equal(new_acc[rows], acc[rows])
    assert torch.equal(new_acc[group != 0][:3], acc[group != 0][:3])


def slow_scaffold(acc, group, hint_acc, hint_lvl, hint_grp, P):
    out = []
    for g in range(P):
        members = [i for i in range(len(acc)) if group[i] == g]
        if not members or any(acc[i] > 0 for i in members):
            continue
        best = None
        for m in range(len(hint_acc)):
            if hint_grp[m] == g and hint_acc[m] > 0 and (best is None or hint_lvl[m] < hint_lvl[best]):
                best = m
        if best is not None:
            out.append((members[0], best))
    return out


def test_scaffold_replacement_equals_a_loop_on_random_unequal_groups():
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        P = int(torch.randint(1, 6, (1,), generator=g))
        N = int(torch.randint(P, 4 * P + 1, (1,), generator=g))
        group = torch.cat([torch.arange(P), torch.randint(0, P, (N - P,), generator=g)])
        group = group[torch.randperm(N, generator=g)]  # every group present, non-contiguous, unequal sizes
        acc = (torch.rand(N, generator=g) < 0.3).float()
        M = int(torch.randint(0, 12, (1,), generator=g))
        hint_grp = torch.randint(0, P, (M,), generator=g)
        hint_lvl = torch.randint(1, 5, (M,), generator=g)
        hint_acc = (torch.rand(M, generator=g) < 0.4).float()
        at, take, _, _ = scaffold_replacement(acc, group, hint_acc, hint_lvl, hint_grp, P)
        want = slow_scaffold(acc.tolist(), group.tolist(), hint_acc.tolist(), hint_lvl.tolist(), hint_grp.tolist(), P)
        assert list(zip(at.tolist(), take.tolist(), strict=True)) == want


# ------------------------------------------------------------------------------------------- DeepVideo-R1's ΔR
def test_replay_buffer_keeps_the_last_window_rewards():
    buf = update_buffer([], torch.tensor([1.0, 0.0, float("nan")]), window=4)
    assert buf == [1.0, 0.0]  # NaN skipped
    buf = update_buffer(buf, torch.tensor([1.0, 1.0, 0.0]), window=4)
    assert buf == [0.0, 1.0, 1.0, 0.0]  # the oldest 1.0 dropped
    with pytest.raises(ValueError, match="window"):
        update_buffer([], torch.ones(1), window=0)


def test_difficulty_gap_by_hand():
    # buffer [1, 0, 0, 0] → reference 0.25; groups (non-contiguous) 0 = [0, 0] → ΔR 0.25 (hard),
    # 1 = [1, 1, 0] → 0.25 − 2/3 = −0.41667 (easy), 2 = [0.25] → 0
    ref = buffer_reference([1.0, 0.0, 0.0, 0.0], torch.tensor([9.0]))
    assert ref == 0.25
    reward = torch.tensor([0.0, 1.0, 0.25, 1.0, 0.0, 0.0])
    group = torch.tensor([0, 1, 2, 1, 0, 1])
    gap = difficulty_gap(reward, group, 3, reference=ref)
    assert gap.tolist() == pytest.approx([0.25, 0.25 - 2 / 3, 0.0])
    # empty buffer: the batch mean (0.375 here, NaN skipped) stands in
    assert buffer_reference([], torch.tensor([0.5, 0.25, float("nan")])) == pytest.approx(0.375)
    assert buffer_reference([], torch.zeros(0)) == 0.0


def test_scalings_are_monotone_and_match_hand_values():
    gap = torch.tensor([-2.0, -0.3, 0.0, 0.1, 0.25, 0.26, 0.5, 1.0])
    s = augmentation_strength(gap)
    assert s.tolist() == pytest.approx([1.0, 0.3, 0.0, 0.1, 0.25, 0.26, 0.5, 1.0])
    assert augmentation_strength(torch.tensor([1.0]), scale=4.0).tolist() == [0.25]
    # K = 4 levels: ceil(4 s) → 0.1 → 1, 0.25 → 1, 0.26 → 2, 0.5 → 2, 1 → 4
    lv = hint_level_for(s[3:], torch.full((5,), 4))
    assert lv.tolist() == [1, 1, 2, 2, 4]
    assert hint_level_for(torch.tensor([0.5, 0.9]), torch.tensor([0, 1])).tolist() == [0, 1]  # K = 0 → none
    # max_noise 4: 0.3 → 2 spaces, 1 → 4, 0 → 0
    assert noise_count(s[:3]).tolist() == [4, 2, 0]
    fine = torch.linspace(0, 1, 101)
    assert (hint_level_for(fine, torch.full((101,), 5)).diff() >= 0).all()
    assert (noise_count(fine, max_noise=7).diff() >= 0).all()
    with pytest.raises(ValueError, match="scale"):
        augmentation_strength(gap, scale=0.0)
    with pytest.raises(ValueError, match="max_noise"):
        noise_count(s, max_noise=0)


def test_group_member_positions_by_hand():
    pos, counts = group_member_positions(torch.tensor([2, 0, 2, 1, 0, 2]), torch.tensor([2, 1]))
    assert pos.tolist() == [0, 2, 5, 3] and counts.tolist() == [3, 1]


# ---------------------------------------------------------------------------------------------------- text
def test_answer_prefix_hints_by_hand():
    # L = 3, levels 4: ceil(3/4) = 1, ceil(6/4) = 2, ceil(9/4) = 3, 3 → 3 distinct prefixes
    assert answer_prefix_hints("198") == ["1", "19", "198"]
    assert answer_prefix_hints(" 5 ") == ["5"]
    assert answer_prefix_hints(68, levels=1) == ["68"]
    assert answer_prefix_hints("abcdefgh") == ["ab", "abcd", "abcdef", "abcdefgh"]
    assert answer_prefix_hints("") == []
    with pytest.raises(ValueError, match="levels"):
        answer_prefix_hints("1", levels=0)


def test_apply_hint_puts_the_hint_before_the_prompt_and_into_the_last_user_message():
    assert apply_hint("23+45=", "6") == "(6) 23+45="
    assert set(apply_hint("23+45=", "6,8")) <= set(CHARS)  # the default template is tokenizer-safe
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}, {"role": "user", "content": "q2"}]
    out = apply_hint(chat, "h", template="{prompt} Hints: {hint}")
    assert out[2]["content"] == "q2 Hints: h" and out[1]["content"] == "q1" and chat[2]["content"] == "q2"
    with pytest.raises(ValueError, match="hint"):
        apply_hint("1+1=", "2", template="{prompt}")
    with pytest.raises(ValueError, match="user message"):
        map_prompt_text([{"role": "system", "content": "x"}], str.upper)
    with pytest.raises(ValueError, match="prompt must be"):
        map_prompt_text(3, str.upper)
    assert HINT_TEMPLATE.format(hint="1", prompt="2") == "(1) 2"


def test_prompt_text_reads_what_map_prompt_text_changes():
    chat = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]
    assert prompt_text("23+45=") == "23+45=" and prompt_text(chat) == "q2"  # the LAST user message
    assert prompt_text([{"role": "user"}]) == ""  # no content: the empty question, as map_prompt_text maps it
    seen = []
    for prompt in ("7+1=", chat):
        map_prompt_text(prompt, lambda text: seen.append(text) or text)
    assert seen == [prompt_text("7+1="), prompt_text(chat)]
    # a chat prompt without a user message has no question: both raise (ICPO used to fall back to the last message)
    no_user = [{"role": "system", "content": "be brief"}, {"role": "assistant", "content": "2+2="}]
    for fn in (prompt_text, lambda p: map_prompt_text(p, str.upper)):
        with pytest.raises(ValueError, match=r"needs a user message .* got roles \['system', 'assistant'\]"):
            fn(no_user)
        with pytest.raises(ValueError, match="prompt must be"):
            fn({"role": "user", "content": "x"})


def test_space_noise_never_changes_the_problem():
    rng = random.Random(0)
    for a in (0, 7, 23, 99):
        for op in "+-":
            for b in (0, 5, 45, 99):
                prompt = f"{a}{op}{b}="
                for count in range(6):
                    noisy = space_noise(prompt, count, rng)
                    assert noisy.count(" ") == count and noisy.replace(" ", "") == prompt
                    assert noisy.rstrip(" ").endswith("=") and noisy.endswith("=")  # the answer cue stays last
                    # the spaces split no operand: both numbers are still contiguous digit runs
                    m = re.fullmatch(r" *(\d+) *([+-]) *(\d+) *=", noisy)
                    assert m is not None and m.groups() == (str(a), op, str(b))
    assert noise_positions("12+3=") == [0, 2, 3, 4]
    assert noise_positions("") == [] and space_noise("", 3, rng) == ""
    assert space_noise("1+1=", 0, rng) == "1+1="
    chat = space_noise([{"role": "user", "content": "1+1="}], 2, random.Random(3))
    assert chat[0]["content"].replace(" ", "") == "1+1=" and chat[0]["content"].count(" ") == 2


# ------------------------------------------------------------------------------------------------ the presets
T = 4
LENGTHS = [4, 2, 3, 4, 1, 3]


def toy_batch(rewards):
    g = torch.Generator().manual_seed(11)
    mask = torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]  # [B, T]
    old = -torch.rand(6, T, generator=g, dtype=torch.float64) - 0.1  # [B, T]
    logp = old + 0.3 * torch.randn(6, T, generator=g, dtype=torch.float64)  # [B, T]
    logp[1, 0] = old[1, 0] + math.log(4.0)  # ratio 4 on a negative-advantage row: the dual clip (c = 3) acts
    logp = logp.requires_grad_()
    rollout = Rollout(
        group=torch.tensor([0, 0, 0, 1, 1, 1]),
        mask=mask,
        reward=torch.tensor(rewards, dtype=torch.float64),
        old_logp=old,
        ref_logp=old - 0.2 * torch.rand(6, T, generator=g, dtype=torch.float64),
        extras={"off_policy": torch.tensor([True, False, False, False, False, False])},
    )
    return rollout, logp


def compose(preset, rollout, logp):
    """The trainer's order for one batch (advantage → loss + regularizers), driven only by the preset's data."""
    adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params)  # [B, T]
    agg = dict(aggregation=preset.aggregation, norm_constant=T)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, rollout, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, rollout, **agg, **part.params)[0]
    return loss


def grpo_advantages(r):
    out = []
    for i in range(6):
        idx = [j for j in range(6) if j // 3 == i // 3]
        mean = sum(r[j] for j in idx) / 3
        std = math.sqrt(sum((r[j] - mean) ** 2 for j in idx) / 2)
        out.append((r[i] - mean) / (std + 1e-6))
    return out


def expected_scaf_grpo(rollout, logp):
    """Scaf-GRPO's update (verl "vanilla" loss of the released code): GRPO advantage (ddof 1, ε 1e-6), dual-clip PPO
    per token (ε 0.2, c 3: for A < 0 the loss is capped at −3A), token mean over all valid tokens, no KL. The rescued
    row (row 0, off_policy) enters plainly."""
    lp, old = logp.detach().tolist(), rollout.old_logp.tolist()
    adv = grpo_advantages(rollout.reward.tolist())
    total, count = 0.0, 0
    for i in range(6):
        a = adv[i]
        for t in range(LENGTHS[i]):
            ratio = math.exp(lp[i][t] - old[i][t])
            loss = max(-a * ratio, -a * min(max(ratio, 0.8), 1.2))
            if a < 0:
                loss = min(loss, -3.0 * a)
            total += loss
            count += 1
    return total / count


def expected_reg_grpo_aug(rollout, logp):
    """Reg-GRPO (arXiv 2506.07464), as the reg_grpo preset: mean over completions of (Â_i − (ρ_i − mean_G ρ)/(std_G ρ
    + ε))², ρ_i = Σ_t log π_θ/π_old, plus 0.1 · k3 KL to the reference (1/G Σ_i 1/|o_i| Σ_t)."""
    lp, old, ref = logp.detach().tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist()
    adv = grpo_advantages(rollout.reward.tolist())
    rho = [sum(lp[i][t] - old[i][t] for t in range(LENGTHS[i])) for i in range(6)]
    total = 0.0
    for i in range(6):
        idx = [j for j in range(6) if j // 3 == i // 3]
        mean = sum(rho[j] for j in idx) / 3
        std = math.sqrt(sum((rho[j] - mean) ** 2 for j in idx) / 2)
        total += (adv[i] - (rho[i] - mean) / (std + 1e-6)) ** 2
    kl = 0.0
    for i in range(6):
        xs = [ref[i][t] - lp[i][t] for t in range(LENGTHS[i])]
        kl += sum(math.exp(x) - x - 1 for x in xs) / LENGTHS[i]
    return total / 6 + 0.1 * kl / 6


@pytest.mark.parametrize(
    ("name", "expected"), [("scaf_grpo", expected_scaf_grpo), ("reg_grpo_aug", expected_reg_grpo_aug)]
)
def test_preset_equals_its_paper_objective(name, expected):
    # a rescued hard group [1 (hinted), 0, 0] and an ordinary group [0, 1, 1]
    rollout, logp = toy_batch([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    loss = compose(PRESETS[name], rollout, logp)
    assert loss.item() == pytest.approx(expected(rollout, logp), rel=1e-9, abs=1e-12)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad.abs().sum() > 0
    assert (logp.grad[~rollout.mask] == 0).all()


def test_the_dual_clip_is_active_in_the_toy_batch():
    rollout, logp = toy_batch([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    a = grpo_advantages(rollout.reward.tolist())[1]
    ratio = math.exp(logp[1, 0].item() - rollout.old_logp[1, 0].item())
    assert a < 0 and -a * ratio > -3.0 * a  # so the c = 3 cap changes the loss


def test_presets_name_their_strategies_and_keep_reg_grpo_parts():
    scaf, aug, reg = PRESETS["scaf_grpo"], PRESETS["reg_grpo_aug"], PRESETS["reg_grpo"]
    assert [p.name for p in scaf.rollout] == ["scaf_grpo"] and scaf.rollout[0].params["warmup_steps"] == 50
    assert not scaf.regularizers and scaf.trainer["num_generations"] == 8 and scaf.trainer["temperature"] == 1.0
    assert [p.name for p in aug.rollout] == ["difficulty_augment"] and aug.rollout[0].params["window"] == 100
    assert (aug.advantage, aug.loss, aug.aggregation, aug.regularizers) == (
        reg.advantage,
        reg.loss,
        reg.aggregation,
        reg.regularizers,
    )
    assert dict(aug.trainer) == dict(reg.trainer) and not reg.rollout
    assert scaf.arxiv == "2510.19807" and aug.arxiv == "2506.07464"
