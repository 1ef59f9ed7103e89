"""The SPO rollout strategies on a random tiny model: sampling calls, Monte-Carlo values, tree structure and the
each-segment-once rule (the math itself is tested in tests/core/test_spo.py)."""

from __future__ import annotations

import itertools

import torch

from grpolab.core.spo import probability_mask
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

TINY = dict(
    model="random-tiny",
    task="spo_digits",
    num_prompts=2,
    num_generations=3,
    max_new_tokens=6,
    eval_prompts=2,
    eval_every=0,
    save_every=0,
    progress=False,
)


def digit_fraction(prompts, completions, **_):
    """A dense reward a random model can earn: the fraction of digits in the completion."""
    return [sum(c.isdigit() for c in text) / max(1, len(text)) for text in completions]


def digits_task(**_):
    base = arith_task()
    return Task("spo_digits", base.train, base.eval, [digit_fraction])


if "spo_digits" not in TASKS:
    TASKS.register("spo_digits")(digits_task)


def setup(tmp_path, algo: str, seed: int = 0, **overrides):
    config = resolve(None, {**TINY, **overrides, "algo": algo, "name": algo, "output_dir": str(tmp_path), "seed": seed})
    trainer = Trainer(config)
    rows = [trainer.task.train[i] for i in range(config.num_prompts)]
    return trainer, trainer.context, trainer.context.sample(rows, config.num_generations)


def spy_continue(ctx):
    """Record every continue_from call: (index, cut, n, kwargs, result)."""
    calls = []
    real = ctx.continue_from

    def spy(sampled, index, cut, n, **kw):
        out = real(sampled, index, cut, n, **kw)
        calls.append((index.clone(), cut.clone(), n, kw, out))
        return out

    ctx.continue_from = spy
    return calls


# ---------------------------------------------------------------------------------------------- chain
def test_chain_samples_all_cutpoints_in_one_call_and_stores_their_mean_reward(tmp_path):
    torch.manual_seed(0)
    _, ctx, sampled = setup(tmp_path, "spo_chain")
    calls = spy_continue(ctx)
    max_len = 6
    out, metrics = ROLLOUT_STRATEGIES["spo_chain"](
        ctx, sampled, max_len=max_len, num_rollouts=3, cutpoint_interval=1, prob_threshold=1.0
    )
    assert len(calls) == 1  # every cutpoint of the batch in ONE call
    index, cut, n, kw, cont = calls[0]
    mask = sampled.gen.completion_mask
    logp, _ = ctx.token_outputs(sampled.gen)
    # interval 1, threshold 1.0: every valid token j >= 1 with p < 1 is a cutpoint (token 0 is the start)
    expected = probability_mask(logp, mask, threshold=1.0)
    expected[:, 0] = False
    assert torch.equal(out.extras["spo_cut"], expected)
    assert sorted(zip(index.tolist(), cut.tolist(), strict=True)) == sorted(map(tuple, expected.nonzero().tolist()))
    assert n == 3 and kw["max_new_tokens"] == max_len - int(cut.min())
    assert metrics["spo/mc_rollouts"] == 3 * len(index)
    # each continuation keeps the first `cut` tokens of its source completion
    src = index.repeat_interleave(3)
    for m, (i, c) in enumerate(zip(src.tolist(), cut.repeat_interleave(3).tolist(), strict=True)):
        assert torch.equal(cont.gen.completion_ids[m, :c], sampled.gen.completion_ids[i, :c])
    # the value of a cutpoint = mean reward of its 3 continuations, each cut back to the run's budget of 6 tokens
    tok = ctx.tokenizer
    for k, (i, c) in enumerate(zip(index.tolist(), cut.tolist(), strict=True)):
        rewards = []
        for m in range(3 * k, 3 * k + 3):
            ids = cont.gen.completion_ids[m][cont.gen.completion_mask[m]][:max_len]
            rewards.append(digit_fraction(None, [tok.decode(ids, skip_special_tokens=True)])[0])
        assert abs(out.extras["spo_value"][i, c].item() - sum(rewards) / 3) < 1e-6
    assert torch.equal(out.extras["spo_keep"], probability_mask(logp, mask, threshold=1.0))
    assert out.size == sampled.size  # continuations only estimate values; they do not join the batch


def test_chain_paper_defaults_mark_every_fifth_uncertain_token(tmp_path):
    torch.manual_seed(1)
    _, ctx, sampled = setup(tmp_path, "spo_chain", max_new_tokens=12)
    out, _ = ROLLOUT_STRATEGIES["spo_chain"](ctx, sampled, max_len=12, num_rollouts=2)
    logp, _ = ctx.token_outputs(sampled.gen)
    probs, mask = logp.exp(), sampled.gen.completion_mask
    for i in range(sampled.size):  # loop: positions of tokens with p < 0.9, every 5th from the first, minus token 0
        low = [t for t in range(mask.shape[1]) if mask[i, t] and probs[i, t] < 0.9]
        marks = {t for t in low[::5] if t > 0}
        assert set(out.extras["spo_cut"][i].nonzero().flatten().tolist()) == marks
        assert set(out.extras["spo_keep"][i].nonzero().flatten().tolist()) == set(low)


