"""Independent cross-check of SPO-chain and SPO-tree (arXiv 2505.23564) against the official code's arithmetic.

Reference: AIFrameResearch/SPO (``src/treetune``), read for facts only:

- ``episode_generators/math_episode_generator_with_mc_advantages.py``: cutpoints = positions ``j − 1`` of the
  tokens j with rollout probability p_j < 0.9, every ``cutpoint_interval``-th one (``[::5]``, from the first);
  the value of cutpoint c is the mean reward of N continuations of ``response[:c + 1]``; ``_compute_token_advantages``
  puts the values at their cutpoint positions and the trajectory score at the last token, walks forward
  (advantage at a value position = its value − the previous value, 0 while there is no previous value; a cutpoint
  c = −1 is the prompt and becomes the first base), fills the other positions backwards from the next value
  position, and zeroes tokens with p > 0.9.
- ``trainers/ppo_trainer.py`` + ``trainers/utils.py``: ``use_prob_mask`` keeps ``exp(old_logp) < 0.9`` in the
  loss and in ``masked_whiten`` (unbiased variance, ``(x − mean) · rsqrt(var + 1e-8)``).
- ``inference_strategies/hybrid_inference_strategy.py``: node reward = ``np.mean`` of its children's rewards (a
  child that finished before M tokens is a leaf with its own reward), ``reward_std = np.std`` (ddof 0).
- ``episode_generators/tree_episode_generator.py::extract_edges_from_tree``: edge advantage ``child − parent``
  ("rloo") or ``(child − parent) / (parent_std + 1e-8)`` ("grpo"); only nonzero edges are trained.

The reference below is written as plain Python loops over lists (the official control flow), never with
grpolab.core.spo's vectorised functions; the strategies are checked on a random tiny model by rebuilding the
tree from the recorded ``continue_from`` calls.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.spo import cutpoints, probability_mask, tree_segment_advantages
from grpolab.core.types import Rollout
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer


# ----------------------------------------------------------------------------------------------------------------
# Reference (official control flow, plain loops)
# ----------------------------------------------------------------------------------------------------------------
def ref_cut_tokens(p: list[float], thr: float = 0.9, interval: int = 5) -> list[int]:
    """Tokens j with p_j < thr, every interval-th from the first (the official cutpoint is j − 1)."""
    low = [j for j in range(len(p)) if p[j] < thr]
    return low[::interval]


def ref_chain_token_adv(p, cut_tokens, values, score, prompt_value, thr=0.9):
    """``_compute_token_advantages`` transcribed; values[k] = V(response[:cut_tokens[k]]), prompt_value is used
    when the first cut token is 0 (official: an MC estimate at the prompt), None = no base."""
    L = len(p)
    cuts = [j - 1 for j in cut_tokens]
    vals = list(values)
    if not cuts:
        return [0.0] * L
    token_values = [None] * L
    token_values[L - 1] = score
    base = None
    if cuts[0] == -1:
        base = prompt_value
        cuts, vals = cuts[1:], vals[1:]
    for c, v in zip(cuts, vals, strict=True):
        token_values[c] = v
    adv = [None] * L
    for i in range(L):
        if token_values[i] is not None:
            adv[i] = 0.0 if base is None else token_values[i] - base
            base = token_values[i]
    for i in range(L - 1, -1, -1):
        if adv[i] is None:
            adv[i] = adv[i + 1]
    return [0.0 if p[i] > thr else adv[i] for i in range(L)]


def ref_whiten(rows: list[list[float]], keep: list[list[bool]], eps: float = 1e-8) -> list[list[float]]:
    """treetune ``masked_whiten(unbiased_variance=True)`` over the kept tokens; 0 at the others (not in the loss)."""
    xs = [a for row, k in zip(rows, keep, strict=True) for a, kk in zip(row, k, strict=True) if kk]
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / n * (n / (n - 1)) if n > 1 else 0.0
    out = []
    for row, k in zip(rows, keep, strict=True):
        out.append([(a - mean) / math.sqrt(var + eps) if kk else 0.0 for a, kk in zip(row, k, strict=True)])
    return out


def ref_tree(node: dict, method: str = "rloo", value_mode: str = "children", eps: float = 1e-8) -> float:
    """Fill node["value"] and each child's node["adv"] (hybrid_inference_strategy + extract_edges_from_tree)."""
    if "children" not in node:
        node["value"] = float(node["reward"])
        node["leaves"] = [float(node["reward"])]
        return node["value"]
    child_values = [ref_tree(c, method, value_mode, eps) for c in node["children"]]
    node["leaves"] = [r for c in node["children"] for r in c["leaves"]]
    if value_mode == "children":
        node["value"] = sum(child_values) / len(child_values)
    else:
        node["value"] = sum(node["leaves"]) / len(node["leaves"])
    mean = sum(child_values) / len(child_values)
    std = math.sqrt(sum((v - mean) ** 2 for v in child_values) / len(child_values))  # np.std, ddof 0
    for c in node["children"]:
        diff = c["value"] - node["value"]
        c["adv"] = diff if method == "rloo" else diff / (std + eps)
    return node["value"]


