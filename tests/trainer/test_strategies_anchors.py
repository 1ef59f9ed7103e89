"""Rollout strategies of gtpo / dagrpo on a random tiny model: ``token_ids`` and DaGRPO's ``expert_anchors``."""

import dataclasses

import pytest
import torch

from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

from .test_loop import TINY


def trainer(tmp_path, name="run", **overrides):
    return Trainer(resolve(None, {**TINY, "task": "arith", "output_dir": str(tmp_path), "name": name, **overrides}))


def answer_ids(tok, answer):
    return tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_token_ids_copies_the_completion_ids(tmp_path):
    t = trainer(tmp_path, algo="gtpo")
    sampled = t._sample([t.task.train[0], t.task.train[1]], 3)
    out, metrics = ROLLOUT_STRATEGIES["token_ids"](t.context, sampled)
    assert (
        torch.equal(out.extras["token_ids"], sampled.gen.completion_ids) and out.extras["token_ids"].dtype == torch.long
    )
    assert metrics == {} and "token_ids" not in sampled.extras  # the input batch is not modified


def test_anchors_are_appended_only_to_groups_where_every_completion_scored_zero(tmp_path):
    t = trainer(tmp_path, algo="dagrpo")
    rows = [t.task.train[i] for i in range(3)]
    sampled = t._sample(rows, 2)
    # groups 0 and 2 all wrong, group 1 has one correct completion
    sampled = dataclasses.replace(sampled, accuracy=torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))
    out, metrics = ROLLOUT_STRATEGIES["expert_anchors"](t.context, sampled, max_len=8)
    assert out.size == 8 and out.group.tolist() == [0, 0, 1, 1, 2, 2, 0, 2]
    assert out.extras["off_policy"].tolist() == [False] * 6 + [True, True]
    assert metrics["anchor_frac"] == pytest.approx(2 / 3) and metrics["anchor_reward"] == 1.0
    tok = t.tokenizer
    for n, row in ((6, rows[0]), (7, rows[2])):
        ids = answer_ids(tok, row["answer"])
        assert out.gen.completion_ids[n, : len(ids)].tolist() == ids
        assert out.gen.completion_mask[n].sum().item() == len(ids) and not out.gen.truncated[n]
        assert out.gen.texts[n] == row["answer"] and out.reward[n].item() == 1.0  # arith: exact answer scores 1
    # the anchor's prompt is the group's own prompt
    for n, src in ((6, 0), (7, 4)):
        assert torch.equal(
            out.gen.prompt_ids[n][out.gen.prompt_mask[n]], sampled.gen.prompt_ids[src][sampled.gen.prompt_mask[src]]
        )
        assert out.gen.prompt_index[n] == sampled.gen.prompt_index[src]
    # the sampled rows are unchanged
    assert torch.equal(out.gen.completion_ids[:6, : sampled.gen.completion_ids.shape[1]], sampled.gen.completion_ids)


def test_no_anchor_without_hard_groups_and_the_cut_to_the_generation_limit(tmp_path):
    t = trainer(tmp_path, algo="dagrpo")
    rows = [t.task.train[0], t.task.train[1]]
    sampled = t._sample(rows, 2)
    easy = dataclasses.replace(sampled, accuracy=torch.tensor([1.0, 0.0, 0.0, 1.0]))
    out, metrics = ROLLOUT_STRATEGIES["expert_anchors"](t.context, easy, max_len=8)
    # the batch as it is (the trainer fills off_policy False for every row)
    assert out is easy and out.size == 4 and metrics == {"anchor_frac": 0.0}
    hard = dataclasses.replace(sampled, accuracy=torch.zeros(4))
    out, _ = ROLLOUT_STRATEGIES["expert_anchors"](t.context, hard, max_len=1)
    assert out.size == 6 and out.gen.truncated[4:].all() and (out.gen.completion_mask[4:].sum(-1) == 1).all()
    # "reward" as the hard signal: arith rewards are 0/1 like its accuracy
    out, _ = ROLLOUT_STRATEGIES["expert_anchors"](t.context, hard, max_len=8, hard_signal="reward")
    assert out.size == 4 + int((sampled.reward.view(2, 2).max(dim=1).values <= 0).sum())


