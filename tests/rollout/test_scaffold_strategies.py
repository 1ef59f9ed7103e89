"""The ``scaf_grpo`` and ``difficulty_augment`` rollout strategies on a random tiny model: which rows change, what they
are sampled under, the extras and metrics, one extra generation per step, and both presets inside the trainer."""

import dataclasses
import json

import pytest
import torch

from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.rollout.scaffold import level_prompts
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

TINY = dict(
    model="random-tiny",
    task="scaffold_probe",
    steps=2,
    num_prompts=3,
    num_generations=4,
    max_new_tokens=4,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)


def probe_reward(prompts, completions, answer, easy=None, **_):
    """A verifier a random model is steered by: 1 on rows marked easy, and under a hint that reveals the whole
    answer (``"(68) 23+45="``); 0 otherwise, whatever the completion. So every unmarked group is true-hard and level
    2 of a two-digit answer's fallback hints is the minimal correct level."""
    easy = easy or [False] * len(prompts)
    return [1.0 if e or p.startswith(f"({a}) ") else 0.0 for p, a, e in zip(prompts, answer, easy, strict=True)]


def probe_task(**_):
    base = arith_task()
    return Task("scaffold_probe", base.train[:200], base.eval[:20], [probe_reward])


if "scaffold_probe" not in TASKS:
    TASKS.register("scaffold_probe")(probe_task)


def trainer(tmp_path, name="run", **overrides):
    return Trainer(resolve(None, {**TINY, "output_dir": str(tmp_path), "name": name, **overrides}))


def counting(ctx):
    calls = []

    def sample_fn(rows, n, **kw):
        calls.append((list(rows), n))
        return ctx.sample_fn(rows, n, **kw)

    return dataclasses.replace(ctx, sample_fn=sample_fn), calls


def decoded_prompts(t, gen):
    return [
        t.tokenizer.decode(ids[m], skip_special_tokens=True)
        for ids, m in zip(gen.prompt_ids, gen.prompt_mask, strict=True)
    ]


ROWS = [
    {"prompt": "23+45=", "answer": "68"},
    {"prompt": "7+2=", "answer": "9", "easy": True},  # every completion correct: not hard
    {"prompt": "50-8=", "answer": "42"},
]


def rows_with_easy(rows):
    return [{**r, "easy": bool(r.get("easy", False))} for r in rows]  # every row has the column (TRL columns)


# ---------------------------------------------------------------------------------------------------- scaf_grpo
def test_scaf_grpo_rescues_each_hard_group_with_its_minimal_correct_level_in_place(tmp_path):
    torch.manual_seed(0)
    t = trainer(tmp_path)
    rows = rows_with_easy(ROWS)
    sampled = t._sample(rows, 4)
    ctx, calls = counting(t.context)
    out, metrics = ROLLOUT_STRATEGIES["scaf_grpo"](ctx, sampled, step=0, warmup_steps=0)
    # one generation: hard groups 0 and 2, fallback levels "(6) ", "(68) " and "(4) ", "(42) ", one completion each
    assert len(calls) == 1 and calls[0][1] == 1
    assert [r["prompt"] for r in calls[0][0]] == ["(6) 23+45=", "(68) 23+45=", "(4) 50-8=", "(42) 50-8="]
    assert out.size == sampled.size == 12 and out.group.tolist() == sampled.group.tolist()
    changed = [i for i in range(12) if not torch.equal(out.gen.completion_ids[i], sampled.gen.completion_ids[i])]
    assert set(changed) <= {0, 8}  # the first completion of each hard group (a resample may repeat a completion)
    for g, first in ((0, 0), (2, 8)):
        members = (out.group == g).nonzero().flatten()
        assert out.accuracy[members].tolist() == [1.0, 0.0, 0.0, 0.0]  # spec: exactly one correct sample
        assert out.gen.prompt_index[first] == g
    prompts = decoded_prompts(t, out.gen)
    assert prompts[0] == "(68) 23+45=" and prompts[8] == "(42) 50-8="  # trained under its hinted prompt
    assert prompts[1] == "23+45=" and prompts[4] == "7+2="
    assert not out.extras["off_policy"].any()  # sampled under the hinted prompt it is trained under: on-policy
    assert out.extras["hint_level"].tolist() == [2 if i in (0, 8) else 0 for i in range(12)]
    keep = [i for i in range(12) if i not in (0, 8)]  # untouched rows: the same reward, tokens and prompt
    assert torch.equal(out.reward[keep], sampled.reward[keep])
    assert out.gen.texts[4:8] == sampled.gen.texts[4:8]
    assert metrics["scaf/hard_frac"] == pytest.approx(2 / 3)
    assert metrics["scaf/rescued_frac"] == 1.0 and metrics["scaf/mean_level"] == 2.0
    assert metrics["scaf/hint_samples"] == 4 and metrics["scaf/hint_accuracy"] == 0.5