# ----------------------------------------------------------------------------------------------------------------
# Core: cutpoints, probability mask, chain advantages
# ----------------------------------------------------------------------------------------------------------------
def random_probs(rng: random.Random, B: int, T: int) -> tuple[torch.Tensor, torch.Tensor, list[list[float]]]:
    """Token probabilities (about half above 0.9), lengths 1..T, NaN log-probs at padding."""
    lengths = [rng.randint(1, T) for _ in range(B)]
    lengths[0] = 1
    probs = [
        [rng.uniform(0.9005, 0.999) if rng.random() < 0.5 else rng.uniform(0.01, 0.8995) for _ in range(L)]
        for L in lengths
    ]
    logp = torch.full((B, T), float("nan"), dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, row in enumerate(probs):
        logp[b, : len(row)] = torch.tensor(row, dtype=torch.float64).log()
        mask[b, : len(row)] = True
    return logp, mask, probs


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("thr", "interval"), [(0.9, 5), (0.9, 1), (0.5, 2), (1.0, 3)])
def test_cutpoints_and_probability_mask_follow_the_official_rule(seed, thr, interval):
    rng = random.Random(seed)
    logp, mask, probs = random_probs(rng, 7, 23)
    cut = cutpoints(logp, mask, threshold=thr, interval=interval)
    keep = probability_mask(logp, mask, threshold=thr)
    for b, row in enumerate(probs):
        assert cut[b].nonzero().flatten().tolist() == ref_cut_tokens(row, thr, interval)
        assert keep[b].nonzero().flatten().tolist() == [j for j, p in enumerate(row) if p < thr]


def random_groups(rng: random.Random, B: int) -> list[int]:
    """Unequal, shuffled groups, one of size 1."""
    sizes, left = [1], B - 1
    while left > 0:
        s = min(left, rng.randint(2, 4))
        sizes.append(s)
        left -= s
    group = [g for g, s in enumerate(sizes) for _ in range(s)]
    rng.shuffle(group)
    return group


def chain_case(seed: int, interval: int):
    """A random batch: probabilities, cut tokens (the official rule), MC values at them, rewards, groups."""
    rng = random.Random(seed)
    B, T = 11, 19
    logp, mask, probs = random_probs(rng, B, T)
    for b in range(0, B, 3):  # make token 0 uncertain in some rows: the official code then needs V(prompt)
        probs[b][0] = rng.uniform(0.05, 0.85)
        logp[b, 0] = math.log(probs[b][0])
    group = random_groups(rng, B)
    reward = [rng.choice([0.0, 1.0, rng.random()]) for _ in range(B)]
    cut_tokens = [ref_cut_tokens(row, 0.9, interval) for row in probs]
    values = [[rng.random() for _ in cuts] for cuts in cut_tokens]
    spo_cut = torch.zeros(B, T, dtype=torch.bool)
    spo_value = torch.zeros(B, T, dtype=torch.float64)
    for b, (cuts, vals) in enumerate(zip(cut_tokens, values, strict=True)):
        for j, v in zip(cuts, vals, strict=True):
            if j > 0:  # what the strategy stores: cutpoints j >= 1 (token 0 is the prompt, the advantage's base)
                spo_cut[b, j] = True
                spo_value[b, j] = v
    keep = probability_mask(logp, mask)
    rollout = Rollout(
        group=torch.tensor(group),
        mask=mask,
        reward=torch.tensor(reward, dtype=torch.float64),
        extras={"spo_cut": spo_cut, "spo_value": spo_value, "spo_keep": keep},
    )
    return rollout, probs, group, reward, cut_tokens, values, keep


