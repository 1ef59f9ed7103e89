"""Independent cross-check of AEPO (arXiv 2510.08141) and T-PPO's EGAE and windows (arXiv 2506.15050).

AEPO reference: the official code 597358816/AEPO, read for facts only:

- ``verl/trainer/ray_trainer.py::fit`` (``alg == "AEPO"``): ``entropy = 0`` before the first step; ``T =
  temperature_high`` if ``entropy <= entropy_base`` else ``temperature_low``; the first ``len(gen_batch) // 4``
  prompts are re-sampled at T with ``n = rollout.n`` each; GRPO advantages of that batch; ``_select_by_advantage(
  threshold=0.05, absolute=False)`` keeps ``advantages[:, 0] > 0.05`` (in batch order) and sets their advantages
  to 1; ``sample_num = min(reinforce_sample_num, len(selected))``, halved (``// 2``) while ``entropy >
  entropy_base``; ``entropy_batch = concat([selected[:sample_num], batch[sample_num:]])``, where ``batch`` already
  holds its GRPO advantages (computed by ``_compute_adv`` on the full batch *before* the overwrite); the next step's
  entropy is ``metrics["actor/entropy_loss"]`` = ``-masked_mean(log_probs, response_mask)`` of that batch.
- ``core_algos.compute_grpo_outcome_advantage``: ``(r - mean_g) / (torch.std(r_g) + 1e-6)`` (ddof 1, eps outside).
- ``config.py`` / ``examples/config.yaml`` / ``examples/qwen-math-7b-AEPO.sh``: T_high 1.2, T_low 0.8, entropy_base
  0.5, reinforce_sample_num 60, n 5, temperature 1.0, top_p 0.99, clip 0.2 / 0.2, dual clip 3.0, ppo_epochs 1,
  ``disable_kl=true``.

T-PPO reference (no official code; the project spec §16 and the paper's reviews): GAE over the tokens generated so
far; an unfinished response bootstraps ``V(s_l) := V(s_{l-1})`` (last δ = r + γV_{l-1} − V_{l-1}); a finished one
gets standard GAE with its terminal reward; windows of l tokens per step, finished responses replaced by new
prompts (constant batch size); the policy trains on this step's window tokens, the critic on completed responses.

The reference below is written as plain Python loops over lists, never with the vectorised grpolab functions.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.algorithms.preset import Part
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.aepo import choose_temperature, regularizer_count, select_positives
from grpolab.core.egae import egae, unfinished, window_length
from grpolab.core.types import Rollout
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer


# ----------------------------------------------------------------------------------------------------------------
# Reference (official control flow / spec formulas, plain loops)
# ----------------------------------------------------------------------------------------------------------------
def ref_temperature(h, target=0.5, t_high=1.2, t_low=0.8):
    h = 0.0 if h is None else h  # code: entropy = 0 before the first step
    return t_high if h <= target else t_low


def ref_count(num_pos, h, target=0.5, limit=60):
    h = 0.0 if h is None else h
    k = min(limit, num_pos)
    return k if h <= target else k // 2


def ref_grpo(rewards, groups, rows=None, eps=1e-6):
    """{row: (r - mean_g) / (std_g (ddof 1) + eps)} over ``rows`` (default all); a lone row gets 0."""
    rows = list(range(len(rewards))) if rows is None else list(rows)
    members = {}
    for i in rows:
        members.setdefault(groups[i], []).append(i)
    out = {}
    for _, idx in members.items():
        vals = [rewards[i] for i in idx]
        n = len(vals)
        mean = sum(vals) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        for i in idx:
            out[i] = (rewards[i] - mean) / (std + eps)
    return out


def ref_positives(rewards, groups, valid, threshold=0.05):
    adv = ref_grpo(rewards, groups, rows=[i for i in range(len(rewards)) if valid[i]])
    return [i for i in sorted(adv) if adv[i] > threshold]  # batch order, positives only (absolute=False)


def ref_egae_row(rew, val, finished, gamma, lam):
    """EGAE over one response's valid tokens (lists): V past the end is 0 if finished, else V of its last token."""
    L = len(rew)
    adv, running = [0.0] * L, 0.0
    for t in reversed(range(L)):
        last_next = 0.0 if finished else val[L - 1]  # T-PPO: V(s_l) := V(s_{l-1}) for an unfinished response
        nxt = val[t + 1] if t + 1 < L else last_next
        delta = rew[t] + gamma * nxt - val[t]
        running = delta + gamma * lam * running
        adv[t] = running
    return adv, [a + v for a, v in zip(adv, val, strict=True)]


