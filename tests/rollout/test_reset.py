"""DR-PO's ``dataset_reset`` strategy on a random tiny model: reset rollouts roll the reference in, then sample."""

import copy
import json

import pytest
import torch

from grpolab.rollout.reset import dataset_reset
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

TINY = dict(
    model="random-tiny",
    task="arith",
    algo="drpo",
    steps=2,
    num_prompts=2,
    num_generations=4,
    max_new_tokens=6,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)


def trainer(tmp_path, name="run", **overrides):
    return Trainer(resolve(None, {**TINY, "output_dir": str(tmp_path), "name": name, **overrides}))


def reference_ids(tok, answer):
    return tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def sample(t, rows=4, n=3):
    return t._sample([t.task.train[i] for i in range(rows)], n)


def test_reset_rollouts_roll_in_the_reference_then_sample(tmp_path):
    torch.manual_seed(0)
    t = trainer(tmp_path)
    sampled = sample(t)
    out, metrics = dataset_reset(t.context, sampled, max_len=6, state={}, seed=1)
    assert ROLLOUT_STRATEGIES["dataset_reset"] is dataset_reset
    assert out.size == 12 and metrics["reset_frac"] == 1.0
    assert torch.equal(out.group, sampled.group) and torch.equal(out.gen.prompt_index, sampled.gen.prompt_index)
    assert out.extras["off_policy"].tolist() == [False] * 12  # the sampled tokens are the policy's
    h = out.extras["prefix_len"]
    assert h.dtype == torch.long and metrics["rollin_len"] == pytest.approx(h.float().mean().item())
    lengths = out.gen.completion_mask.sum(-1)
    for n in range(12):
        row = sampled.rows[int(out.gen.prompt_index[n])]
        ref = reference_ids(t.tokenizer, row["answer"])
        k = int(h[n])
        assert 1 <= k <= len(ref) - 1  # at least one token forced, EOS never
        assert out.gen.completion_ids[n, :k].tolist() == ref[:k]  # the roll-in is the reference's prefix
        assert k < int(lengths[n]) <= 6  # the policy sampled at least one token; roll-in + sample <= max_len
        # the prompt is the row's own prompt
        assert torch.equal(
            out.gen.prompt_ids[n][out.gen.prompt_mask[n]], sampled.gen.prompt_ids[n][sampled.gen.prompt_mask[n]]
        )
    # the reward is the task's score of the whole (roll-in + sampled) completion
    rescored = t._score(out.rows, out.gen)
    assert torch.equal(rescored.reward, out.reward) and torch.equal(rescored.accuracy, out.accuracy)
    assert out.gen.texts == t.tokenizer.batch_decode(
        torch.where(out.gen.completion_mask, out.gen.completion_ids, t.engine.pad_id), skip_special_tokens=True
    )
    assert metrics["reset_dropped_tokens"] == float(sampled.gen.completion_mask.sum())


def test_roll_ins_may_start_at_the_prompt_with_min_rollin_zero(tmp_path):
    torch.manual_seed(6)
    t = trainer(tmp_path)
    sampled = sample(t, rows=4, n=4)
    out, _ = dataset_reset(t.context, sampled, max_len=6, state={}, seed=2, min_rollin=0)
    h = out.extras["prefix_len"]
    assert (h == 0).any() and (h >= 1).any()
    for n in range(16):
        ref = reference_ids(t.tokenizer, sampled.rows[int(out.gen.prompt_index[n])]["answer"])
        assert int(h[n]) <= len(ref) - 1 and out.gen.completion_ids[n, : int(h[n])].tolist() == ref[: int(h[n])]
    with pytest.raises(ValueError, match="min_rollin"):
        dataset_reset(t.context, sampled, max_len=6, state={}, min_rollin=-1)


def test_groups_are_kept_when_reset_prob_is_zero_and_partly_replaced_in_between(tmp_path):
    torch.manual_seed(1)
    t = trainer(tmp_path)
    sampled = sample(t, rows=6, n=2)
    out, metrics = dataset_reset(t.context, sampled, max_len=6, state={}, reset_prob=0.0, seed=0)
    assert metrics == {"reset_frac": 0.0} and out.size == 12
    assert torch.equal(out.gen.completion_ids, sampled.gen.completion_ids) and torch.equal(out.reward, sampled.reward)
    assert out.extras["prefix_len"].tolist() == [0] * 12 and out.extras["off_policy"].tolist() == [False] * 12

    out, metrics = dataset_reset(t.context, sampled, max_len=6, state={}, reset_prob=0.5, seed=3)
    reset = (out.extras["prefix_len"] > 0).view(6, 2)  # arith references have >= 2 tokens: every reset has h >= 1
    assert (reset[:, 0] == reset[:, 1]).all() and 0 < int(reset[:, 0].sum()) < 6  # whole groups, some of them
    assert metrics["reset_frac"] == pytest.approx(reset[:, 0].float().mean().item())
    kept = (~reset).flatten().nonzero().flatten()
    width = sampled.gen.completion_ids.shape[1]
    assert torch.equal(out.gen.completion_ids[kept, :width], sampled.gen.completion_ids[kept])
    assert torch.equal(out.reward[kept], sampled.reward[kept])