def prompt_value(base: str, b: int, group: list[int], reward: list[float]) -> float | None:
    same = [i for i, g in enumerate(group) if g == group[b]]
    if base == "group":
        return sum(reward[i] for i in same) / len(same)
    if base == "loo":
        others = [reward[i] for i in same if i != b]
        return sum(others) / len(others) if others else None
    return None


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("interval", [1, 2, 5])
@pytest.mark.parametrize("base", ["group", "loo", "none"])
def test_spo_chain_entry_matches_the_official_token_advantages(seed, interval, base):
    rollout, probs, group, reward, cut_tokens, values, keep = chain_case(seed, interval)
    raw = ADVANTAGES["spo_chain"](rollout, base=base, whiten=False)
    ref_rows = []
    for b, row in enumerate(probs):
        ref = ref_chain_token_adv(row, cut_tokens[b], values[b], reward[b], prompt_value(base, b, group, reward))
        ref_rows.append(ref + [0.0] * (rollout.seq_len - len(row)))
        for t, p in enumerate(row):
            # kept tokens (p < 0.9) carry the official advantage; the others are 0 here and out of the loss there
            expected = ref[t] if p < 0.9 else 0.0
            assert raw[b, t].item() == pytest.approx(expected, abs=1e-12), (b, t)
        assert (raw[b, len(row) :] == 0).all()
    white = ADVANTAGES["spo_chain"](rollout, base=base)  # default: whitened over the kept tokens of the batch
    expected = ref_whiten(ref_rows, keep.tolist())
    assert torch.allclose(white, torch.tensor(expected, dtype=white.dtype), atol=1e-9)


def test_chain_spec_example_and_first_token_cut_uses_the_prompt_value():
    """Spec §15: V = [0.2, 0.5, 1.0] -> segment advantages [0.3, 0.5]. Official: token 0 uncertain -> the prompt's
    value is the base of the first segment; token 0 certain -> the first segment has no base (advantage 0)."""
    p = [0.5, 0.95, 0.3, 0.97]  # low tokens 0 and 2; interval 1 -> cut tokens 0 and 2
    assert ref_chain_token_adv(p, [0, 2], [0.2, 0.5], 1.0, 0.2) == [0.3, 0.0, 0.5, 0.0]
    rollout = Rollout(
        group=torch.tensor([0, 0]),
        mask=torch.ones(2, 4, dtype=torch.bool),
        reward=torch.tensor([1.0, 0.2]),  # group mean 0.6 = V(start) with base "group"
        extras={
            "spo_cut": torch.tensor([[False, False, True, False]] * 2),
            "spo_value": torch.tensor([[0.0, 0.0, 0.5, 0.0]] * 2),
            "spo_keep": torch.tensor([[True, False, True, False]] * 2),
        },
    )
    adv = ADVANTAGES["spo_chain"](rollout, whiten=False)
    # row 0: token 0 gets 0.5 - 0.6 = -0.1, token 2 gets 1.0 - 0.5 = 0.5; row 1: -0.1 and 0.2 - 0.5 = -0.3
    assert torch.allclose(adv, torch.tensor([[-0.1, 0.0, 0.5, 0.0], [-0.1, 0.0, -0.3, 0.0]]))
    adv = ADVANTAGES["spo_chain"](rollout, whiten=False, base="none")
    assert torch.allclose(adv, torch.tensor([[0.0, 0.0, 0.5, 0.0], [0.0, 0.0, -0.3, 0.0]]))


