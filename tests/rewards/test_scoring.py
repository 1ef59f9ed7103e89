"""score_completions: weighted sums by hand, None handling, errors raised or confined to their samples."""

import functools
import math

import pytest
import torch

from grpolab.rewards.scoring import RewardError, score_completions, unique_names


def const(values, name="const"):
    """A reward function returning fixed values (one per completion), named ``name``."""

    def fn(prompts, completions, **columns):
        return list(values)

    fn.__name__ = name
    return fn


def length(prompts, completions, **columns):
    return [float(len(c)) for c in completions]


def is_answer(prompts, completions, answer, **columns):
    return [1.0 if c == a else 0.0 for c, a in zip(completions, answer, strict=True)]


def fails_on_y(prompts, completions, **columns):
    if any("y" in c for c in completions):
        raise ZeroDivisionError("boom on y")
    return [1.0] * len(completions)


def nan(t):
    return t != t


def test_weighted_sum_by_hand():
    # length: [1, 2, 3]; is_answer vs ["a", "xx", "b"]: [1, 1, 0]; weights [0.5, 2]
    # reward = 0.5 * length + 2 * is_answer = [0.5 + 2, 1 + 2, 1.5 + 0] = [2.5, 3.0, 1.5]
    s = score_completions([length, is_answer], [0.5, 2.0], ["p"] * 3, ["a", "xx", "yyy"], {"answer": ["a", "xx", "b"]})
    assert s.reward.dtype == torch.float32 and s.reward.shape == (3,)
    assert s.reward.tolist() == [2.5, 3.0, 1.5]
    assert s.rewards.tolist() == [[1.0, 1.0], [2.0, 1.0], [3.0, 0.0]]
    assert s.names == ["length", "is_answer"]
    assert s.valid.tolist() == [True, True, True]
    # means by hand: length (1+2+3)/3 = 2, std (ddof 1) = 1; is_answer mean 2/3, std sqrt(1/3)
    assert s.metrics["reward/length"] == pytest.approx(2.0)
    assert s.metrics["reward/length_std"] == pytest.approx(1.0)
    assert s.metrics["reward/is_answer"] == pytest.approx(2 / 3)
    assert s.metrics["reward/is_answer_std"] == pytest.approx(math.sqrt(1 / 3))
    assert s.metrics["reward_errors"] == 0 and s.metrics["reward_none"] == 0


def test_none_is_left_out_of_the_sum_and_all_none_is_invalid():
    f = const([1.0, None, None], "f")
    g = const([2.0, 4.0, None], "g")
    s = score_completions([f, g], [1.0, 0.5], ["p"] * 3, ["a", "b", "c"], {})
    # sample 0: 1 + 0.5*2 = 2; sample 1: f None -> 0.5*4 = 2; sample 2: all None -> invalid, 0
    assert s.reward.tolist() == [2.0, 2.0, 0.0]
    assert s.valid.tolist() == [True, True, False]
    assert s.rewards[0].tolist() == [1.0, 2.0]
    assert nan(s.rewards[1, 0]) and s.rewards[1, 1] == 4.0 and bool(nan(s.rewards[2]).all())
    assert s.metrics["reward_none"] == 1 and s.metrics["reward_errors"] == 0
    assert s.metrics["reward/f"] == 1.0 and math.isnan(s.metrics["reward/f_std"])  # one value: no std
    assert s.metrics["reward/g"] == 3.0  # (2 + 4) / 2 over valid samples with a value
    assert s.finite_rewards().tolist() == [[1.0, 2.0], [0.0, 4.0], [0.0, 0.0]]


def test_weights_default_and_mismatch():
    s = score_completions([const([1.0, 2.0]), const([3.0, 4.0])], None, ["p", "p"], ["a", "b"], {})
    assert s.reward.tolist() == [4.0, 6.0]
    with pytest.raises(ValueError, match="1 reward weights for 2 reward functions"):
        score_completions([length, length], [1.0], ["p"], ["a"], {})
    with pytest.raises(ValueError, match="finite"):
        score_completions([length], [float("nan")], ["p"], ["a"], {})


def test_bad_arguments():
    with pytest.raises(ValueError, match="on_error"):
        score_completions([length], [1.0], ["p"], ["a"], {}, on_error="ignore")
    with pytest.raises(ValueError, match="2 prompts for 1 completions"):
        score_completions([length], [1.0], ["p", "p"], ["a"], {})
    with pytest.raises(ValueError, match="column 'answer' has 2 values for 1"):
        score_completions([length], [1.0], ["p"], ["a"], {"answer": ["a", "b"]})


def test_columns_reach_the_functions_and_prompt_column_is_dropped():
    seen = {}

    def spy(prompts, completions, **columns):
        seen.update(columns, prompts=prompts)
        return [0.0] * len(completions)

    score_completions([spy], [1.0], ["p1", "p2"], ["a", "b"], {"prompt": ["p1", "p2"], "answer": [1, 2]})
    assert seen == {"answer": [1, 2], "prompts": ["p1", "p2"]}


def test_names_are_made_unique():
    assert unique_names(["a", "a", "b", "a"]) == ["a", "a_2", "b", "a_3"]
    assert unique_names(["a", "a_2", "a"]) == ["a", "a_2", "a_3"]  # a suffix never collides with a given name
    partial = functools.partial(is_answer)
    s = score_completions([length, length, partial], None, ["p"], ["a"], {"answer": ["a"]})
    assert s.names == ["length", "length_2", "is_answer"]


