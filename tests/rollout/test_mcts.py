"""The ``mcts_prm`` rollout strategy (MedS³, arXiv 2501.12051) on tiny models: batched search calls, tree and label
structure, PRM scores on every step end, checkpoint/resume identity, and the preset's real-Trainer runs (the math is
tested in tests/core/test_prm.py)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from grpolab.core.prm import dual_sided_targets, step_ends
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.rollout.mcts import ProcessRewardModel, SearchTree, mcts_prm
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

MAX_LEN = 8
#: Frequent step delimiters for a random model (odd digits), so that searched completions have several steps.
DELIMS = ["1", "3", "5", "9"]
#: Small search settings; search_every 2 as the preset.
SEARCH = dict(
    delimiters=DELIMS, search_prompts=2, iterations=3, expand=3, rollouts=3, prm_updates=4, prm_batch=8, contrast=False
)


def has_seven(prompts, completions, **_):
    """A rule verifier a random model passes about a quarter of the time: the completion holds a 7."""
    return [1.0 if "7" in text else 0.0 for text in completions]


def always(prompts, completions, **_):
    return [1.0] * len(completions)


if "mcts_seven" not in TASKS:
    TASKS.register("mcts_seven")(lambda **_: Task("mcts_seven", arith_task().train, arith_task().eval, [has_seven]))
if "mcts_always" not in TASKS:
    TASKS.register("mcts_always")(lambda **_: Task("mcts_always", arith_task().train, arith_task().eval, [always]))

TINY = dict(
    model="random-tiny",
    task="mcts_seven",
    algo="mcts_prm",
    num_prompts=3,
    num_generations=4,
    max_new_tokens=MAX_LEN,
    eval_prompts=2,
    eval_every=0,
    save_every=0,
    progress=False,
)


def trainer(tmp_path, name="t", **overrides):
    return Trainer(resolve(None, {**TINY, "output_dir": str(tmp_path), "name": name, **overrides}))


def spy(ctx):
    calls = []
    real = ctx.continue_from

    def wrapped(sampled, index, cut, n, **kw):
        out = real(sampled, index, cut, n, **kw)
        calls.append((index.numel(), n, cut.clone(), out, kw))
        return out

    ctx.continue_from = wrapped
    return calls


def batch(t, seed=0):
    torch.manual_seed(seed)
    rows = [t.task.train[i] for i in range(3)]
    return t.context.sample(rows, 4)


def test_a_search_builds_trees_with_batched_calls_trains_the_prm_and_scores_every_step(tmp_path):
    t = trainer(tmp_path)
    sampled = batch(t)
    calls = spy(t.context)
    state: dict = {}
    out, m = mcts_prm(t.context, sampled, max_len=MAX_LEN, step=0, state=state, **SEARCH)
    assert ROLLOUT_STRATEGIES["mcts_prm"] is mcts_prm
    # at most two generation calls per iteration (expansion, simulation), each batched over all trees
    assert m["mcts/searched"] == 1.0 and len(calls) == m["mcts/generate_calls"] <= 2 * SEARCH["iterations"]
    assert len(calls) >= 2  # the random model's completions have several steps: the trees grow
    for rows, n, cut, cont, kw in calls:
        assert (n, rows <= 2) == (3, True) or (n == 2 and rows <= 2 * 3)  # expand 3 per leaf / rollouts - 1 per child
        assert kw["max_new_tokens"] == MAX_LEN - int(cut.min())  # the shallowest path bounds the call's budget
        for j in range(cont.size):  # each continuation keeps its source path as its prefix
            assert int(cont.extras["prefix_len"][j]) == int(cut[j // n])
    assert m["mcts/simulations"] == sum(c[3].size for c in calls)
    assert 0.0 <= m["mcts/verified_frac"] <= 1.0 and m["mcts/nodes"] >= 1 and m["mcts/depth"] >= 2
    # the batch is unchanged (append_verified 0) and every completion carries PRM scores on its step ends
    assert out.size == sampled.size and torch.equal(out.gen.completion_ids, sampled.gen.completion_ids)
    gen = out.gen
    delim_ids = [t.tokenizer(d, add_special_tokens=False)["input_ids"][0] for d in DELIMS]
    end = out.extras["step_end"]
    assert torch.equal(end, step_ends(gen.completion_ids, gen.completion_mask, delim_ids))
    r = out.extras["step_rewards"]
    assert r.shape == gen.completion_mask.shape and bool((r[~end] == 0).all())
    assert bool(((r[end] > 0) & (r[end] < 1)).all())
    assert m["prm/steps"] == pytest.approx(end.sum(-1).float().mean().item())
    # the PRM, its optimizer and the labels are in the checkpointed state
    assert {"prm", "opt", "buffer", "searches"} <= set(state) and state["searches"] == 1
    buf = state["buffer"]
    assert len({len(v) for v in buf.values()}) == 1 and len(buf["prompt"]) == m["prm/buffer"] > 0
    prompts = {tuple(gen.prompt_ids[i][gen.prompt_mask[i]].tolist()) for i in range(out.size)}
    for p, c, e, y in zip(buf["prompt"], buf["completion"], buf["ends"], buf["targets"], strict=True):
        assert tuple(p) in prompts and e == sorted(set(e)) and e[-1] == len(c) - 1 and len(y) == len(e)
        assert len(c) <= MAX_LEN  # deeper continuations were cut back to the generation limit
        assert all(0.0 <= v <= 1.0 for v in y)
    assert all(v.device.type == "cpu" for v in state["prm"].values())
    assert 0.0 <= m["prm/vote_sum_acc"] <= 1.0 and "prm/loss" in m


def test_steps_without_a_search_only_score_with_the_stored_prm(tmp_path):
    t = trainer(tmp_path)
    state: dict = {}
    mcts_prm(t.context, batch(t), max_len=MAX_LEN, step=0, state=state, **SEARCH)
    saved = copy.deepcopy(state)
    sampled = batch(t, seed=1)
    calls = spy(t.context)
    out, m = mcts_prm(t.context, sampled, max_len=MAX_LEN, step=1, state=state, **SEARCH)
    assert calls == [] and m["mcts/searched"] == 0.0 and state["searches"] == 1
    assert all(torch.equal(state["prm"][k], saved["prm"][k]) for k in saved["prm"])
    prm = ProcessRewardModel(
        t.tokenizer,
        kind="policy_head",
        policy=t.model,
        pad_id=t.engine.pad_id,
        device=t.device,
        state=saved,
        hidden=32,
        layers=1,
        heads=2,
        lr=1e-3,
        seed=0,
    )
    probs = prm.score(sampled.gen)
    end = out.extras["step_end"]
    torch.testing.assert_close(out.extras["step_rewards"], torch.where(end, probs, torch.zeros_like(probs)))
    # a fresh run (no PRM yet) searches whatever the step
    _, m = mcts_prm(t.context, sampled, max_len=MAX_LEN, step=1, state={}, **SEARCH)
    assert m["mcts/searched"] == 1.0


def test_both_prm_kinds_train_and_leave_the_policy_untouched(tmp_path):
    t = trainer(tmp_path)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.model.train()
    for kind, key in (("policy_head", "0.weight"), ("tiny", "model.embed_tokens.weight")):
        state: dict = {}
        out, m = mcts_prm(t.context, batch(t), max_len=MAX_LEN, step=0, state=state, prm_model=kind, **SEARCH)
        assert key in state["prm"] and "prm/loss" in m and out.extras["step_rewards"].shape[0] == out.size
    # the head reads the policy's hidden states without gradient and restores its mode; the policy never changes
    assert t.model.training and all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())
    assert all(p.grad is None for p in t.model.parameters())


def test_head_updates_on_cached_features_equal_updates_on_full_sequences(tmp_path):
    t = trainer(tmp_path)
    state: dict = {}
    mcts_prm(t.context, batch(t), max_len=MAX_LEN, step=0, state=state, **SEARCH)
    kw = dict(kind="policy_head", policy=t.model, pad_id=t.engine.pad_id, device=t.device, hidden=32, layers=1, heads=2)
    results = []
    for cache in (True, False):
        prm = ProcessRewardModel(t.tokenizer, state=copy.deepcopy(state), lr=1e-3, seed=0, **kw)
        torch.manual_seed(5)
        loss = prm.update(state["buffer"], updates=3, batch_size=8, loss="bce", cache_features=cache)
        results.append((loss, [p.detach().clone() for p in prm.model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_search_tree_merges_identical_steps_and_labels_root_to_leaf_paths():
    tree = SearchTree(prompt=0)
    a, new_a = tree.child(0, [5, 9], terminal=False)
    again, new_again = tree.child(0, [5, 9], terminal=False)
    b, _ = tree.child(0, [6, 2], terminal=True)
    c, _ = tree.child(a, [7, 2], terminal=True)
    assert (a, new_a, again, new_again, b, c) == (1, True, 1, False, 2, 3)
    assert tree.path[c] == [5, 9, 7, 2] and tree.parent == [-1, 0, 0, 1]
    # simulations: through a (verified), b (wrong), c (verified), a (wrong)
    tree.backup([1, 2, 3, 1], [1.0, 0.0, 1.0, 0.0])
    assert tree.wins.tolist() == [2.0, 2.0, 0.0, 1.0] and tree.sims.tolist() == [4.0, 3.0, 1.0, 1.0]
    # leaves 2 and 3; values: root 0.5, a 2/3, b 0, c 1
    examples = tree.examples(look_back=1.0)
    assert [(comp, ends) for comp, ends, _ in examples] == [([6, 2], [1]), ([5, 9, 7, 2], [1, 3])]
    # b: 0 − (0.5 − 0) → 0; a: 2/3 + (2/3 − 1/2) = 5/6; c: 1 + (1 − 2/3) → 1
    assert examples[0][2] == pytest.approx([0.0])
    assert examples[1][2] == pytest.approx([5 / 6, 1.0])
    v = torch.tensor([2 / 3, 1.0], dtype=torch.float64)
    assert examples[1][2] == pytest.approx(dual_sided_targets(v, torch.tensor([0.5, 2 / 3])).tolist())
    assert tree.depth(c) == 2
    tree.expanded[0] = tree.expanded[1] = True
    assert tree.select(c=2.0) == -1  # both leaves are terminal: nothing left to search
    d, _ = tree.child(0, [8], terminal=False)
    tree.backup([d], [1.0])
    assert tree.select(c=2.0) == d  # the only open leaf
    # only complete (root-to-terminal) paths are labelled unless complete_only=False
    assert len(tree.examples(look_back=1.0)) == 2 and len(tree.examples(look_back=1.0, complete_only=False)) == 3
    # contrast: a tree whose terminal paths all failed (or all passed) gives no label
    lone = SearchTree(prompt=0)
    e, _ = lone.child(0, [6, 2], terminal=True)
    lone.backup([e, e], [0.0, 0.0])
    assert lone.examples(look_back=1.0) == [] and len(lone.examples(look_back=1.0, contrast=False)) == 1


def test_verified_search_completions_can_join_their_prompt_group(tmp_path):
    t = trainer(tmp_path, task="mcts_always")
    sampled = batch(t)
    out, m = mcts_prm(t.context, sampled, max_len=MAX_LEN, step=0, state={}, append_verified=2, **SEARCH)
    added = int(m["mcts/appended"])
    assert 0 < added <= 2 * 2 and out.size == sampled.size + added
    new = out.gen.completion_ids[sampled.size :]
    new_mask = out.gen.completion_mask[sampled.size :]
    for j in range(added):
        row = sampled.size + j
        p = int(out.gen.prompt_index[row])
        same = (sampled.gen.prompt_index == p).nonzero().flatten()
        assert int(out.group[row]) == int(sampled.group[same[0]])  # the prompt's own group
        tokens = new[j][new_mask[j]].tolist()
        assert all(tokens != sampled.gen.completion_ids[i][sampled.gen.completion_mask[i]].tolist() for i in same)
        assert out.accuracy[row] == 1.0
    assert int(out.extras.get("prefix_len", torch.zeros(out.size)).abs().sum()) == 0  # on-policy samples
    assert out.extras["step_rewards"].shape[0] == out.size


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(delimiters=["ab"]), "one known token"),
        (dict(delimiters=["\n"]), "one known token"),
        (dict(search_every=0), "search_every must be an integer >= 1"),
        (dict(prm_loss_type="mse"), "prm_loss_type must be one of"),
        (dict(look_back=-0.5), "look_back must be"),
        (dict(prm_model="mlp"), "prm_model must be one of"),
    ],
)
def test_bad_options_raise(tmp_path, options, message):
    t = trainer(tmp_path)
    with pytest.raises(ValueError, match=message):
        mcts_prm(t.context, batch(t), max_len=MAX_LEN, step=0, state={}, **{**SEARCH, **options})


# ---------------------------------------------------------------------------------------------- real Trainer runs
def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_resumed_run_continues_identically(tmp_path):
    rollout = [{"name": "mcts_prm", "params": {**SEARCH, "search_every": 2}}]
    settings = dict(steps=4, save_every=2, keep_checkpoints=5, rollout=rollout, learning_rate=1e-3)
    trainer(tmp_path, name="full", **settings).run()
    full = records(tmp_path / "full")
    # a run stopped after step 2: its folder with the step-2 checkpoint, the later checkpoint and records dropped
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    (tmp_path / "cut" / "checkpoints" / "step-0000004.pt").unlink()
    resumed = Trainer(resolve(None, {**TINY, "output_dir": str(tmp_path), "name": "cut", **settings}), resume=True)
    assert resumed.step == 2 and "prm" in resumed.part_state["rollout.0.mcts_prm"]
    resumed.run()
    again = records(tmp_path / "cut")
    assert [r["step"] for r in again] == [r["step"] for r in full] == [0, 1, 2, 3, 4]
    assert full[3]["mcts/searched"] == 1.0 and full[4]["mcts/searched"] == 0.0
    for a, b in zip(full[3:], again[3:], strict=True):
        for key in ("loss", "reward", "prm/step_reward_mean", "prm/loss", "prm/buffer", "mcts/nodes", "adv_abs_mean"):
            assert a.get(key) == b.get(key), (a["step"], key)


@pytest.mark.parametrize("contrast", [True, False])
def test_mcts_prm_trains_three_steps_on_arith_think_with_tiny_arith(tmp_path, contrast):
    # TINY settings of tests/trainer/test_loop.py, on arith_think (24 new tokens, the task's suggestion)
    settings = dict(
        model="tiny-arith",
        task="arith_think",
        algo="mcts_prm",
        steps=3,
        num_prompts=2,
        num_generations=4,
        eval_prompts=4,
        eval_every=0,
        save_every=0,
        progress=False,
        learning_rate=1e-3,
        output_dir=str(tmp_path),
        name="think",
    )
    if not contrast:  # the preset's search, labelling trees without a verified completion too
        settings["rollout"] = [{"name": "mcts_prm", "params": {"delimiters": [",", ")"], "contrast": False}}]
    t = Trainer(resolve(None, settings))
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.run()
    logged = records(tmp_path / "think")
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    assert [r["mcts/searched"] for r in logged[1:]] == [1.0, 0.0, 1.0]
    for r in logged[1:]:
        assert not r.get("skipped") and abs(r["loss"]) < 1e6 and r["prm/steps"] >= 1.0
    assert any(not torch.equal(before[k], v) for k, v in t.model.state_dict().items())
    if contrast:
        # tiny-arith never writes the bracketed thought, so no tree holds a verified completion: no PRM label yet,
        # every step scores 0.5 and the process term is 0 (GRPO's update)
        assert all(r["prm/trained"] == 0.0 and r["prm/step_reward_mean"] == 0.5 for r in logged[1:])
        assert logged[1]["prm/labelled_trees"] == 0.0 and "prm/loss" not in logged[1]
    else:
        assert "prm/loss" in logged[1] and "prm/loss" in logged[3] and logged[1]["prm/labelled_trees"] > 0
        assert all(r["prm/trained"] == 1.0 and 0.0 < r["prm/step_reward_mean"] < 1.0 for r in logged[1:])