def ref_whiten(values, eps=1e-8):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return [(v - mean) / math.sqrt(var + eps) for v in values]


def ref_egae_advantage(rollout, *, gamma, lam, whiten=True, truncated_reward=False, prefix=None):
    """T-PPO advantages [B][T] from a Rollout's fields, with lists: the outcome on a finished row's last token,
    dense token rewards everywhere, EGAE per row, whitened over the trained (window) tokens."""
    B, T = rollout.mask.shape
    mask = rollout.mask.tolist()
    value = rollout.value.tolist()
    dense = rollout.token_reward.tolist() if rollout.token_reward is not None else [[0.0] * T] * B
    trunc = rollout.truncated.tolist()
    reward = rollout.reward.tolist()
    raw, trained = [[0.0] * T for _ in range(B)], [[False] * T for _ in range(B)]
    for i in range(B):
        pos = [t for t in range(T) if mask[i][t]]
        rew = [dense[i][t] for t in pos]
        if not trunc[i] or truncated_reward:
            rew[-1] += reward[i]
        adv, _ = ref_egae_row(rew, [value[i][t] for t in pos], not trunc[i], gamma, lam)
        for a, t in zip(adv, pos, strict=True):
            raw[i][t] = a
            trained[i][t] = prefix is None or t >= prefix[i]
    flat = [raw[i][t] for i in range(B) for t in range(T) if trained[i][t]]
    white = ref_whiten(flat) if whiten else flat
    out, it = [[0.0] * T for _ in range(B)], iter(white)
    for i in range(B):
        for t in range(T):
            if trained[i][t]:
                out[i][t] = next(it)
    return out


def random_groups(rng, P, sizes=(1, 2, 3, 5)):
    groups = [g for g in range(P) for _ in range(rng.choice(sizes))]
    rng.shuffle(groups)  # non-contiguous groups
    return groups


# ----------------------------------------------------------------------------------------------------------------
# AEPO: pure parts
# ----------------------------------------------------------------------------------------------------------------
def test_temperature_and_count_follow_the_code():
    for h in [None, 0.0, 0.2, 0.5, 0.5000001, 0.75, 3.1]:
        for target in [0.5, 0.75]:
            assert choose_temperature(h, target=target) == ref_temperature(h, target)
            assert choose_temperature(h, target=target, t_high=1.5, t_low=0.6) == ref_temperature(h, target, 1.5, 0.6)
            for n, limit in [(0, 60), (7, 60), (75, 60), (3, 2), (5, 5)]:
                assert regularizer_count(n, entropy=h, target=target, limit=limit) == ref_count(n, h, target, limit)


@pytest.mark.parametrize("seed", range(6))
def test_positives_equal_the_codes_grpo_threshold(seed):
    rng = random.Random(seed)
    groups = random_groups(rng, 7)
    M = len(groups)
    binary = seed % 2 == 0
    rewards = [float(rng.random() < 0.5) if binary else round(rng.uniform(-1, 2), 3) for _ in range(M)]
    valid = [rng.random() > 0.15 for _ in range(M)]
    for threshold in (0.05, 0.0, 0.7):
        got = select_positives(
            torch.tensor(rewards), torch.tensor(groups), valid=torch.tensor(valid), threshold=threshold
        ).tolist()
        assert got == ref_positives(rewards, groups, valid, threshold)