# ----------------------------------------------------------------------------------------------------------------
# Core: tree values and advantages
# ----------------------------------------------------------------------------------------------------------------
def random_tree(rng: random.Random, depth: int, level: int = 0) -> dict:
    """A nested tree: children lists of 1..4 (the root 2..4), early leaves with probability 0.25 below level 1."""
    if level == depth or (level > 0 and rng.random() < 0.25):
        return {"reward": rng.choice([0.0, 1.0, round(rng.random(), 3)])}
    return {"children": [random_tree(rng, depth, level + 1) for _ in range(rng.randint(2 if level == 0 else 1, 4))]}


def tree_rows(trees: list[dict], rng: random.Random):
    """Leaf rows (shuffled) with their node paths (ids shuffled), and the node dict behind every id."""
    rows, nodes = [], []

    def walk(node, g, chain):
        for child in node["children"]:
            nodes.append(child)
            here = [*chain, len(nodes) - 1]
            if "children" in child:
                walk(child, g, here)
            else:
                rows.append((g, here, child["reward"]))

    for g, tree in enumerate(trees):
        walk(tree, g, [])
    ids = list(range(len(nodes)))
    rng.shuffle(ids)
    rng.shuffle(rows)
    D = max(len(chain) for _, chain, _ in rows)
    path = torch.tensor([[ids[n] for n in chain] + [-1] * (D - len(chain)) for _, chain, _ in rows])
    by_id = {ids[n]: node for n, node in enumerate(nodes)}
    group = torch.tensor([g for g, _, _ in rows])
    reward = torch.tensor([r for _, _, r in rows], dtype=torch.float64)
    return path, group, reward, by_id


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("method", ["rloo", "grpo"])
@pytest.mark.parametrize("value_mode", ["children", "leaves"])
def test_tree_segment_advantages_match_the_official_recursion(seed, method, value_mode):
    rng = random.Random(seed)
    trees = [random_tree(rng, rng.randint(1, 3)) for _ in range(rng.randint(1, 4))]
    for tree in trees:
        ref_tree(tree, method, value_mode)
    path, group, reward, by_id = tree_rows(trees, rng)
    adv, value = tree_segment_advantages(path, reward, group, method=method, node_value=value_mode)
    for r in range(path.shape[0]):
        for d in range(path.shape[1]):
            k = int(path[r, d])
            if k < 0:
                assert adv[r, d] == 0 and value[r, d] == 0
                continue
            assert adv[r, d].item() == pytest.approx(by_id[k]["adv"], abs=1e-9), (method, value_mode, r, d)
            assert value[r, d].item() == pytest.approx(by_id[k]["value"], abs=1e-12)
    if method == "rloo" and value_mode == "children":  # spec invariant: children average to 0 under their parent
        for node in by_id.values():
            if "children" in node:
                assert sum(c["adv"] for c in node["children"]) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Strategies on a random tiny model
# ----------------------------------------------------------------------------------------------------------------
def digit_fraction(prompts, completions, **_):
    return [sum(ch.isdigit() for ch in text) / max(1, len(text)) for text in completions]


def _digits_task(**_):
    base = arith_task()
    return Task("spo_xcheck_digits", base.train, base.eval, [digit_fraction])


if "spo_xcheck_digits" not in TASKS:
    TASKS.register("spo_xcheck_digits")(_digits_task)


def tiny(tmp_path, algo: str, *, seed: int, G: int, max_len: int):
    torch.manual_seed(seed)
    config = resolve(
        None,
        {
            "model": "random-tiny",
            "task": "spo_xcheck_digits",
            "num_prompts": 2,
            "num_generations": G,
            "max_new_tokens": max_len,
            "eval_prompts": 2,
            "eval_every": 0,
            "save_every": 0,
            "progress": False,
            "algo": algo,
            "name": algo,
            "output_dir": str(tmp_path),
            "seed": seed,
        },
    )
    trainer = Trainer(config)
    rows = [trainer.task.train[i] for i in range(config.num_prompts)]
    ctx = trainer.context
    calls = []
    real = ctx.continue_from

    def spy(sampled, index, cut, n, **kw):
        out = real(sampled, index, cut, n, **kw)
        calls.append((index.tolist(), cut.tolist(), n, out))
        return out

    ctx.continue_from = spy
    return ctx, ctx.sample(rows, G), calls


