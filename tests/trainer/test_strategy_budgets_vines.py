"""The ``brpo_budgets`` and ``polychromic_vines`` rollout strategies on a random tiny model: one continuation call,
prefixes kept, extras aligned with the rows, reproducible sets, and the trainer keeping given tokens out of the loss."""

import dataclasses

import pytest
import torch

from grpolab.rollout.hf import Generation
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

from .test_loop import TINY


def trainer(tmp_path, algo, **overrides):
    return Trainer(resolve(None, {**TINY, "algo": algo, "output_dir": str(tmp_path), "name": algo, **overrides}))


def counting(ctx):
    """The context with its continue_fn wrapped to count the calls."""
    calls = []

    def continue_fn(*args, **kwargs):
        calls.append(1)
        return ctx.continue_fn(*args, **kwargs)

    return dataclasses.replace(ctx, continue_fn=continue_fn), calls


def hand_batch(t):
    """Three scored completions written by hand: '1'+EOS (ended, length 2), '1234' (truncated at 4), '12'+EOS
    (ended, length 3); the first two of prompt 0, the third of prompt 1."""
    tok, eng = t.tokenizer, t.engine
    rows = [t.task.train[0], t.task.train[1]]
    prompt_ids, prompt_mask = eng.encode([rows[0]["prompt"], rows[0]["prompt"], rows[1]["prompt"]])
    digit = {c: tok.convert_tokens_to_ids(c) for c in "1234"}
    eos, pad = tok.eos_token_id, eng.pad_id
    ids = torch.tensor(
        [
            [digit["1"], eos, pad, pad],
            [digit["1"], digit["2"], digit["3"], digit["4"]],
            [digit["1"], digit["2"], eos, pad],
        ]
    )
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]]).bool()
    gen = Generation(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=ids,
        completion_mask=mask,
        truncated=torch.tensor([False, True, False]),
        texts=eng.decode(ids, mask),
        prompt_index=torch.tensor([0, 0, 1]),
    )
    return t._score(rows, gen)


def test_brpo_budgets_cut_sample_and_score_in_one_call(tmp_path):
    torch.manual_seed(0)
    t = trainer(tmp_path, "brpo")
    sampled = hand_batch(t)
    ctx, calls = counting(t.context)
    marker = t.tokenizer.encode("=", add_special_tokens=False)
    out, metrics = ROLLOUT_STRATEGIES["brpo_budgets"](
        ctx, sampled, num_budgets=2, n_summary=2, summary_tokens=3, summary_marker="=", max_len=4
    )
    assert len(calls) == 1
    # budgets [2, 4]: row 0 ended within both (no summary), row 1 truncated (cuts 2 and 4), row 2 ended at 3
    # (cut 2 only); cells in row-major order, each with 2 summaries
    ex = out.extras
    assert out.size == 3 + 6 and metrics["brpo_summaries"] == 6.0
    assert ex["brpo_budget"].tolist() == [-1, -1, -1, 0, 0, 1, 1, 0, 0]
    assert ex["brpo_source"].tolist() == [0, 1, 2, 1, 1, 1, 1, 2, 2]
    assert ex["brpo_cuts"][:3].tolist() == [[2, 2], [2, 4], [2, 3]]
    assert out.group.tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 1]
    cuts = [2, 2, 4, 4, 2, 2]
    assert ex["prefix_len"].tolist() == [0, 0, 0] + [c + len(marker) for c in cuts]
    ids, mask = out.gen.completion_ids, out.gen.completion_mask
    for k, c in enumerate(cuts):
        row, src = 3 + k, int(ex["brpo_source"][3 + k])
        assert torch.equal(ids[row, :c], sampled.gen.completion_ids[src, :c])
        assert ids[row, c : c + len(marker)].tolist() == marker
        assert 1 <= int(mask[row].sum()) - c - len(marker) <= 3  # at most summary_tokens new tokens
    rbar = ex["brpo_budget_reward"]
    r = out.reward
    torch.testing.assert_close(rbar[0], sampled.reward[0].repeat(2))  # ended within both budgets: own reward
    torch.testing.assert_close(rbar[1], torch.stack([r[3:5].mean(), r[5:7].mean()]))
    torch.testing.assert_close(rbar[2], torch.stack([r[7:9].mean(), sampled.reward[2]]))
    assert metrics["brpo_score_b2"] == pytest.approx(rbar[:3, 0].mean().item())


def test_brpo_budgets_without_a_marker_and_with_nothing_to_summarise(tmp_path):
    t = trainer(tmp_path, "brpo")
    sampled = hand_batch(t)
    out, _ = ROLLOUT_STRATEGIES["brpo_budgets"](
        t.context, sampled, num_budgets=1, n_summary=1, summary_tokens=2, max_len=4
    )
    assert out.extras["brpo_budget"].tolist() == [-1, -1, -1, 0]  # only the truncated row needs its answer
    assert out.extras["prefix_len"].tolist() == [0, 0, 0, 4]
    ended = sampled.take(torch.tensor([0, 2]))
    same, metrics = ROLLOUT_STRATEGIES["brpo_budgets"](t.context, ended, num_budgets=1, max_len=4)
    assert same.size == 2 and metrics["brpo_summaries"] == 0.0
    torch.testing.assert_close(same.extras["brpo_budget_reward"][:, 0], ended.reward)
    with pytest.raises(ValueError, match="num_budgets"):
        ROLLOUT_STRATEGIES["brpo_budgets"](t.context, sampled, num_budgets=5, max_len=4)


