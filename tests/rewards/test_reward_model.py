"""Reward models as TRL-convention reward functions: loading, batching, heads, chat prompts, errors, the tiny trainer,
task reward specs, and the ensemble_wco preset trained through the real Trainer with two saved reward models."""

import json
import pickle

import pytest
import torch

from grpolab.data.arith import arith_task
from grpolab.data.files import file_task
from grpolab.rewards.reward_model import (
    RewardModel,
    accuracy,
    arith_reward_examples,
    reward_model_heads,
    reward_model_name,
    train_reward_model,
)
from grpolab.rewards.verifiers import VERIFIERS, build_rewards

PROMPTS = ["23+45=", "3-5=", "99+99=", "7-70=", "1+1="]
COMPLETIONS = ["68", "-2", "198", "-63 +1", ""]


@pytest.fixture(scope="module")
def rms(tmp_path_factory):
    """A trained one-head RM (300 steps: the learning test reads its losses), a barely trained second one, and a
    two-head (correct, brevity) one, saved in a temporary folder."""
    root = tmp_path_factory.mktemp("rms")
    texts, y = arith_reward_examples(4000, seed=0, labels=("correct",))
    main = train_reward_model(texts, y, label_names=["correct"], steps=300, seed=0, output_dir=root / "rm_a")
    texts2, y2 = arith_reward_examples(256, seed=1, labels=("correct",))
    train_reward_model(texts2, y2, label_names=["correct"], steps=10, seed=1, output_dir=root / "rm_b")
    texts3, y3 = arith_reward_examples(256, seed=2)
    train_reward_model(texts3, y3, label_names=["correct", "brevity"], steps=10, seed=2, output_dir=root / "multi")
    return {"root": root, "a": root / "rm_a", "b": root / "rm_b", "multi": root / "multi", "losses": main.losses}


def test_train_reward_model_lowers_its_loss_and_learns_correctness_above_chance(rms):
    losses = rms["losses"]
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.85 * first, (first, last)
    # held-out EVAL problems, right answer vs a random number of the results' range, about balanced
    texts, y = arith_reward_examples(400, seed=123, split="eval", near_miss=0.0, tail=0.0, labels=("correct",))
    labels = [row[0] for row in y]
    chance = max(sum(labels), len(labels) - sum(labels)) / len(labels)  # the majority class
    fn = RewardModel(rms["a"])
    prompts = [t[: t.index("=") + 1] for t in texts]
    completions = [t[t.index("=") + 1 :] for t in texts]
    acc = accuracy(fn(prompts, completions), labels)
    assert acc > chance + 0.08, (acc, chance)  # measured 0.67 to 0.73 over seeds 0..2 (chance ~0.5)


def test_loaded_model_is_a_named_reward_function(rms):
    fn = RewardModel(rms["a"])
    assert fn.__name__ == "rm_a" and fn.labels == ["correct"]
    out = fn(prompts=PROMPTS, completions=COMPLETIONS, answer=["68", "-2", "198", "-63", "2"])  # columns ignored
    assert len(out) == 5 and all(isinstance(v, float) for v in out)
    assert RewardModel(rms["a"], name="helpful-v2").__name__ == "rm_helpful_v2"
    assert reward_model_name("rm_0") == "rm_0" and reward_model_name("x y") == "rm_x_y"


