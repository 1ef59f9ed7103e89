"""Helpers strategies share (``grpolab.rollout.strategies``): the check that an earlier strategy's extras can be
filled, the fixed extras on every row, and ``RolloutContext.generate`` (completions without a scoring pass)."""

import dataclasses

import pytest
import torch

from grpolab.rollout.hf import Generation
from grpolab.rollout.strategies import DEFAULT_FILL, Sampled, check_fillable_extras, with_default_extras
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

TINY = {"model": "random-tiny", "task": "arith", "num_prompts": 2, "num_generations": 2, "max_new_tokens": 3,
        "progress": False, "name": "t", "eval_every": 0}  # fmt: skip


def trainer(tmp_path):
    return Trainer(resolve(None, {**TINY, "output_dir": str(tmp_path)}))


def batch(extras=None, n=3):
    gen = Generation.from_token_lists(
        [[1]] * n,
        prompt_ids=torch.ones(n, 1, dtype=torch.long),
        prompt_mask=torch.ones(n, 1, dtype=torch.bool),
        prompt_index=torch.zeros(n, dtype=torch.long),
        pad_id=0,
        truncated=[False] * n,
        texts=["x"] * n,
    )
    return Sampled(rows=[{"prompt": "p"}], gen=gen, reward=torch.zeros(n), rewards=torch.zeros(n, 1),
                   reward_names=("r",), valid=torch.ones(n, dtype=torch.bool), accuracy=torch.zeros(n),
                   group=torch.zeros(n, dtype=torch.long), extras=extras or {})  # fmt: skip


def test_check_fillable_extras_allows_the_fixed_and_the_strategys_own_extras_only():
    fixed = {"off_policy": torch.zeros(3, dtype=torch.bool), "prefix_len": torch.zeros(3, dtype=torch.long)}
    check_fillable_extras(batch(), "s")
    check_fillable_extras(batch(fixed), "s")
    check_fillable_extras(batch({**fixed, "hint_level": torch.zeros(3)}), "s", extra_fill=("hint_level", "noise"))
    message = (
        r"^anchors: the batch already has per-completion extras \['hint_level', 'token_ids'\] that its new completions "
        r"cannot fill; put 'anchors' before the strategies that write them in the preset's rollout$"
    )
    with pytest.raises(ValueError, match=message):
        check_fillable_extras(batch({**fixed, "token_ids": [[1]] * 3, "hint_level": torch.zeros(3)}), "anchors")
    with pytest.raises(ValueError, match=r"\['token_ids'\]"):
        check_fillable_extras(batch({"token_ids": [[1]] * 3}), "s", extra_fill=("hint_level",))


def test_with_default_extras_adds_only_the_missing_ones_with_their_dtype():
    written = torch.tensor([True, False, True])
    out = with_default_extras(batch({"off_policy": written}), {"hint_level": 0})
    assert set(out.extras) == {*DEFAULT_FILL, "hint_level"}
    assert out.extras["off_policy"] is written  # present: left as it is
    assert out.extras["prefix_len"].dtype == torch.long and out.extras["prefix_len"].tolist() == [0, 0, 0]
    assert out.extras["hint_level"].dtype == torch.long and out.extras["hint_level"].tolist() == [0, 0, 0]
    plain = with_default_extras(batch())
    assert plain.extras["off_policy"].dtype == torch.bool and plain.extras["off_policy"].tolist() == [False] * 3


def test_generate_skips_the_scoring_and_counts_the_tokens(tmp_path):
    t = trainer(tmp_path)
    scored = []
    score = t._score

    def recording(rows, gen):
        scored.append(gen.prompt_index.shape[0])
        return score(rows, gen)

    t._score = recording
    rows = [t.task.train[0], t.task.train[1]]
    before = t.generated_tokens
    torch.manual_seed(3)
    gen = t.context.generate(rows, 3, max_new_tokens=2)
    assert isinstance(gen, Generation) and gen.prompt_index.tolist() == [0, 0, 0, 1, 1, 1] and scored == []
    assert t.generated_tokens - before == gen.num_tokens > 0  # counted like any sample
    torch.manual_seed(3)
    same = t.context.sample(rows, 3, max_new_tokens=2)  # the same draw, then scored once
    assert torch.equal(same.gen.completion_ids, gen.completion_ids) and scored == [6]
    assert t.generated_tokens - before == 2 * gen.num_tokens


def test_generate_with_a_sample_fn_without_a_score_keyword_drops_its_scores(tmp_path):
    t = trainer(tmp_path)
    calls = []

    def plain(rows, n, *, greedy=False, temperature=None, max_new_tokens=None):  # a hand-built context's sample_fn
        calls.append((len(rows), n, greedy, max_new_tokens))
        return t._sample(rows, n, greedy=greedy, temperature=temperature, max_new_tokens=max_new_tokens)

    ctx = dataclasses.replace(t.context, sample_fn=plain)
    gen = ctx.generate([t.task.train[0]], 2, greedy=True, max_new_tokens=2)
    assert isinstance(gen, Generation) and gen.prompt_index.tolist() == [0, 0] and calls == [(1, 2, True, 2)]