def test_scaf_grpo_waits_for_the_warmup_and_leaves_unrescued_groups_alone(tmp_path):
    torch.manual_seed(1)
    t = trainer(tmp_path)
    sampled = t._sample(rows_with_easy(ROWS), 4)
    ctx, calls = counting(t.context)
    out, metrics = ROLLOUT_STRATEGIES["scaf_grpo"](ctx, sampled, step=49)  # paper warm-up 50
    assert not calls and metrics["scaf/active"] == 0.0 and metrics["scaf/hard_frac"] == pytest.approx(2 / 3)
    assert torch.equal(out.reward, sampled.reward) and not out.extras["off_policy"].any()
    # hints that never help (one level, "(6) "): the hard groups stay as they are
    rows = [{**r, "hints": [f"({r['answer'][0]}) {r['prompt']}"]} for r in rows_with_easy(ROWS)]
    sampled = t._sample(rows, 4)
    out, metrics = ROLLOUT_STRATEGIES["scaf_grpo"](ctx, sampled, step=50)
    assert len(calls) == 1 and [r["prompt"] for r in calls[0][0]] == ["(6) 23+45=", "(4) 50-8="]
    assert metrics["scaf/active"] == 1.0 and metrics["scaf/rescued_frac"] == 0.0
    assert out.gen.texts == sampled.gen.texts and torch.equal(out.reward, sampled.reward)


def test_scaf_grpo_reads_the_hints_column_and_can_train_under_the_original_prompt(tmp_path):
    torch.manual_seed(2)
    t = trainer(tmp_path)
    rows = [
        {"prompt": "23+45=", "answer": "68", "easy": False, "hints": ["(3+5=8) 23+45=", "(68) 23+45=", "(68) 23+45="]},
    ]
    sampled = t._sample(rows, 3)
    ctx, calls = counting(t.context)
    out, metrics = ROLLOUT_STRATEGIES["scaf_grpo"](ctx, sampled, step=0, warmup_steps=0, train_prompt="original")
    assert [r["prompt"] for r in calls[0][0]] == rows[0]["hints"]
    assert metrics["scaf/mean_level"] == 2.0  # levels 2 and 3 are correct: the minimal one
    assert out.extras["off_policy"].tolist() == [True, False, False]
    assert decoded_prompts(t, out.gen) == ["23+45="] * 3  # the code's replace_hint_prompt=True
    with pytest.raises(ValueError, match="train_prompt"):
        ROLLOUT_STRATEGIES["scaf_grpo"](ctx, sampled, step=0, train_prompt="plain")


def test_scaf_grpo_refuses_rows_without_hints_or_answers_and_unfillable_extras(tmp_path):
    t = trainer(tmp_path)
    sampled = t._sample(rows_with_easy(ROWS[:1]), 2)
    bare = dataclasses.replace(sampled, rows=[{"prompt": "23+45=", "easy": False}])
    with pytest.raises(ValueError, match="answer"):
        ROLLOUT_STRATEGIES["scaf_grpo"](t.context, bare, step=0, warmup_steps=0)
    tagged = dataclasses.replace(sampled, extras={"token_ids": [[1], [2]]})
    with pytest.raises(ValueError, match="before the strategies"):
        ROLLOUT_STRATEGIES["scaf_grpo"](t.context, tagged, step=0)
    assert level_prompts({"prompt": "1+1=", "answer": "2"}) == ["(2) 1+1="]
    with pytest.raises(ValueError, match="list of hinted prompts"):
        level_prompts({"prompt": "1+1=", "hints": "(2) 1+1="})