def test_batch_scoring_equals_one_by_one(rms):
    fn = RewardModel(rms["a"], batch_size=2)  # 3 chunks of unequal lengths, right-padded
    batch = fn(PROMPTS, COMPLETIONS)
    alone = [RewardModel(rms["a"], batch_size=1)([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    assert batch == pytest.approx(alone, abs=1e-5)
    assert fn(PROMPTS[::-1], COMPLETIONS[::-1]) == pytest.approx(batch[::-1], abs=1e-5)  # order does not matter


def test_functions_of_one_folder_share_the_loaded_model(rms):
    assert RewardModel(rms["a"]).backbone is RewardModel(rms["a"], batch_size=4).backbone
    assert RewardModel(rms["a"]).backbone is not RewardModel(rms["b"]).backbone


def test_multi_head_model_gives_one_named_function_per_head(rms):
    heads = reward_model_heads(rms["multi"])
    assert [f.__name__ for f in heads] == ["rm_multi_correct", "rm_multi_brevity"]
    assert heads[0].backbone is heads[1].backbone  # one loaded model
    both = heads[0].scores(PROMPTS, COMPLETIONS)  # [B, 2]
    assert both.shape == (5, 2)
    assert heads[1](PROMPTS, COMPLETIONS) == pytest.approx(both[:, 1].tolist())
    assert RewardModel(rms["multi"], head="brevity")(PROMPTS, COMPLETIONS) == pytest.approx(both[:, 1].tolist())
    assert RewardModel(rms["multi"], head=0, name="m").__name__ == "rm_m"
    with pytest.raises(ValueError, match=r"has 2 heads \['correct', 'brevity'\]: pass head"):
        RewardModel(rms["multi"])
    with pytest.raises(ValueError, match="head 'safety' is not one of"):
        RewardModel(rms["multi"], head="safety")
    with pytest.raises(ValueError, match="head 2 is not one of"):
        RewardModel(rms["multi"], head=2)
    assert [f.__name__ for f in reward_model_heads(rms["a"])] == ["rm_a"]  # one head: no label suffix


def test_chat_prompts_go_through_the_chat_template(rms):
    fn = RewardModel(rms["a"])
    chat_prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    chat_completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    # the tiny RMs' template joins the contents after BOS: the same tokens as the string prompt + completion
    assert fn(chat_prompts, chat_completions) == pytest.approx(fn(PROMPTS, COMPLETIONS), abs=1e-6)
    assert fn(chat_prompts, COMPLETIONS) == pytest.approx(fn(PROMPTS, COMPLETIONS), abs=1e-6)


def test_chat_prompts_without_a_chat_template_fail_clearly(tmp_path):
    texts, y = arith_reward_examples(32, seed=0, labels=("correct",))
    trained = train_reward_model(texts, y, steps=1)
    trained.tokenizer.chat_template = None
    trained.model.save_pretrained(tmp_path / "plain")
    trained.tokenizer.save_pretrained(tmp_path / "plain")
    fn = RewardModel(tmp_path / "plain")
    assert len(fn(["1+1="], ["2"])) == 1
    with pytest.raises(ValueError, match="chat template"):
        fn([[{"role": "user", "content": "1+1="}]], ["2"])


def test_bad_paths_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist.*never downloads"):
        RewardModel(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"has no config\.json"):
        RewardModel(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        RewardModel("OpenAssistant/reward-model-deberta-v3-large")  # a hub id is not a local folder
    from grpolab.models import random_tiny_model

    model, tok = random_tiny_model()
    model.save_pretrained(tmp_path / "policy")
    tok.save_pretrained(tmp_path / "policy")
    with pytest.raises(ValueError, match="not a sequence classifier"):
        RewardModel(tmp_path / "policy")


def test_bad_options_fail_clearly(rms):
    with pytest.raises(ValueError, match="batch_size"):
        RewardModel(rms["a"], batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        RewardModel(rms["a"], dtype="fp8")
    with pytest.raises(ValueError, match="loss must be"):
        train_reward_model(["1+1=2"], [1.0], loss="hinge")
    with pytest.raises(ValueError, match="labels"):
        train_reward_model(["1+1=2", "1+1=3"], [1.0])


def test_pickle_reloads_the_model(rms):
    fn = RewardModel(rms["multi"], head="brevity", name="m")
    again = pickle.loads(pickle.dumps(fn))
    assert again.__name__ == "rm_m" and again(PROMPTS, COMPLETIONS) == pytest.approx(fn(PROMPTS, COMPLETIONS))


# ---------------------------------------------------------------- task reward specs


def test_verifier_factories_and_build_rewards(rms):
    fn = VERIFIERS["reward_model"](path=str(rms["a"]), name="judge")
    assert isinstance(fn, RewardModel) and fn.__name__ == "rm_judge"
    funcs = build_rewards(
        ["exact", {"reward_model": {"path": str(rms["a"])}}, {"reward_model_heads": {"path": str(rms["multi"])}}]
    )
    assert [f.__name__ for f in funcs] == ["exact", "rm_a", "rm_multi_correct", "rm_multi_brevity"]
    with pytest.raises(ValueError, match=r"has no option \['pth'\]; it takes .*'path'"):
        build_rewards([{"reward_model": {"pth": "x"}}])
    with pytest.raises(ValueError, match=r"needs the option\(s\) \['path'\]"):
        build_rewards(["reward_model"])
    with pytest.raises(ValueError, match="options must be a mapping"):
        build_rewards([{"numeric": [0.1]}])
    with pytest.raises(ValueError, match="each entry must be"):
        build_rewards([3])
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        build_rewards([{"nope": {}}])
    with pytest.raises(ValueError, match="no reward function"):
        build_rewards([])


def test_arith_and_file_tasks_take_reward_model_specs(rms, tmp_path):
    spec = ["exact", {"reward_model": {"path": str(rms["a"])}}, {"reward_model": {"path": str(rms["b"])}}]
    task = arith_task(reward=spec, reward_weights=[1.0, 0.5, 0.5])
    assert [f.__name__ for f in task.reward_funcs] == ["arith_exact_reward", "rm_a", "rm_b"]
    assert task.accuracy is task.reward_funcs[0]
    with pytest.raises(ValueError, match="takes no options"):
        arith_task(reward=[{"exact": {"strip": False}}])
    rows = [{"prompt": f"{a}+1=", "answer": str(a + 1)} for a in range(10)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = file_task(train=str(data), reward=["numeric", {"reward_model_heads": {"path": str(rms["multi"])}}])
    assert [f.__name__ for f in task.reward_funcs] == ["numeric", "rm_multi_correct", "rm_multi_brevity"]
    scores = task.reward_funcs[1](["1+1="], ["2"], answer=["2"])
    assert len(scores) == 1


# ---------------------------------------------------------------- through the real Trainer

TINY = dict(
    model="random-tiny",
    task="arith",
    steps=3,
    num_prompts=2,
    num_generations=4,
    max_new_tokens=4,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)


def test_ensemble_wco_trains_three_steps_with_two_saved_reward_models(rms, tmp_path):
    from grpolab.trainer.config import resolve
    from grpolab.trainer.loop import Trainer

    task_args = {
        "reward": ["exact", {"reward_model": {"path": str(rms["a"])}}, {"reward_model": {"path": str(rms["b"])}}]
    }
    config = resolve(
        None, {**TINY, "algo": "ensemble_wco", "task_args": task_args, "output_dir": str(tmp_path), "name": "wco"}
    )
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    logged = [json.loads(line) for line in (tmp_path / "wco" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    for r in logged[1:]:
        assert {"reward/arith_exact_reward", "reward/rm_a", "reward/rm_b"} <= set(r)
        assert r["ensemble/members"] == 2.0 and r["ensemble/spread"] >= 0.0
        # WCO: the mean of the per-completion minimum is at most each member's mean
        assert r["ensemble/reward"] <= min(r["reward/rm_a"], r["reward/rm_b"]) + 1e-5
        assert not r.get("skipped")
    assert "eval/reward/rm_a" in logged[-1] or any(k.startswith("eval/") for k in logged[-1])
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