def test_raise_names_function_index_prompt_and_chains():
    long_prompt = "Q" * 1000
    with pytest.raises(RewardError) as info:
        score_completions([length, fails_on_y], [1.0, 1.0], ["p0", long_prompt, "p2"], ["x", "y", "yy"], {})
    message = str(info.value)
    assert "'fails_on_y'" in message and "sample 1 of 3" in message and "boom on y" in message
    assert "QQQQ" in message and "[1000 chars]" in message and "Q" * 1000 not in message  # truncated
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize(
    ("returned", "index", "match"),
    [
        ([1.0, float("nan"), 1.0], 1, "not finite"),
        ([1.0, 1.0, float("inf")], 2, "not finite"),
        ([1.0, 1e39, 1.0], 1, "overflows float32"),
        (["1.0", 1.0, 1.0], 0, "not a number"),
        ([1.0, [1.0], 1.0], 1, "not a number"),
    ],
)
def test_bad_values_are_errors(returned, index, match):
    with pytest.raises(RewardError, match=f"sample {index} of 3.*{match}"):
        score_completions([const(returned)], [1.0], ["p"] * 3, ["a", "b", "c"], {})
    s = score_completions([const(returned), length], [1.0, 1.0], ["p"] * 3, ["a", "b", "c"], {}, on_error="skip")
    expected_valid = [i != index for i in range(3)]
    assert s.valid.tolist() == expected_valid
    assert s.reward.tolist() == [2.0 if ok else 0.0 for ok in expected_valid]  # 1 + len 1, masked -> 0
    assert s.metrics["reward_errors"] == 1


def test_wrong_length_is_an_error():
    short = const([1.0, 1.0], "short")  # 2 values whatever the batch size: wrong for 3, and for 1
    with pytest.raises(RewardError, match=r"'short' failed on sample 0 of 3.*returned 2 values for 1"):
        score_completions([short], [1.0], ["p"] * 3, ["a", "b", "c"], {})
    s = score_completions([short, length], [1.0, 1.0], ["p"] * 3, ["a", "b", "c"], {}, on_error="skip")
    assert s.valid.tolist() == [False, False, False] and s.metrics["reward_errors"] == 3
    assert s.reward.tolist() == [0.0, 0.0, 0.0]


def test_not_a_list_is_an_error():
    with pytest.raises(RewardError, match="returned a float"):
        score_completions([lambda prompts, completions, **c: 1.0], [1.0], ["p"], ["a"], {})


def test_skip_masks_exactly_the_failing_samples():
    calls = []

    def fails_on_y_counted(prompts, completions, **columns):
        calls.append(len(completions))
        return fails_on_y(prompts, completions, **columns)

    completions = ["x", "y", "xx", "yy", "z"]
    s = score_completions([fails_on_y_counted, length], [1.0, 1.0], ["p"] * 5, completions, {}, on_error="skip")
    assert s.valid.tolist() == [True, False, True, False, True]
    # valid samples: 1 + len; failing ones: 0
    assert s.reward.tolist() == [2.0, 0.0, 3.0, 0.0, 2.0]
    assert s.metrics["reward_errors"] == 2 and s.metrics["reward_none"] == 0
    assert nan(s.rewards[1, 0]) and s.rewards[1, 1] == 1.0  # the other function's value is kept
    assert calls == [5, 1, 1, 1, 1, 1]  # one batch call, then once per sample
    # metrics over valid samples only: length over x, xx, z = (1 + 2 + 1) / 3
    assert s.metrics["reward/length"] == pytest.approx(4 / 3)


def test_skip_with_a_batch_only_failure_masks_the_batch():
    def batch_only(prompts, completions, **columns):
        if len(completions) > 1:
            raise RuntimeError("cannot batch")
        return [1.0]

    with pytest.raises(RewardError, match=r"whole batch of 2.*cannot batch"):
        score_completions([batch_only], [1.0], ["p", "p"], ["a", "b"], {})
    s = score_completions([batch_only, length], [1.0, 1.0], ["p", "p"], ["a", "b"], {}, on_error="skip")
    assert s.valid.tolist() == [False, False] and s.metrics["reward_errors"] == 2


def test_skip_logs_a_warning(caplog):
    with caplog.at_level("WARNING", logger="grpolab.rewards.scoring"):
        score_completions([fails_on_y], [1.0], ["p", "p"], ["x", "y"], {}, on_error="skip")
    assert "'fails_on_y' failed on 1 of 2 samples" in caplog.text and "boom on y" in caplog.text


def test_verifiers_score_chat_completions():
    from grpolab.rewards.verifiers import VERIFIERS

    fns = [VERIFIERS["numeric"](), VERIFIERS["exact"]()]
    completions = [[{"role": "assistant", "content": "12"}], [{"role": "assistant", "content": "so 12"}]]
    prompts = [[{"role": "user", "content": "3*4?"}]] * 2
    s = score_completions(fns, [1.0, 0.5], prompts, completions, {"answer": ["12", "12"]})
    assert s.names == ["numeric", "exact"]
    assert s.reward.tolist() == [1.5, 1.0]  # 1 + 0.5*1, 1 + 0.5*0