def test_the_roll_in_spends_the_generation_budget(tmp_path):
    torch.manual_seed(2)
    t = trainer(tmp_path)
    sampled = sample(t, rows=4, n=3)
    out, _ = dataset_reset(t.context, sampled, max_len=2, state={}, seed=0)
    lengths = out.gen.completion_mask.sum(-1)
    assert (lengths <= 2).all() and (out.extras["prefix_len"] == 1).all()  # reference cut to 2 tokens: h = 1
    assert out.gen.completion_ids.shape[1] <= 2
    assert torch.equal(t._score(out.rows, out.gen).reward, out.reward)  # cut completions were scored again
    ended = (out.gen.completion_ids == t.tokenizer.eos_token_id) & out.gen.completion_mask
    assert torch.equal(out.gen.truncated, ~ended.any(-1))


def test_roll_ins_are_reproducible_from_the_state(tmp_path):
    t = trainer(tmp_path)
    torch.manual_seed(3)
    sampled = sample(t, rows=4, n=4)

    def run(state, torch_seed):
        torch.manual_seed(torch_seed)
        out, _ = dataset_reset(t.context, sampled, max_len=6, state=state)
        return out

    first_state = {}
    a = run(first_state, 5)  # seed None: the generator is seeded from torch's (run-seeded) global generator
    assert isinstance(first_state["rng"], torch.Tensor)
    saved = copy.deepcopy(first_state)  # what a checkpoint holds after this step
    b = run(first_state, 6)
    resumed = run(copy.deepcopy(saved), 6)  # a resumed run: same state, same global random state
    assert torch.equal(b.extras["prefix_len"], resumed.extras["prefix_len"])
    assert torch.equal(b.gen.completion_ids, resumed.gen.completion_ids)
    assert not torch.equal(a.extras["prefix_len"], b.extras["prefix_len"])  # the state advanced (16 draws)
    again = run({}, 5)  # a fresh run with the same seed repeats the first step
    assert torch.equal(a.extras["prefix_len"], again.extras["prefix_len"])
    assert torch.equal(a.gen.completion_ids, again.gen.completion_ids)


def test_reset_explains_bad_input(tmp_path):
    torch.manual_seed(4)
    t = trainer(tmp_path)
    sampled = sample(t, rows=1, n=2)
    with pytest.raises(ValueError, match="'chosen' column"):
        dataset_reset(t.context, sampled, max_len=6, state={}, answer_key="chosen")
    with_ids, _ = ROLLOUT_STRATEGIES["token_ids"](t.context, sampled)
    with pytest.raises(ValueError, match="before"):
        dataset_reset(t.context, with_ids, max_len=6, state={})
    with pytest.raises(ValueError, match="reset_prob"):
        dataset_reset(t.context, sampled, max_len=6, state={}, reset_prob=1.5)
    with pytest.raises(ValueError, match="max_len"):
        dataset_reset(t.context, sampled, max_len=0, state={})
    # unequal groups: a group of one completion
    one = sampled.take(torch.tensor([0]))
    out, _ = dataset_reset(t.context, one, max_len=6, state={}, seed=0)
    assert out.size == 1 and int(out.extras["prefix_len"][0]) >= 1


def test_drpo_batch_masks_the_roll_in_from_the_policy_only_and_resumes_identically(tmp_path):
    torch.manual_seed(5)
    t = trainer(tmp_path, "batch")
    batch = t.rollout_batch()
    h = batch.rollout.extras["prefix_len"]
    assert (h >= 1).all() and batch.metrics["reset_frac"] == 1.0
    t_idx = torch.arange(batch.rollout.seq_len)
    assert not (batch.rollout.mask & (t_idx[None, :] < h[:, None])).any()  # policy: roll-in tokens left out
    assert torch.equal(batch.value_mask, batch.gen.completion_mask[batch.rollout.extras["row"]])  # critic: all
    assert batch.metrics["kept_token_frac"] < 1.0

    full = trainer(tmp_path, "full", seed=7)
    full.run()
    half = trainer(tmp_path, "half", seed=7, steps=1, save_every=1)
    half.run()
    Trainer(resolve(None, {**TINY, "output_dir": str(tmp_path), "name": "half", "seed": 7}), resume=True).run()

    def records(name):
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    a, b = records("full")[-1], records("half")[-1]
    assert a["step"] == b["step"] == 2 and a["rollin_len"] >= 1.0 and a["reset_frac"] == 1.0
    for key in ("rollin_len", "reset_reward", "reward", "loss", "response_length"):
        assert a[key] == b[key], key