def test_chain_strategy_then_advantage_equals_the_official_pipeline(tmp_path):
    max_len, N = 12, 3
    ctx, sampled, calls = tiny(tmp_path, "spo_chain", seed=5, G=3, max_len=max_len)
    out, _ = ROLLOUT_STRATEGIES["spo_chain"](ctx, sampled, max_len=max_len, num_rollouts=N, cutpoint_interval=2)
    assert out.size == sampled.size and len(calls) == 1
    logp, _ = ctx.token_outputs(sampled.gen)
    mask = sampled.gen.completion_mask
    index, cut, n, cont = calls[0]
    assert n == N
    # MC value of each (row, j): mean reward of its N continuations after j given tokens, at most max_len in all
    mc = {}
    for m, (i, j) in enumerate(zip(index, cut, strict=True)):
        rewards = []
        for k in range(m * N, (m + 1) * N):
            ids = cont.gen.completion_ids[k][cont.gen.completion_mask[k]]
            assert torch.equal(ids[:j], sampled.gen.completion_ids[i, :j])  # the state before token j
            text = ctx.tokenizer.decode(ids[:max_len], skip_special_tokens=True)
            rewards.append(digit_fraction(None, [text])[0])
        mc[(i, j)] = sum(rewards) / N
    reward = sampled.reward.double().tolist()
    group = sampled.group.tolist()
    probs = [logp[b][mask[b]].double().exp().tolist() for b in range(sampled.size)]
    expected_keys = set()
    ref_rows = []
    for b, row in enumerate(probs):
        cuts = ref_cut_tokens(row, 0.9, 2)
        expected_keys |= {(b, j) for j in cuts if j > 0}
        vals = [mc.get((b, j), 0.0) for j in cuts]  # j = 0: the prompt (its value is the base below)
        ref_rows.append(ref_chain_token_adv(row, cuts, vals, reward[b], prompt_value("group", b, group, reward)))
    assert set(mc) == expected_keys  # every official cutpoint but the prompt, estimated once
    extras = {k: out.extras[k] for k in ("spo_cut", "spo_value", "spo_keep")}
    rollout = Rollout(group=sampled.group, mask=mask, reward=sampled.reward.double(), extras=extras)
    adv = ADVANTAGES["spo_chain"](rollout, whiten=False)
    for b, row in enumerate(probs):
        for t, p in enumerate(row):
            assert adv[b, t].item() == pytest.approx(ref_rows[b][t] if p < 0.9 else 0.0, abs=1e-6), (b, t)


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_tree_strategy_matches_a_tree_rebuilt_from_the_continuations(tmp_path, method):
    G, factors, max_len = 3, (3, 2), 9
    ctx, sampled, calls = tiny(tmp_path, "spo_tree", seed=11, G=G, max_len=max_len)
    out, metrics = ROLLOUT_STRATEGIES["spo_tree"](
        ctx, sampled, max_len=max_len, branch_factors=factors, method=method, prob_threshold=0.9
    )
    M = int(metrics["spo/segment_len"])
    assert M == 3  # round(0.3 * 9)
    # rebuild: every row's source row and birth level from the recorded calls (rows are appended in call order)
    src, birth = list(range(sampled.size)), [0] * sampled.size
    for index, cut, n, _ in calls:
        assert len(set(cut)) == 1 and cut[0] % M == 0
        d = cut[0] // M
        for i in index:
            src += [i] * n
            birth += [d] * n
    R = out.size
    assert len(src) == R
    lengths = out.gen.completion_mask.sum(-1).tolist()
    D = 1 + len(factors)

    def node_of(r: int, level: int):  # the node (owner row, level) of row r at a level it reaches
        while level < birth[r]:
            r = src[r]
        return (r, level)

    nodes: dict = {}
    for g in range(len(sampled.rows)):
        nodes[("root", g)] = {"children": []}
    parent_of = {}
    for r in range(R):
        leaf_level = min((lengths[r] - 1) // M, D - 1)
        above = ("root", int(out.group[r]))
        for level in range(leaf_level + 1):
            key = node_of(r, level)
            if key not in nodes:
                nodes[key] = {"children": []} if level < leaf_level else {"reward": out.reward[r].item()}
                nodes[above]["children"].append(nodes[key])
                parent_of[key] = above
            above = key
    for g in range(len(sampled.rows)):
        ref_tree(nodes[("root", g)], method)
    # branch factors: the root has G children, a level-l inner node factors[l] (every node that went on grew)
    for key, node in nodes.items():
        if "children" in node:
            want = G if key[0] == "root" else factors[key[1]]
            assert len(node["children"]) == want, key
    # stored advantages: the node's edge advantage at the tokens the row sampled; keep = owned, nonzero, p < 0.9
    logp, _ = ctx.token_outputs(out.gen)
    prefix = out.extras["prefix_len"].tolist()
    for r in range(R):
        assert prefix[r] == birth[r] * M
        for t in range(lengths[r]):
            key = node_of(r, min(t // M, D - 1))
            owned = t >= prefix[r]
            a = nodes[key]["adv"] if owned else 0.0
            assert out.extras["spo_adv"][r, t].item() == pytest.approx(a, abs=1e-5), (r, t)
            kept = owned and a != 0 and math.exp(logp[r, t].item()) < 0.9
            assert bool(out.extras["spo_keep"][r, t]) == kept, (r, t)


# ----------------------------------------------------------------------------------------------------------------
# Presets: the official configs' hyper-parameters
# ----------------------------------------------------------------------------------------------------------------
def test_presets_carry_the_official_config_values():
    chain = PRESETS["spo_chain"]
    (rollout,) = chain.rollout
    # polIter_rho1bSft2_spo_chain_GSM8K: 9 MC rollouts (9rolls), interval 5 (generator default), p < 0.9
    assert (rollout.name, dict(rollout.params)) == (
        "spo_chain",
        {"num_rollouts": 9, "cutpoint_interval": 5, "prob_threshold": 0.9},
    )
    assert chain.advantage.name == "spo_chain" and chain.advantage.params["whiten"] is True
    assert [s.name for s in chain.selectors] == ["spo_mask"]
    assert (chain.loss.name, chain.loss.params["epsilon"]) == ("ppo_clip", 0.2)  # ppo_MATH cliprange
    (kl,) = chain.regularizers  # refKl0.0001 + klLoss (control_variate = k3), fixed coefficient
    assert (kl.name, kl.params["coef"], kl.params["estimator"]) == ("kl", 1e-4, "k3")
    assert chain.value_loss is None  # trainers/no_critic
    # polIter_rho1bSft2_ppo_MATH: 8 rollouts per prompt, temperature 0.6; ppo_MATH: 2 epochs per iteration
    assert dict(chain.trainer) == {"num_generations": 8, "num_iterations": 2, "temperature": 0.6}

    tree = PRESETS["spo_tree"]
    (rollout,) = tree.rollout
    assert rollout.name == "spo_tree"
    p = dict(rollout.params)
    # hybrid: max_depth 3, branch factors 6-6-6 (G = 6 is level 1), adv_method rloo (default), node reward = mean
    # of children, only nonzero edges (only_adv_greater_than_zero default), use_prob_mask inherited from the chain
    assert tuple(p["branch_factors"]) == (6, 6) and p["method"] == "rloo" and p["node_value"] == "children"
    assert p["only_nonzero"] is True and p["prob_threshold"] == 0.9
    assert tree.advantage.name == "spo_tree" and tree.advantage.params["whiten"] is True
    assert [s.name for s in tree.selectors] == ["spo_mask"]
    assert (tree.loss.name, tree.loss.params["epsilon"]) == ("ppo_clip", 0.2)
    (kl,) = tree.regularizers
    assert (kl.name, kl.params["coef"], kl.params["estimator"]) == ("kl", 1e-4, "k3")
    # spo_tree configs: num_epochs_per_iteration 1, temperature 0.6
    assert dict(tree.trainer) == {"num_generations": 6, "num_iterations": 1, "temperature": 0.6}