# ----------------------------------------------------------------------------------------------------------------
# Tiny-model fixtures
# ----------------------------------------------------------------------------------------------------------------
def first_digit_task(**kwargs):
    """arith prompts, reward 1 when the completion starts with a digit (a random model earns it about half the time)."""
    base = arith_task()

    def first_digit(prompts, completions, **_):
        return [float(bool(text) and text[0].isdigit()) for text in completions]

    return Task("xcheck_first_digit", base.train, base.eval, [first_digit])


if "xcheck_first_digit" not in TASKS:
    TASKS.register("xcheck_first_digit")(first_digit_task)

TINY = dict(
    model="random-tiny",
    task="xcheck_first_digit",
    steps=2,
    num_prompts=8,
    num_generations=4,
    max_new_tokens=8,
    eval_prompts=2,
    eval_every=0,
    save_every=0,
    progress=False,
)


def make_trainer(tmp_path_factory, algo):
    out = tmp_path_factory.mktemp(algo)
    return Trainer(resolve(None, {**TINY, "algo": algo, "output_dir": str(out), "name": algo}))


def record_samples(trainer):
    """Wrap the trainer's sampler (main batch) and the context's (strategies) to record every call."""
    calls = []
    sample = trainer._sample

    def recorder(rows, n, **kw):
        out = sample(rows, n, **kw)
        calls.append((list(rows), n, kw.get("temperature"), out))
        return out

    trainer._sample = recorder
    trainer.context = replace(trainer.context, sample_fn=recorder)
    return calls


def ids_of(gen, i):
    return gen.completion_ids[i][gen.completion_mask[i]].tolist()


# ----------------------------------------------------------------------------------------------------------------
# AEPO: the whole rollout (strategy + advantage + filters + selectors) against the code's fit loop
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aepo_trainer(tmp_path_factory):
    trainer = make_trainer(tmp_path_factory, "aepo")
    limit = 3  # not a multiple of G = 4: one main group is only partly overwritten
    (part,) = trainer.preset.rollout
    trainer.preset = replace(trainer.preset, rollout=(Part(part.name, {**part.params, "reinforce_sample_num": limit}),))
    return trainer