def test_anchors_explain_a_missing_column_or_a_wrong_order(tmp_path):
    t = trainer(tmp_path, algo="dagrpo")
    sampled = dataclasses.replace(t._sample([t.task.train[0]], 2), accuracy=torch.zeros(2))
    with pytest.raises(ValueError, match="'solution' column"):
        ROLLOUT_STRATEGIES["expert_anchors"](t.context, sampled, max_len=8, answer_key="solution")
    with_ids, _ = ROLLOUT_STRATEGIES["token_ids"](t.context, sampled)
    with pytest.raises(ValueError, match="before"):
        ROLLOUT_STRATEGIES["expert_anchors"](t.context, with_ids, max_len=8)
    with pytest.raises(ValueError, match="hard_signal"):
        ROLLOUT_STRATEGIES["expert_anchors"](t.context, sampled, max_len=8, hard_signal="loss")


def test_dagrpo_batch_trains_on_anchors_with_a_positive_advantage(tmp_path):
    """A random model never writes the exact arith answer: every group is hard and gets one anchor, whose
    token ids reach the advantage and whose advantage is the group's only positive one."""
    torch.manual_seed(0)
    t = trainer(tmp_path, algo="dagrpo")
    batch = t.rollout_batch()
    P, G = t.config.num_prompts, t.config.num_generations
    rollout = batch.rollout
    off = rollout.extras["off_policy"]
    assert rollout.batch_size == P * G + P and int(off.sum()) == P
    assert torch.equal(rollout.extras["token_ids"][:, : batch.gen.completion_ids.shape[1]], batch.gen.completion_ids)
    adv = batch.advantages[:, 0]
    assert (adv[off] > 0).all() and (adv[~off] < 0).all()
    assert batch.metrics["anchor_frac"] == 1.0 and batch.metrics["anchor_reward"] == 1.0
    metrics = t.update(batch)
    assert torch.isfinite(torch.tensor(metrics["loss"]))


def test_a_dagrpo_step_without_hard_groups_trains_with_the_off_policy_flag_all_false(tmp_path):
    """threshold -1: no group is hard, no anchor is appended; the Rollout still carries off_policy (all False)."""
    torch.manual_seed(0)
    rollout = [{"name": "expert_anchors", "params": {"threshold": -1.0}}, {"name": "token_ids"}]
    t = trainer(tmp_path, algo="dagrpo", rollout=rollout)
    batch = t.rollout_batch()
    P, G = t.config.num_prompts, t.config.num_generations
    assert batch.metrics["anchor_frac"] == 0.0 and batch.rollout.batch_size == P * G
    assert batch.rollout.extras["off_policy"].tolist() == [False] * (P * G)
    assert torch.isfinite(torch.tensor(t.update(batch)["loss"]))


def test_gtpo_batch_reads_token_ids_and_entropy_and_filters_a_random_model(tmp_path):
    """Paper threshold 0.7 nats: a random model's completions (mean entropy ~ ln 24) are all filtered (A = 0);
    with the threshold raised they carry the conflict-weighted, entropy-shaped advantage."""
    torch.manual_seed(0)
    t = trainer(tmp_path, algo="gtpo", task="digits", num_generations=4)
    batch = t.rollout_batch()
    assert batch.metrics["gtpo/entropy_filtered_frac"] == 1.0 and batch.metrics["gtpo/mean_entropy"] > 2.0
    assert (batch.advantages == 0).all()
    loose = trainer(
        tmp_path,
        "loose",
        algo="gtpo",
        task="digits",
        selectors=[{"name": "gtpo", "params": {"entropy_threshold": 10.0}}],
    )
    batch = loose.rollout_batch()
    assert batch.metrics["gtpo/entropy_filtered_frac"] == 0.0 and (batch.advantages != 0).any()
    before = [p.clone() for p in loose.model.parameters()]
    loose.update(batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, loose.model.parameters(), strict=True))