# ---------------------------------------------------------------------------------------------- tree
def grow_tree(tmp_path, seed=0, **kw):
    torch.manual_seed(seed)
    _, ctx, sampled = setup(tmp_path, "spo_tree", seed=seed, max_new_tokens=8)
    calls = spy_continue(ctx)
    params = {"branch_factors": (3, 2), "max_len": 8, **kw}
    out, metrics = ROLLOUT_STRATEGIES["spo_tree"](ctx, sampled, **params)
    return ctx, sampled, out, metrics, calls


def test_tree_grows_one_call_per_level_from_the_main_batch(tmp_path):
    _, sampled, out, metrics, calls = grow_tree(tmp_path)
    M = int(metrics["spo/segment_len"])
    assert M == 2  # round(0.3 * 8)
    assert 1 <= len(calls) == metrics["spo/continue_calls"] <= 2  # depth 3: levels 2 and 3, one call each
    for d, (_, cut, n, kw, _) in enumerate(calls, start=1):
        assert (cut == d * M).all() and n == (3, 2)[d - 1] - 1 and kw["max_new_tokens"] == 8 - d * M
    G, P = 3, 2
    assert torch.equal(out.gen.completion_ids[: sampled.size], sampled.gen.completion_ids)  # main rows first
    assert out.size <= P * G * 3 * 2 and (out.gen.completion_mask.sum(-1) <= 8).all()
    assert out.group.tolist() == out.gen.prompt_index.tolist()
    prefix = out.extras["prefix_len"]
    assert (prefix[: sampled.size] == 0).all() and set(prefix[sampled.size :].tolist()) <= {M, 2 * M}


def test_tree_rows_sharing_a_node_hold_the_same_tokens_and_the_same_advantage(tmp_path):
    _, _, out, _, _ = grow_tree(tmp_path, seed=1, only_nonzero=False, prob_threshold=None)
    node, ids, mask = out.extras["spo_node"], out.gen.completion_ids, out.gen.completion_mask
    assert torch.equal(node >= 0, mask)
    for k in node[mask].unique().tolist():
        where = (node == k).nonzero()
        toks = {(t, int(ids[r, t])) for r, t in where.tolist()}
        assert len(toks) == len({t for _, t in where.tolist()})  # one token per position: a real shared prefix


def test_each_tree_segment_is_in_the_loss_exactly_once_in_its_first_row(tmp_path):
    """Spec: every (node, position) of the tree is trained in exactly one row, the first leaf through the node."""
    _, _, out, _, _ = grow_tree(tmp_path, seed=2, only_nonzero=False, prob_threshold=None)
    node, keep, mask = out.extras["spo_node"], out.extras["spo_keep"], out.gen.completion_mask
    pairs = {}
    for r, t in mask.nonzero().tolist():
        pairs.setdefault((int(node[r, t]), t), []).append(r)
    for (_, t), rows in pairs.items():
        kept = [r for r in rows if keep[r, t]]
        assert kept == [min(rows)]
    assert int(keep.sum()) == len(pairs)


def test_tree_advantages_are_value_differences_and_children_average_to_zero(tmp_path):
    _, _, out, _, _ = grow_tree(tmp_path, seed=3, only_nonzero=False, prob_threshold=None)
    node, keep, adv = out.extras["spo_node"], out.extras["spo_keep"], out.extras["spo_adv"]
    mask = out.gen.completion_mask
    # the tree by loops: each row's path is its sequence of distinct node ids
    parent, leaf_of = {}, {}
    for r in range(out.size):
        chain = [("root", int(out.group[r]))]
        for t in range(int(mask[r].sum())):
            n = int(node[r, t])
            if chain[-1] != n:
                chain.append(n)
        for a, b in itertools.pairwise(chain):
            parent[b] = a
        leaf_of[chain[-1]] = r
    kids = {}
    for b, a in parent.items():
        kids.setdefault(a, []).append(b)

    def value(n):
        return out.reward[leaf_of[n]].item() if n in leaf_of else sum(map(value, kids[n])) / len(kids[n])

    seg_adv = {}
    for r, t in keep.nonzero().tolist():
        n = int(node[r, t])
        assert abs(adv[r, t].item() - (value(n) - value(parent[n]))) < 1e-5
        seg_adv[n] = adv[r, t].item()
    assert set(seg_adv) == set(parent)  # every segment is trained (only_nonzero off, no probability mask)
    for children in kids.values():
        assert abs(sum(seg_adv[c] for c in children) / len(children)) < 1e-5


def test_tree_defaults_keep_only_nonzero_owned_uncertain_tokens(tmp_path):
    ctx, _, out, metrics, _ = grow_tree(tmp_path, seed=4)
    keep, adv, mask = out.extras["spo_keep"], out.extras["spo_adv"], out.gen.completion_mask
    t = torch.arange(mask.shape[1])
    owned = mask & (t[None, :] >= out.extras["prefix_len"][:, None])
    logp, _ = ctx.token_outputs(out.gen)
    assert torch.equal(keep, owned & (adv != 0) & (logp.exp() < 0.9))
    assert (adv[~owned] == 0).all()
    assert 0.0 < metrics["spo/kept_token_frac"] <= 1.0