@pytest.mark.parametrize(("entropy", "seed"), [(None, 0), (0.1, 1), (0.9, 2), (0.5, 3)])
def test_aepo_batch_matches_the_official_fit_loop(aepo_trainer, entropy, seed):
    trainer = aepo_trainer
    torch.manual_seed(seed)
    key = "rollout.0.aepo"
    trainer.part_state[key] = {} if entropy is None else {"entropy": entropy}
    calls = record_samples(trainer)
    batch = trainer.rollout_batch()
    (main_rows, _, t_main, main), (extra_rows, n, t_extra, extra) = calls
    limit = trainer.preset.rollout[0].params["reinforce_sample_num"]

    # temperature from the previous step's entropy; a quarter of the prompts re-sampled with n = 5
    assert t_main is None and t_extra == ref_temperature(entropy)
    assert extra_rows == main_rows[: len(main_rows) // 4] and n == 5

    # positives: GRPO advantage of the re-sampled batch > 0.05, in batch order; the first k overwrite the batch
    pos = ref_positives(extra.reward.tolist(), extra.group.tolist(), [True] * extra.size)
    k = ref_count(len(pos), entropy, limit=limit)
    N = main.size
    expected_reg = [ids_of(extra.gen, i) for i in pos[:k]]
    expected_main = [ids_of(main.gen, i) for i in range(k, N)]  # batch[sample_num:]

    rollout, adv, gen = batch.rollout, batch.advantages, batch.gen
    rows = rollout.extras["row"].tolist()
    got = [ids_of(gen, r) for r in rows]
    flag = rollout.extras["aepo_reinforce"].tolist()
    assert [g for g, f in zip(got, flag, strict=True) if f] == expected_reg
    assert [g for g, f in zip(got, flag, strict=True) if not f] == expected_main
    assert rollout.batch_size == N  # the batch keeps its size P·G

    # advantages: 1 on every token of a regulariser row; the main rows keep the GRPO advantage of their FULL group,
    # computed before the overwrite (code: _compute_adv(batch) runs before concat([...], batch[sample_num:]))
    full = ref_grpo(main.reward.tolist(), main.group.tolist())
    main_adv = [full[i] for i in range(k, N)]
    got_reg = [adv[j][rollout.mask[j]].tolist() for j in range(len(rows)) if flag[j]]
    got_main = [adv[j][rollout.mask[j]].tolist() for j in range(len(rows)) if not flag[j]]
    assert all(v == 1.0 for row in got_reg for v in row)
    for row, a in zip(got_main, main_adv, strict=True):
        assert row == pytest.approx([a] * len(row), rel=1e-5, abs=1e-6)

    # the entropy for the next step: -masked_mean(log_probs) over the training batch (actor/entropy_loss)
    logp, _ = trainer.context.token_outputs(gen)
    trained = gen.completion_mask[rows]
    h = -(logp[rows][trained]).double().mean().item()
    assert trainer.part_state[key]["entropy"] == pytest.approx(h, rel=1e-5)


def test_aepo_preset_hyper_parameters_are_the_codes():
    p = PRESETS["aepo"]
    (strategy,) = p.rollout
    hp = strategy.params
    assert strategy.name == "aepo"
    assert (hp["target"], hp["t_high"], hp["t_low"]) == (0.5, 1.2, 0.8)
    assert (hp["num_generations"], hp["prompt_fraction"], hp["threshold"]) == (5, 0.25, 0.05)
    assert hp.get("entropy_estimator", "sampled") == "sampled"
    assert p.advantage.name == "aepo" and p.advantage.params.get("reinforce_advantage", 1.0) == 1.0
    assert p.loss.name == "ppo_clip" and p.loss.params == {"epsilon": 0.2, "dual_clip": 3.0}
    assert not p.regularizers and not any(s.name == "kl_reward" for s in p.shaping)  # disable_kl=true
    assert p.trainer["temperature"] == 1.0 and p.trainer["top_p"] == 0.99
    assert p.trainer["num_generations"] == 5 and p.trainer.get("num_iterations", 1) == 1


# ----------------------------------------------------------------------------------------------------------------
# T-PPO: EGAE
# ----------------------------------------------------------------------------------------------------------------
def random_token_batch(rng, B=7, T=9):
    lengths = [rng.randint(1, T) for _ in range(B)]
    mask = [[t < L for t in range(T)] for L in lengths]
    for i in range(B):  # a few holes inside a response (tool output), never the first token
        for t in range(1, lengths[i] - 1):
            if rng.random() < 0.15:
                mask[i][t] = False
    trunc = [rng.random() < 0.5 for _ in range(B)]
    rew = [[rng.uniform(-0.2, 0.2) for _ in range(T)] for _ in range(B)]
    val = [[rng.uniform(-1, 1) for _ in range(T)] for _ in range(B)]
    return mask, trunc, rew, val


@pytest.mark.parametrize("seed", range(5))
def test_egae_equals_the_loop(seed):
    rng = random.Random(seed)
    mask, trunc, rew, val = random_token_batch(rng)
    gamma, lam = [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0), (0.5, 1.0)][seed]
    B, T = len(mask), len(mask[0])
    nan_padded_rew = [[rew[i][t] if mask[i][t] else float("nan") for t in range(T)] for i in range(B)]
    adv, ret = egae(
        torch.tensor(nan_padded_rew, dtype=torch.float64),
        torch.tensor(val, dtype=torch.float64),
        torch.tensor(mask),
        torch.tensor(trunc),
        gamma=gamma,
        lam=lam,
    )
    for i in range(B):
        pos = [t for t in range(T) if mask[i][t]]
        a, r = ref_egae_row([rew[i][t] for t in pos], [val[i][t] for t in pos], not trunc[i], gamma, lam)
        assert adv[i, pos].tolist() == pytest.approx(a, abs=1e-12)
        assert ret[i, pos].tolist() == pytest.approx(r, abs=1e-12)
        assert all(adv[i, t] == 0 and ret[i, t] == 0 for t in range(T) if not mask[i][t])