def test_scaf_grpo_preset_trains_with_rescued_rows_from_step_zero(tmp_path):
    torch.manual_seed(3)
    t = trainer(tmp_path, "scaf", algo="scaf_grpo", rollout=[{"name": "scaf_grpo", "params": {"warmup_steps": 0}}])
    batch = t.rollout_batch()
    assert batch.metrics["scaf/rescued_frac"] == 1.0 and batch.metrics["scaf/mean_level"] == 2.0
    off = batch.rollout.extras["hint_level"] > 0  # the rescued rows
    assert int(off.sum()) == int(batch.metrics["scaf/hard_frac"] * t.config.num_prompts)
    assert (batch.advantages[off].sum(-1) > 0).all() and (batch.advantages[~off].sum(-1) <= 0).all()
    assert torch.isfinite(torch.tensor(t.update(batch)["loss"]))
    t.run()
    logged = [json.loads(x) for x in (tmp_path / "scaf" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["scaf/rescued_frac"] == 1.0 for r in logged[1:])


# ------------------------------------------------------------------------------------------ difficulty_augment
def test_difficulty_augment_hints_hard_groups_and_perturbs_easy_ones_by_difficulty(tmp_path):
    torch.manual_seed(4)
    t = trainer(tmp_path)
    rows = rows_with_easy(ROWS)
    sampled = t._sample(rows, 4)
    ctx, calls = counting(t.context)
    state = {"buffer": [0.5] * 10}
    out, metrics = ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state=state, step=0)
    # reference 0.5: groups 0 and 2 (mean 0) have ΔR = 0.5 → level ceil(0.5·2) = 1 of their 2 answer-prefix hints;
    # group 1 (mean 1) has ΔR = −0.5 → ceil(0.5·4) = 2 spaces
    assert len(calls) == 1 and calls[0][1] == [4, 4, 4]
    sent = [r["prompt"] for r in calls[0][0]]
    assert sent[0] == "(6) 23+45=" and sent[2] == "(4) 50-8="
    assert sent[1].count(" ") == 2 and sent[1].replace(" ", "") == "7+2="
    assert decoded_prompts(t, out.gen) == [sent[0]] * 4 + [sent[1]] * 4 + [sent[2]] * 4
    assert out.group.tolist() == sampled.group.tolist() and out.gen.prompt_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert not out.extras["off_policy"].any()  # trained under the prompt they were sampled with
    assert out.extras["hint_level"].tolist() == [1] * 4 + [0] * 4 + [1] * 4
    assert out.extras["noise"].tolist() == [0] * 4 + [2] * 4 + [0] * 4
    assert out.reward.tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 4  # the probe: easy rows right, "(6) " hints no help
    assert state["buffer"] == ([0.5] * 10 + sampled.reward.tolist())[-100:]
    assert metrics["aug/reference"] == 0.5 and metrics["aug/hard_frac"] == pytest.approx(2 / 3)
    assert metrics["aug/easy_frac"] == pytest.approx(1 / 3) and metrics["aug/mean_noise"] == 2.0
    assert metrics["aug/mean_hint_level"] == 1.0 and metrics["aug/reward_before"] == pytest.approx(1 / 3)


def test_difficulty_augment_scales_the_hint_with_the_gap_and_respects_margin_and_modes(tmp_path):
    torch.manual_seed(5)
    t = trainer(tmp_path)
    sampled = t._sample(rows_with_easy([ROWS[0]]), 4)  # mean 0
    ctx, calls = counting(t.context)
    # reference 1 → ΔR = 1 → the last level (the whole answer): the probe then scores every completion 1
    out, metrics = ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state={"buffer": [1.0]}, step=0)
    assert [r["prompt"] for r in calls[-1][0]] == ["(68) 23+45="] and out.reward.tolist() == [1.0] * 4
    assert metrics["aug/zero_var_before"] == 1.0 and metrics["aug/reward_after"] == 1.0
    n = len(calls)
    for kwargs in ({"margin": 0.6}, {"hard": "none"}):  # |ΔR| = 0.5 within the margin / hard groups left alone
        out, metrics = ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state={"buffer": [0.5]}, step=0, **kwargs)
        assert out.gen.texts == sampled.gen.texts and metrics["aug/hard_frac"] == 0.0
    assert len(calls) == n
    # first step: no buffer yet → the batch mean is the reference; a single group then has ΔR = 0: untouched
    state: dict = {}
    out, _ = ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state=state, step=0)
    assert len(calls) == n and len(state["buffer"]) == 4
    for bad, match in (({"window": 0}, "window"), ({"scale": 0.0}, "scale"), ({"easy": "blur"}, "easy")):
        with pytest.raises(ValueError, match=match):
            ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state={}, step=0, **bad)


def test_difficulty_augment_noise_is_deterministic_per_step(tmp_path):
    torch.manual_seed(6)
    t = trainer(tmp_path)
    sampled = t._sample(rows_with_easy([ROWS[1]]), 2)  # reward 1 everywhere
    sent = []
    for step in (3, 3, 4):
        ctx, calls = counting(t.context)
        ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state={"buffer": [0.0]}, step=step, max_noise=6)
        sent.append(calls[0][0][0]["prompt"])
    assert sent[0] == sent[1] and sent[0].count(" ") == 6 and sent[0].replace(" ", "") == "7+2="


def test_reg_grpo_aug_preset_runs_and_keeps_its_buffer_in_the_part_state(tmp_path):
    torch.manual_seed(7)
    t = trainer(tmp_path, "aug", algo="reg_grpo_aug", task="arith", steps=2)
    t.run()
    buffer = t.part_state["rollout.0.difficulty_augment"]["buffer"]
    assert len(buffer) == 2 * 3 * 4  # two steps of P·G rewards (window 100)
    logged = [json.loads(x) for x in (tmp_path / "aug" / "metrics.jsonl").read_text().splitlines()]
    assert all("aug/hard_frac" in r for r in logged[1:])
