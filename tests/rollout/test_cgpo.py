"""The ``cgpo_baseline`` rollout strategy on a random tiny model: CGPO's reference completion ȳ, scored and appended."""

import pytest
import torch

from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

TINY = dict(model="random-tiny", task="arith", num_prompts=2, num_generations=3, max_new_tokens=4, progress=False)


def trainer(tmp_path):
    return Trainer(resolve(None, {**TINY, "algo": "cgpo", "output_dir": str(tmp_path), "name": "run"}))


def test_reference_completions_are_scored_and_appended(tmp_path):
    t = trainer(tmp_path)
    rows = [t.task.train[i] for i in range(3)]
    sampled = t._sample(rows, 2)
    out, metrics = ROLLOUT_STRATEGIES["cgpo_baseline"](t.context, sampled, max_len=4)
    # arith's exact reward of its own reference answer is 1, for every completion of every prompt
    assert out.extras["baseline_reward"].tolist() == [1.0] * 9
    assert out.extras["baseline_rewards"].shape == (9, 1) and metrics["cgpo/baseline_reward_mean"] == 1.0
    # one ȳ per prompt appended to its group, off-policy, marked as a reference row
    assert out.size == 9 and out.group.tolist() == [0, 0, 1, 1, 2, 2, 0, 1, 2]
    assert out.extras["baseline_row"].tolist() == [False] * 6 + [True] * 3
    assert out.extras["off_policy"].tolist() == [False] * 6 + [True] * 3
    assert out.gen.texts[6:] == [r["answer"] for r in rows] and out.reward[6:].tolist() == [1.0] * 3
    eos = t.tokenizer.eos_token_id
    ids = t.tokenizer(rows[0]["answer"], add_special_tokens=False)["input_ids"] + [eos]
    assert out.gen.completion_ids[6, : len(ids)].tolist() == ids
    assert torch.equal(out.gen.prompt_ids[6], sampled.gen.prompt_ids[0])  # ȳ answers its own prompt


def test_scoring_only_and_a_missing_column(tmp_path):
    t = trainer(tmp_path)
    sampled = t._sample([t.task.train[0]], 2)
    out, _ = ROLLOUT_STRATEGIES["cgpo_baseline"](t.context, sampled, max_len=4, append=False)
    assert out.size == 2 and out.extras["baseline_row"].tolist() == [False, False]
    with pytest.raises(ValueError, match="answer_key"):
        ROLLOUT_STRATEGIES["cgpo_baseline"](t.context, sampled, max_len=4, answer_key="solution")