def test_egae_spec_invariants():
    # γ = λ = 1, V constant over a truncated window, zero rewards: every δ is 0
    v = torch.full((1, 5), 0.37, dtype=torch.float64)
    adv, _ = egae(torch.zeros(1, 5, dtype=torch.float64), v, torch.ones(1, 5, dtype=torch.bool), torch.tensor([True]),
                  gamma=1.0, lam=1.0)  # fmt: skip
    assert adv.abs().max().item() == 0.0
    # hand values, truncated, γ = 0.5, λ = 1: V = [1, 2], r = [0, 1] → δ1 = 1 + 0.5·2 − 2 = 0, δ0 = 0 + 0.5·2 − 1 = 0
    adv, _ = egae(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]]), torch.ones(1, 2, dtype=torch.bool),
                  torch.tensor([True]), gamma=0.5, lam=1.0)  # fmt: skip
    assert adv.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("seed", range(4))
def test_egae_advantage_entry_equals_the_loop(seed):
    rng = random.Random(100 + seed)
    mask, trunc, rew, val = random_token_batch(rng, B=8, T=7)
    B = len(mask)
    lengths = [sum(m) for m in mask]
    groups = [i % 3 for i in range(B)]
    rng.shuffle(groups)
    prefix = [rng.randint(0, max(0, L - 1)) if rng.random() < 0.5 else 0 for L in lengths]
    rollout = Rollout(
        group=torch.tensor(groups),
        mask=torch.tensor(mask),
        reward=torch.tensor([rng.choice([0.0, 1.0]) for _ in range(B)], dtype=torch.float64),
        token_reward=torch.tensor(rew, dtype=torch.float64),
        value=torch.tensor(val, dtype=torch.float64),
        truncated=torch.tensor(trunc),
        extras={"prefix_len": torch.tensor(prefix)},
    )
    options = [
        dict(gamma=1.0, lam=0.95),
        dict(gamma=0.9, lam=0.9, whiten=False),
        dict(gamma=1.0, lam=0.95, truncated_reward=True),
        dict(gamma=1.0, lam=1.0, prefix_key=None),
    ][seed]
    got = ADVANTAGES["egae"](rollout, **options)
    ref = ref_egae_advantage(
        rollout,
        gamma=options["gamma"],
        lam=options["lam"],
        whiten=options.get("whiten", True),
        truncated_reward=options.get("truncated_reward", False),
        prefix=None if "prefix_key" in options else prefix,
    )
    assert got.flatten().tolist() == pytest.approx([a for row in ref for a in row], abs=1e-9)


def test_window_bookkeeping():
    for max_len in (1, 3, 4, 8, 10, 100, 4096):
        for w in (0.01, 0.25, 0.3, 0.5, 1.0):
            l = window_length(max_len, window=w)  # noqa: E741
            assert 1 <= l <= max_len and l == max(1, min(max_len, round(w * max_len)))
    assert window_length(8, window=1.0) == 8  # window 1: plain PPO rollouts
    lengths, trunc = torch.tensor([2, 4, 4, 1]), torch.tensor([True, True, False, False])
    assert unfinished(lengths, trunc, max_len=4).tolist() == [True, False, False, False]


def test_tppo_preset_hyper_parameters():
    p = PRESETS["tppo"]
    (strategy,) = p.rollout
    assert strategy.name == "windows" and strategy.params.get("successive", True) is True
    assert p.advantage.name == "egae" and p.advantage.params == {"gamma": 1.0, "lam": 0.95}
    assert [s.name for s in p.selectors] == ["mask_prefix"]  # the policy trains this step's window only
    assert p.value_loss.get("finished_only") is True  # the critic learns from completed responses only
    assert p.loss.name == "ppo_clip" and p.loss.params["epsilon"] == 0.2