def test_polychromic_vines_sample_sets_reproducibly_in_one_call(tmp_path):
    t = trainer(tmp_path, "polychromic")
    rows = [t.task.train[0], t.task.train[1]]
    torch.manual_seed(3)
    sampled = t._sample(rows, 3)
    ctx, calls = counting(t.context)
    hp = dict(num_states=2, num_continuations=4, num_sets=5, set_size=3, max_len=TINY["max_new_tokens"])
    torch.manual_seed(4)
    out, metrics = ROLLOUT_STRATEGIES["polychromic_vines"](ctx, sampled, **hp)
    assert len(calls) == 1
    K, N = 2 * 2, 4
    ex = out.extras
    assert out.size == 6 + K * N and metrics["poly_continuations"] == K * N
    assert ex["poly_state"].tolist() == [-1] * 6 + [k for k in range(K) for _ in range(N)]
    assert not ex["poly_member"][:6].any() and (ex["prefix_len"][:6] == 0).all()
    member = ex["poly_member"][6:].view(K, N, 5)
    assert (member.sum(1) == 3).all()  # every set: 3 continuations of its own state
    # the two states of prompt 0 come first, then those of prompt 1; continuations keep the prompt's group
    assert out.group[6:].tolist() == [0] * 8 + [1] * 8
    ids, prefix = out.gen.completion_ids, ex["prefix_len"]
    for k in range(K):
        first = 6 + k * N
        c = int(prefix[first])
        assert (prefix[first : first + N] == c).all()  # one state: one prefix for its N continuations
        assert all(torch.equal(ids[first + n, :c], ids[first, :c]) for n in range(N))
        sources = [j for j in range(6) if int(sampled.group[j]) == int(out.group[first])]
        lengths = sampled.gen.completion_mask.sum(-1)
        assert any(c < lengths[j] and torch.equal(ids[first, :c], sampled.gen.completion_ids[j, :c]) for j in sources)
    texts, outcome = out.gen.texts[6:], ex["poly_outcome"][6:]
    for a in range(K * N):
        for b in range(K * N):
            same_state = a // N == b // N
            assert (outcome[a] == outcome[b]) == (same_state and texts[a].strip() == texts[b].strip())
    torch.manual_seed(4)
    again, _ = ROLLOUT_STRATEGIES["polychromic_vines"](t.context, sampled, **hp)
    assert torch.equal(again.extras["poly_member"], ex["poly_member"]) and again.gen.texts == out.gen.texts
    with pytest.raises(ValueError, match="set_size"):
        ROLLOUT_STRATEGIES["polychromic_vines"](t.context, sampled, num_continuations=2, set_size=3, max_len=4)


def test_polychromic_vines_keep_the_generation_limit(tmp_path):
    """A vine state is a state of the same episode: a continuation from it holds at most max_len tokens in total
    (prefix included); one that ran past it is cut back, marked truncated and scored on the cut text."""
    t = trainer(tmp_path, "polychromic")
    torch.manual_seed(0)
    sampled = t._sample([t.task.train[0], t.task.train[1]], 3)
    L = TINY["max_new_tokens"]
    torch.manual_seed(1)
    out, _ = ROLLOUT_STRATEGIES["polychromic_vines"](
        t.context, sampled, num_states=3, num_continuations=4, num_sets=4, set_size=2, max_len=L
    )
    N = sampled.size
    lengths = out.gen.completion_mask.sum(-1)
    assert (lengths <= L).all()
    prefix = out.extras["prefix_len"]
    assert (prefix[N:] > 0).any()  # deep states were drawn, so continuations had to be cut back
    at_limit = (lengths[N:] == L).nonzero().flatten() + N
    rescored = t._score(out.rows, out.gen.take(at_limit))
    torch.testing.assert_close(out.reward[at_limit], rescored.reward)  # each reward is that of its kept text
    truncated = out.gen.truncated
    assert (lengths[truncated] == L).all()  # a truncated continuation stopped at the limit, not beyond it
    assert (truncated[N:] & (prefix[N:] > 0)).any()  # continuations of deep states were cut back and marked


@pytest.mark.parametrize("algo", ["brpo", "polychromic"])
def test_the_trainer_keeps_given_prefixes_out_of_the_loss(tmp_path, algo):
    torch.manual_seed(0)
    t = trainer(tmp_path, algo)
    batch = t.rollout_batch()
    r = batch.rollout
    prefix = r.extras["prefix_len"]
    t_idx = torch.arange(r.seq_len)[None, :]
    assert not (r.mask & (t_idx < prefix[:, None])).any()  # no given token is trained
    assert (prefix > 0).any()  # continuations joined the batch
    assert torch.isfinite(batch.advantages).all() and (batch.advantages[~r.mask] == 0).all()
    metrics = t.update(batch)
    assert torch.isfinite(torch.tensor(metrics["loss"]))