# ----------------------------------------------------------------------------------------------------------------
# T-PPO: windows + successive batching, through the trainer's rollout_batch, over several steps
# ----------------------------------------------------------------------------------------------------------------
def test_tppo_windows_over_steps_match_the_reference(tmp_path_factory):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path_factory, "tppo")
    eos, max_len = trainer.tokenizer.eos_token_id, trainer.config.max_new_tokens
    l = window_length(max_len, window=trainer.preset.rollout[0].params["window"])  # noqa: E741
    assert l == 2
    key = "rollout.0.windows"
    calls = record_samples(trainer)
    pending: list[dict] = []  # the reference's own list of unfinished responses
    seen_long = False
    for _ in range(4):
        calls.clear()
        batch = trainer.rollout_batch()
        (_, _, _, main), *rest = calls
        assert not rest  # continuations go through continue_from, not sample
        N = main.size
        M = min(len(pending), N)
        gen, rollout = batch.gen, batch.rollout
        assert gen.completion_ids.shape[0] == N  # successive batching keeps the batch size
        prefix = rollout.extras["prefix_len"].tolist()
        # new prompts: the first N - M new completions, cut to l tokens
        for i in range(N - M):
            assert prefix[i] == 0 and ids_of(gen, i) == ids_of(main.gen, i)[:l]
        # continued responses: the stored tokens, then at most l new ones, never past max_len
        for j, rec in enumerate(pending[:M]):
            i = N - M + j
            toks = ids_of(gen, i)
            assert prefix[i] == len(rec["tokens"]) and toks[: prefix[i]] == rec["tokens"]
            assert gen.prompt_ids[i][gen.prompt_mask[i]].tolist() == rec["prompt"]
            assert 1 <= len(toks) - prefix[i] <= l and len(toks) <= max_len
        # unfinished = the window was used up without an end (EOS) and the response is shorter than max_len (a response
        # at max_len is complete). A new completion is cut iff it is longer than l; a continuation fills its window iff
        # it sampled l new tokens (fewer: it ended, by EOS or, for the engine, a trailing sampled pad token)
        ref_open = []
        for i in range(N):
            toks = ids_of(gen, i)
            filled = len(ids_of(main.gen, i)) > l if i < N - M else len(toks) - prefix[i] == l
            ref_open.append(filled and eos not in toks and len(toks) < max_len)
            seen_long |= len(toks) == max_len
        assert gen.truncated.tolist() == ref_open
        # the rows are all kept (every row has window tokens): the policy mask is the window, the critic's the whole
        assert rollout.extras["row"].tolist() == list(range(N))
        t = torch.arange(gen.completion_ids.shape[1])
        assert torch.equal(batch.value_mask, gen.completion_mask)
        assert torch.equal(rollout.mask, gen.completion_mask & (t[None, :] >= torch.tensor(prefix)[:, None]))
        # EGAE advantages on the window tokens from the rollout's own fields (values, shaped token rewards)
        full = rollout.replace(mask=batch.value_mask)
        ref = ref_egae_advantage(full, gamma=1.0, lam=0.95, prefix=prefix)
        assert batch.advantages.flatten().tolist() == pytest.approx([a for row in ref for a in row], abs=1e-5)
        # critic targets of finished responses: standard GAE λ-returns over the whole response
        for i in range(N):
            if ref_open[i]:
                continue
            pos = [s for s in range(full.seq_len) if full.mask[i, s]]
            rew = [float(full.token_reward[i, s]) if full.token_reward is not None else 0.0 for s in pos]
            rew[-1] += float(full.reward[i])
            _, ret = ref_egae_row(rew, [float(full.value[i, s]) for s in pos], True, 1.0, 0.95)
            assert batch.returns[i, pos].tolist() == pytest.approx(ret, abs=1e-5)
        # the state carried to the next step: the unfinished responses in batch order, after those still waiting
        pending = [
            {"prompt": gen.prompt_ids[i][gen.prompt_mask[i]].tolist(), "tokens": ids_of(gen, i)}
            for i in range(N)
            if ref_open[i]
        ] + pending[M:]
        stored = trainer.part_state[key]["pending"]
        assert [(r["prompt"], r["tokens"]) for r in stored] == [(r["prompt"], r["tokens"]) for r in pending]
    assert seen_long  # some response was carried through four windows to max_len
