"""Independent cross-check of ICPO, Scaf-GRPO, DeepVideo-R1's difficulty-aware augmentation and DR-PO against
plain-loop reference implementations written from the papers / official code, not from grpolab's implementation:

- ICPO (arXiv 2510.26519; code Celine-hxy/ICPO ``verl/recipe/icpo``): ``utils/core_algos.py::
  compute_icpo_policy_loss`` (on-policy tokens: verl's dual-clip PPO; ``hinted`` tokens: ``-A * p / (p + 0.1)``
  with ``p = exp(clamp(log_prob, -20, 20))``, no clip; ``agg_loss`` token-mean), ``utils/reward_score.py::
  compute_score_icpo_bonus`` / ``decay_by_step(method="linear", T=400)`` (correct hinted: ``1 + beta * max(0, 1 -
  t / T)``), ``trainer/icpo_trainer.py::_reorganize_batch`` (the demonstration prompt is swapped back to the plain
  question and the reward recomputed). Expert region reject sampling (keep an IEF trajectory iff reward >= delta) is
  from the paper (the code enforcing it was not found).
- Scaf-GRPO (arXiv 2510.19807; code dvlab-research/Scaf-GRPO ``hint_mix_grpo/trainer/ray_trainer.py::fit``):
  trigger ``global_steps > warmup_steps`` (global_steps from 1), true-hard ``(uid_rewards == 0).all()``, one
  rollout per level of ``build_new_message``, ``min_hint_level`` among ``r > 0`` then ``candidate_indices[0]``,
  ``replace_num = 1``: the FIRST batch row of the uid gets all tensors of the chosen hinted rollout (its hinted
  prompt included, ``replace_hint_prompt=False`` in ``sh/hint_mix_grpo/bs256_6k_mix.sh``).
- DeepVideo-R1 (arXiv 2506.07464; spec part A section 5, no code): ``dR = replay-buffer mean - group mean``; the
  scalings are grpolab's documented UNVERIFIED choices, checked as documented.
- DR-PO (arXiv 2404.08495; code Cornell-RL/drpo ``src/tldr/drpo.py`` and ``RollinProcessor`` in Cornell-RL/tril
  ``src/tril/utils/logit_processors.py``): reset with prob ``beta`` per row, roll-in = a uniformly chosen row of
  ``tril(ones)[: L - 1]`` (so h uniform on {1..L-1}; no roll-in when L < 2); ``pg_loss = sum(max(pg1, pg2) *
  ~rollin) / sum(~rollin)``.

Strategies run end to end on a random tiny model with hand-made reward functions (so which completions are correct
is known) and the output batches are checked for the framework invariants (extras aligned with rows, groups 0..P-1
present, prompt ids). Values and gradients are compared in float64 to 1e-9.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.mixed_policy import annealed_expert_bonus, expert_region_keep, regularized_importance_weight
from grpolab.core.reset import reset_groups, rollin_lengths
from grpolab.core.scaffold import (
    augmentation_strength,
    buffer_reference,
    difficulty_gap,
    first_failing_member,
    hint_level_for,
    minimal_level_choice,
    noise_count,
    scaffold_replacement,
    true_hard_groups,
    update_buffer,
)
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.models import random_tiny_model
from grpolab.rollout.hf import HFEngine
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer, reward_inputs

TOL = 1e-9  # float64 values and gradients


# ================================================================================================ helpers
def shuffled_groups(gen: torch.Generator, sizes: list[int]) -> torch.Tensor:
    """Group ids with the given sizes, in a random (non-contiguous) order."""
    g = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])  # [B]
    return g[torch.randperm(len(g), generator=gen)]


def right_padded(gen: torch.Generator, B: int, T: int) -> torch.Tensor:
    lengths = torch.randint(1, T + 1, (B,), generator=gen).tolist()
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i, L in enumerate(lengths):
        mask[i, :L] = True
    return mask


def valid_prompt_ids(gen, i: int) -> list[int]:
    return gen.prompt_ids[i][gen.prompt_mask[i]].tolist()


def valid_completion_ids(gen, i: int) -> list[int]:
    return gen.completion_ids[i][gen.completion_mask[i]].tolist()


def check_batch_invariants(out: Sampled, num_groups: int) -> None:
    """What the trainer relies on: every per-completion field / extra aligned with the N rows, groups 0..P'-1 all
    present, the fixed extras of the right dtype."""
    N = out.size
    assert out.gen.completion_ids.shape[0] == out.gen.prompt_ids.shape[0] == N
    assert len(out.gen.texts) == N and out.gen.prompt_index.shape == (N,)
    for name in ("reward", "valid", "accuracy", "group"):
        assert getattr(out, name).shape == (N,), name
    assert out.rewards.shape[0] == N
    for key, value in out.extras.items():
        assert len(value) == N, key
    assert sorted(set(out.group.tolist())) == list(range(num_groups))
    assert out.extras["off_policy"].dtype == torch.bool
    if "prefix_len" in out.extras:  # optional: only strategies that give tokens write it
        assert out.extras["prefix_len"].dtype == torch.long


def make_ctx(reward_fn, *, seed: int = 0, max_new_tokens: int = 3, num_generations: int = 4) -> RolloutContext:
    """A RolloutContext over a random tiny model scored by ``reward_fn(prompts, completions, **columns)`` (TRL
    convention; accuracy = reward >= 1). Every ``sample`` call is recorded in ``ctx.calls`` as (rows, n, Sampled)."""
    torch.manual_seed(seed)
    model, tok = random_tiny_model(seed=seed)
    engine = HFEngine(tok, max_new_tokens=max_new_tokens)
    calls = []

    def score(rows, gen):
        prompts, completions, columns = reward_inputs(rows, gen)
        reward = torch.tensor(reward_fn(prompts, completions, **columns), dtype=torch.float32)  # [N]
        return Sampled(
            rows=rows,
            gen=gen,
            reward=reward,
            rewards=reward[:, None],
            reward_names=("r",),
            valid=torch.ones(len(reward), dtype=torch.bool),
            accuracy=(reward >= 1).float(),
            group=gen.prompt_index,
        )

    def sample(rows, n, *, greedy=False, temperature=None, max_new_tokens=None):
        gen = engine.generate(
            model,
            [r["prompt"] for r in rows],
            num_generations=n,
            greedy=greedy,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
        )
        out = score(rows, gen)
        calls.append((rows, n, out))
        return out

    def continue_fn(gen, index, cut, **kw):
        return engine.continue_from(model, gen, index, cut, **kw)

    ctx = RolloutContext(
        sample_fn=sample,
        score_fn=score,
        continue_fn=continue_fn,
        outputs_fn=None,
        model=model,
        optimizer=None,
        pad_id=engine.pad_id,
        tokenizer=tok,
        device=torch.device("cpu"),
        num_generations=num_generations,
        max_new_tokens=max_new_tokens,
        temperature=1.0,
    )
    ctx.calls = calls
    return ctx


def main_batch(ctx, rows, n, *, group_map=None, seed=0) -> Sampled:
    """n completions per row, rows shuffled (non-contiguous groups) and groups renamed by ``group_map``."""
    sampled = ctx.sample(rows, n)
    ctx.calls.clear()
    perm = torch.randperm(sampled.size, generator=torch.Generator().manual_seed(seed))
    sampled = sampled.take(perm)
    if group_map is not None:
        sampled = replace(sampled, group=torch.tensor(group_map)[sampled.gen.prompt_index])
    return sampled


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ============================================================================== ICPO: the mixed-policy loss
def ref_mixed_token(logp, old, A, off, *, eps_low, eps_high, c, lam):
    """Per-token loss and d loss / d logp, from ICPO's compute_icpo_policy_loss, as scalar Python.

    off-policy ("hinted"): l = -A p/(p + lam), p = e^logp; dl/dlogp = -A lam p / (p + lam)^2.
    on-policy: verl dual-clip PPO: l1 = max(-A r, -A clip(r, 1-eps_low, 1+eps_high)); A < 0: l = min(l1, -c A).
    """
    if off:
        p = math.exp(logp)
        return -A * p / (p + lam), -A * lam * p / (p + lam) ** 2
    r = math.exp(logp - old)
    unclipped, clipped = -A * r, -A * min(max(r, 1 - eps_low), 1 + eps_high)
    value, grad = (unclipped, -A * r) if unclipped >= clipped else (clipped, 0.0)
    if c is not None and A < 0 and value > -c * A:
        value, grad = -c * A, 0.0
    return value, grad


def ref_aggregate_weights(mask, mode, *, num_tokens, num_seqs, norm_constant):
    """w[i][t] with loss = sum_{valid} w * l (grpolab's four aggregation modes, as loops)."""
    B, T = mask.shape
    lengths = [int(mask[i].sum()) for i in range(B)]
    w = [[0.0] * T for _ in range(B)]
    for i in range(B):
        for t in range(lengths[i]):
            if mode == "token_mean":
                w[i][t] = 1.0 / num_tokens
            elif mode == "seq_mean_token_mean":
                w[i][t] = 1.0 / (lengths[i] * num_seqs)
            elif mode == "seq_mean_token_sum":
                w[i][t] = 1.0 / num_seqs
            else:  # seq_sum_const
                w[i][t] = 1.0 / (norm_constant * num_seqs)
    return w


def ref_mixed_loss(logp, old, adv, mask, off, mode, *, num_tokens, num_seqs, norm_constant, **hp):
    """Loss value and gradient [B, T] of the whole batch, by loops."""
    B, T = mask.shape
    w = ref_aggregate_weights(mask, mode, num_tokens=num_tokens, num_seqs=num_seqs, norm_constant=norm_constant)
    total, grad = 0.0, torch.zeros(B, T)
    for i in range(B):
        for t in range(T):
            if not mask[i, t]:
                continue
            o = None if off[i] else float(old[i, t])
            value, g = ref_mixed_token(float(logp[i, t]), o, float(adv[i, t]), bool(off[i]), **hp)
            total += w[i][t] * value
            grad[i, t] = w[i][t] * g
    return total, grad


def official_icpo_loss(old_log_prob, log_prob, advantages, response_mask, hinted, *, clip=0.2, clip_c=3.0):
    """compute_icpo_policy_loss transcribed line by line (token-mean agg_loss), torch, with autograd."""
    T = response_mask.shape[-1]
    hinted = hinted.unsqueeze(-1).expand(-1, T)
    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0))
    hinted_ratio = torch.exp(torch.clamp(log_prob, min=-20.0, max=20.0))
    hinted_ratio = hinted_ratio / (hinted_ratio + 0.1)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * clip_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    hinted_pg_losses = -advantages * hinted_ratio
    hinted = hinted.to(pg_losses.dtype)
    pg_losses = pg_losses * (1 - hinted) + hinted_pg_losses * hinted
    m = response_mask.to(pg_losses.dtype)
    return (pg_losses * m).sum() / m.sum()  # verl agg_loss "token-mean"


def mixed_batch(seed: int, *, B: int = 9, T: int = 6, off_prob: float = 0.4, garbage: bool = True):
    """Random unequal masks, shuffled unequal groups, off-policy rows, ratios spread beyond the clip band and past
    the dual clip; NaN / huge garbage where the loss must not look (masked positions, off-policy rows' old_logp)."""
    g = torch.Generator().manual_seed(seed)
    mask = right_padded(g, B, T)
    group = shuffled_groups(g, [3, 1, 2, B - 6])
    off = torch.rand(B, generator=g) < off_prob
    off[0], off[1] = True, False  # both kinds present
    probs = 0.02 + 0.96 * torch.rand(B, T, generator=g)
    logp = probs.log()  # [B, T]
    old = logp - 1.6 * torch.randn(B, T, generator=g)  # ratios from ~0.05 to ~20
    seq_adv = torch.randn(B, generator=g)
    adv = seq_adv[:, None] + 0.3 * torch.randn(B, T, generator=g)  # per-token advantages, both signs
    if garbage:
        logp = torch.where(mask, logp, torch.full_like(logp, -3.0))  # a model's log-prob at padding: finite
        old = torch.where(mask, old, torch.full_like(old, math.nan))
        # "old_logp is not read for them" (the Rollout contract forbids NaN there; a ratio of e^-40 would show)
        old = torch.where(off[:, None] & mask, torch.full_like(old, 40.0), old)
        adv = torch.where(mask, adv, torch.full_like(adv, math.nan))
    rollout = Rollout(group=group, mask=mask, reward=torch.zeros(B), old_logp=old, extras={"off_policy": off.clone()})
    return rollout, logp, adv


HP = dict(eps_low=0.2, eps_high=0.28, c=3.0, lam=0.1)
LOSS_HP = dict(epsilon_low=0.2, epsilon_high=0.28, dual_clip=3.0, lam=0.1)
MODES = ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_sum_const"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_policy_matches_loop_reference_value_and_gradient(float64, mode, seed):
    rollout, logp0, adv = mixed_batch(seed)
    counts = dict(num_tokens=float(rollout.mask.sum()) + 3.0, num_seqs=float(rollout.batch_size) + 1.0)
    counts["norm_constant"] = 8.0  # global counts differ from the local ones on purpose
    logp = logp0.clone().requires_grad_(True)
    loss, _ = POLICY_LOSSES["mixed_policy"](logp, rollout, adv, aggregation=mode, **counts, **LOSS_HP)
    loss.backward()
    off = rollout.extras["off_policy"]
    ref_value, ref_grad = ref_mixed_loss(logp0, rollout.old_logp, adv, rollout.mask, off, mode, **counts, **HP)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(ref_value, abs=TOL)
    assert torch.isfinite(logp.grad).all()
    assert torch.allclose(logp.grad, ref_grad, atol=TOL, rtol=0)
    assert (logp.grad[~rollout.mask] == 0).all()  # masked positions: exactly no gradient


def test_mixed_policy_matches_the_official_code_transcription(float64):
    """ICPO's own compute_icpo_policy_loss (clip 0.2/0.2, clip_ratio_c 3, lambda 0.1, token-mean) on in-range
    values (|log ratio| < 20, log p > -20, where the code's clamps are inactive)."""
    for seed in range(3):
        rollout, logp0, adv = mixed_batch(seed, garbage=False)
        off = rollout.extras["off_policy"]
        a = logp0.clone().requires_grad_(True)
        loss, metrics = POLICY_LOSSES["mixed_policy"](
            a, rollout, adv, aggregation="token_mean", epsilon_low=0.2, epsilon_high=0.2, dual_clip=3.0, lam=0.1
        )
        loss.backward()
        b = logp0.clone().requires_grad_(True)
        official = official_icpo_loss(rollout.old_logp, b, adv, rollout.mask, off)
        official.backward()
        assert loss.item() == pytest.approx(official.item(), abs=TOL)
        assert torch.allclose(a.grad, b.grad, atol=TOL, rtol=0)
        # the code's metrics: pg_clipfrac / pg_clipfrac_lower over the on-policy ((~hinted) * mask) tokens
        on = rollout.mask & ~off[:, None]
        ratio = torch.exp(logp0 - rollout.old_logp)
        pg1, pg2 = -adv * ratio, -adv * ratio.clamp(0.8, 1.2)
        clipfrac = (pg2 > pg1)[on].double().mean().item()
        lower = ((torch.maximum(pg1, pg2) > -adv * 3.0) & (adv < 0))[on].double().mean().item()
        assert metrics["clip_frac"] == pytest.approx(clipfrac, abs=1e-12)
        assert metrics["dual_clip_frac"] == pytest.approx(lower, abs=1e-12)
        assert metrics["off_policy_frac"] == pytest.approx(
            (rollout.mask & off[:, None]).sum().item() / rollout.mask.sum().item()
        )


@pytest.mark.parametrize("mode", MODES)
def test_mixed_policy_equals_dual_clip_ppo_when_nothing_is_off_policy(float64, mode):
    for seed in range(3):
        rollout, logp0, adv = mixed_batch(seed, garbage=False)
        plain = rollout.replace(extras={"off_policy": torch.zeros(rollout.batch_size, dtype=torch.bool)})
        counts = dict(num_tokens=float(rollout.mask.sum()), num_seqs=float(rollout.batch_size), norm_constant=8.0)
        results = []
        for name, r, hp in (
            ("mixed_policy", plain, dict(epsilon_low=0.2, epsilon_high=0.2, dual_clip=3.0, lam=0.1)),
            ("mixed_policy", plain.replace(extras={}), dict(epsilon_low=0.2, epsilon_high=0.2, dual_clip=3.0)),
            ("ppo_clip", plain, dict(epsilon=0.2, dual_clip=3.0)),
        ):
            logp = logp0.clone().requires_grad_(True)
            loss, metrics = POLICY_LOSSES[name](logp, r, adv, aggregation=mode, **counts, **hp)
            loss.backward()
            results.append((loss.item(), logp.grad.clone(), metrics))
        (v0, g0, m0), (v1, g1, _), (v2, g2, m2) = results
        assert v0 == pytest.approx(v2, abs=TOL) and v1 == pytest.approx(v2, abs=TOL)
        assert torch.allclose(g0, g2, atol=TOL, rtol=0) and torch.allclose(g1, g2, atol=TOL, rtol=0)
        for key in ("clip_frac", "approx_kl"):
            if key in m2:
                assert m0[key] == pytest.approx(m2[key], abs=1e-9), key


@pytest.mark.parametrize("mode", MODES)
def test_mixed_policy_micro_batches_sum_to_the_batch_loss(float64, mode):
    rollout, logp0, adv = mixed_batch(5, B=10)
    counts = dict(num_tokens=float(rollout.mask.sum()), num_seqs=float(rollout.batch_size), norm_constant=6.0)
    logp = logp0.clone().requires_grad_(True)
    full, _ = POLICY_LOSSES["mixed_policy"](logp, rollout, adv, aggregation=mode, **counts, **LOSS_HP)
    full.backward()
    split = logp0.clone().requires_grad_(True)
    total = 0.0
    for rows in (torch.tensor([0, 3, 4, 9]), torch.tensor([1, 2, 5, 6, 7, 8])):
        keep = torch.zeros(rollout.batch_size, dtype=torch.bool)
        keep[rows] = True
        part, _ = POLICY_LOSSES["mixed_policy"](
            split[keep], rollout.select(keep), adv[keep], aggregation=mode, **counts, **LOSS_HP
        )
        part.backward()
        total += part.item()
    assert total == pytest.approx(full.item(), abs=TOL)
    assert torch.allclose(split.grad, logp.grad, atol=TOL, rtol=0)


def test_regularized_importance_weight_is_monotone_bounded_with_the_stated_gradient(float64):
    p = torch.linspace(1e-4, 1.0, 401)
    for lam in (0.01, 0.1, 0.5):
        logp = p.log().requires_grad_(True)
        f = regularized_importance_weight(logp, lam=lam)
        f.sum().backward()
        assert torch.allclose(f, p / (p + lam), atol=1e-12, rtol=0)
        assert (f[1:] > f[:-1]).all() and (f < 1 / (1 + lam) + 1e-12).all() and (f < 1).all()
        assert torch.allclose(logp.grad, lam * p / (p + lam) ** 2, atol=1e-12, rtol=0)  # df/dlogp


# ============================================================================== ICPO: bonus and reject rule
def ref_decay_by_step_linear(step_t, T=400):
    """reward_score.py::decay_by_step(method="linear")."""
    return max(0.0, 1 - step_t / T)


def ref_icpo_bonus_score(correct, hinted, step_t, beta=1.0, T=400):
    """compute_score_icpo_bonus with current_step = step_t."""
    if correct and hinted:
        return 1.0 + beta * ref_decay_by_step_linear(step_t, T)
    return 1.0 if correct else 0.0


@pytest.mark.parametrize("step", [0, 1, 57, 100, 200, 399, 400, 401, 1000])
@pytest.mark.parametrize(("beta", "T"), [(1.0, 400), (0.5, 400), (2.0, 10)])
def test_annealed_bonus_is_the_codes_linear_decay(step, beta, T):
    bonus = annealed_expert_bonus(step, beta=beta, anneal_steps=T)
    assert bonus == pytest.approx(beta * ref_decay_by_step_linear(step, T), abs=1e-12)
    # a correct hinted trajectory's reward, and from step T on it equals an on-policy correct one
    assert 1.0 + bonus == pytest.approx(ref_icpo_bonus_score(True, True, step, beta, T), abs=1e-12)
    if step >= T:
        assert 1.0 + bonus == ref_icpo_bonus_score(True, False, step, beta, T)


def test_expert_region_keep_matches_reference_rule():
    g = torch.Generator().manual_seed(0)
    reward = torch.randint(0, 5, (40,), generator=g).double() / 2  # 0, 0.5, ..., 2: many exact ties with delta
    reward[[3, 17]] = math.nan
    valid = torch.rand(40, generator=g) < 0.8
    for delta in (1.0, 0.5, 1.5, 0.0):
        expected = [
            (not math.isnan(r)) and r >= delta and bool(v) for r, v in zip(reward.tolist(), valid.tolist(), strict=True)
        ]
        assert expert_region_keep(reward, valid, delta=delta).tolist() == expected
        expected_all = [(not math.isnan(r)) and r >= delta for r in reward.tolist()]
        assert expert_region_keep(reward, delta=delta).tolist() == expected_all


# ============================================================================== ICPO: the strategy end to end
ICPO_ROWS = [
    {"prompt": "12+30=", "answer": "42"},
    {"prompt": "5-7=", "answer": "-2"},
    {"prompt": "60+6=", "answer": "66"},
    {"prompt": "9+9=", "answer": "18"},
]


def plain_prompt_digit_first(prompts, completions, **_):
    """1 iff the prompt is a plain question (no space: a demonstration prompt has one) and the completion starts
    with a digit. IEF completions are therefore worth 0 as scored under their demonstration prompt and earn 1 only
    if they are scored again under the plain question (the code's compute_reward after _reorganize_batch)."""
    return [1.0 if " " not in p and c[:1].isdigit() else 0.0 for p, c in zip(prompts, completions, strict=True)]


@pytest.mark.parametrize("step", [0, 100, 400])
def test_icpo_expert_batch_invariants_swap_back_reject_and_bonus(step):
    ctx = make_ctx(plain_prompt_digit_first, seed=3, max_new_tokens=3)
    group_map = [2, 0, 3, 1]
    sampled = main_batch(ctx, ICPO_ROWS, 3, group_map=group_map, seed=1)
    out, metrics = ROLLOUT_STRATEGIES["icpo_expert"](
        ctx, sampled, step=step, total_steps=1000, state={}, n_off=3, delta=1.0, beta=1.0, anneal_steps=400
    )
    # ONE generation call, under demonstration prompts that end with the plain question
    assert len(ctx.calls) == 1
    demo_rows, n, ief = ctx.calls[0]
    assert n == 3
    ief_src = [next(j for j, r in enumerate(ICPO_ROWS) if r["prompt"] == d["prompt"].split(" ")[-1]) for d in demo_rows]
    ief_src = [ief_src[k] for k in ief.gen.prompt_index.tolist()]  # per IEF completion: its original row
    for d in demo_rows:
        question = d["prompt"].split(" ")[-1]
        assert d["prompt"] != question and d["prompt"].endswith(" " + question)
        own = next(r for r in ICPO_ROWS if r["prompt"] == question)
        assert own["prompt"] + own["answer"] not in d["prompt"]  # never its own solution
    assert all(r == 0.0 for r in ief.reward.tolist())  # worthless under the demonstration prompt
    # reject sampling under the plain prompt: kept iff the completion starts with a digit
    right = [t[:1].isdigit() for t in ief.gen.texts]
    assert 0 < sum(right) < len(right)  # this seed gives both outcomes
    N = sampled.size
    assert out.size == N + sum(right)
    check_batch_invariants(out, 4)
    assert out.extras["off_policy"].tolist() == [False] * N + [True] * sum(right)
    assert "prefix_len" not in out.extras or out.extras["prefix_len"].tolist() == [0] * out.size
    # the on-policy part is untouched
    for i in range(N):
        assert valid_completion_ids(out.gen, i) == valid_completion_ids(sampled.gen, i)
        assert valid_prompt_ids(out.gen, i) == valid_prompt_ids(sampled.gen, i)
    assert out.reward[:N].tolist() == sampled.reward.tolist() and out.group[:N].tolist() == sampled.group.tolist()
    # appended rows: the kept IEF completions, swapped back to the plain question, in their original group
    kept = [k for k in range(len(right)) if right[k]]
    bonus = ref_decay_by_step_linear(step, 400)
    for i, k in zip(range(N, out.size), kept, strict=True):
        src = ief_src[k]
        assert out.gen.prompt_index[i].item() == src and out.group[i].item() == group_map[src]
        same = next(j for j in range(N) if sampled.gen.prompt_index[j].item() == src)
        assert valid_prompt_ids(out.gen, i) == valid_prompt_ids(sampled.gen, same)  # the original prompt ids
        assert valid_prompt_ids(ief.gen, k) != valid_prompt_ids(out.gen, i)
        assert valid_completion_ids(out.gen, i) == valid_completion_ids(ief.gen, k)
        assert out.reward[i].item() == pytest.approx(1.0 + bonus)  # R = 1 + beta * max(0, 1 - t / T)
        assert out.accuracy[i].item() == 1.0
    if step >= 400:  # annealed away: a hinted correct rollout counts as an on-policy correct one
        assert out.reward[N:].tolist() == [1.0] * sum(right)
    assert metrics["ief_accept_rate"] == pytest.approx(sum(right) / len(right))


def test_icpo_through_the_trainer_off_policy_rows_get_the_regularised_weight_gradient(tmp_path, float64):
    """trainer.rollout_batch (icpo preset) then the preset's loss: every IEF row is trained as a continuation of the
    plain prompt and its tokens get d loss / d logp = -A lam p / (p + lam)^2 / N_tok; on-policy rows, 1 iteration:
    -A / N_tok (ratio 1)."""
    if "xcheck_always_right" not in TASKS:
        base = arith_task()
        always = lambda prompts, completions, **_: [1.0] * len(completions)  # noqa: E731
        TASKS.register("xcheck_always_right")(lambda **_: Task("xcheck_always_right", base.train, base.eval, [always]))
    config = resolve(
        None,
        dict(model="random-tiny", task="xcheck_always_right", algo="icpo", num_prompts=3, num_generations=2,
             max_new_tokens=3, progress=False, output_dir=str(tmp_path), name="icpo", eval_every=0),
    )  # fmt: skip
    torch.set_default_dtype(torch.float32)  # the model runs in float32
    trainer = Trainer(config)
    batch = trainer.rollout_batch()
    torch.set_default_dtype(torch.float64)
    r, gen = batch.rollout, batch.gen
    off = r.extras["off_policy"]
    assert off.shape == (r.batch_size,) and int(off.sum()) == 3  # one accepted IEF row per prompt
    rows = r.extras["row"]
    for i in torch.nonzero(off).flatten().tolist():
        src = int(gen.prompt_index[rows[i]])
        others = [j for j in range(gen.prompt_index.shape[0]) if int(gen.prompt_index[j]) == src and j != rows[i]]
        assert others and all(valid_prompt_ids(gen, j) == valid_prompt_ids(gen, int(rows[i])) for j in others)
        assert r.reward[i].item() == pytest.approx(2.0)  # step 0: 1 + beta
        # the bonus reaches GRPO on the mixed group: the IEF row (R = 2) is above its group's on-policy rows (R = 1)
        group = r.group == r.group[i]
        assert (batch.advantages[i][r.mask[i]] > 0).all()
        assert all((batch.advantages[j][r.mask[j]] < 0).all() for j in torch.nonzero(group & ~off).flatten().tolist())
    preset = PRESETS["icpo"]
    lam = preset.loss.params["lam"]
    logp0 = torch.log(0.05 + 0.9 * torch.rand(r.mask.shape, generator=torch.Generator().manual_seed(0))).double()
    logp = logp0.clone().requires_grad_(True)
    n_tok = float(r.mask.sum())
    rollout = r.replace(old_logp=logp0.clone())  # one iteration: old = current (the trainer's on-policy case)
    loss, _ = POLICY_LOSSES[preset.loss.name](
        logp, rollout, batch.advantages.double(), aggregation=preset.aggregation, num_tokens=n_tok,
        num_seqs=float(r.batch_size), norm_constant=3.0, **preset.loss.params,
    )  # fmt: skip
    loss.backward()
    p, A = logp0.exp(), batch.advantages.double()
    expected = torch.where(off[:, None], -A * lam * p / (p + lam) ** 2, -A) / n_tok
    expected = torch.where(r.mask, expected, torch.zeros_like(expected))
    assert torch.allclose(logp.grad, expected, atol=TOL, rtol=0)


# ============================================================================== Scaf-GRPO: pure functions
def ref_scaf_plan(acc, group, hint_acc, hint_level, hint_group):
    """ray_trainer.py::fit with replace_num = 1, as loops over uids (groups). Returns {group: (row, hinted index)}
    and the set of true-hard groups."""
    groups = sorted(set(group))
    hard = {g for g in groups if all(acc[i] == 0 for i in range(len(acc)) if group[i] == g)}  # (uid_rewards == 0).all()
    plan = {}
    for g in sorted(hard):
        idx = [k for k in range(len(hint_acc)) if hint_group[k] == g]  # uid_indices, in hinted batch order
        rewards = [hint_acc[k] for k in idx]
        if not any(r == 1 for r in rewards):  # elif (uid_rewards == 1).any()
            continue
        valid = [j for j, r in enumerate(rewards) if r > 0]
        min_level = min(hint_level[idx[j]] for j in valid)
        selected = next(j for j in valid if hint_level[idx[j]] == min_level)  # candidate_indices[0]
        first_row = next(i for i in range(len(acc)) if group[i] == g)  # first batch row of the uid
        plan[g] = (first_row, idx[selected])
    return plan, hard


@pytest.mark.parametrize("seed", range(8))
def test_scaffold_replacement_matches_the_codes_plan(seed):
    rng = random.Random(seed)
    P = 7
    sizes = [rng.randint(1, 5) for _ in range(P)]
    group = shuffled_groups(torch.Generator().manual_seed(seed), sizes)
    solve = [rng.choice([0.0, 0.0, 0.3, 0.8]) for _ in range(P)]  # many all-zero (true-hard) groups
    acc = [1.0 if rng.random() < solve[g] else 0.0 for g in group.tolist()]
    hint_group, hint_level, hint_acc = [], [], []
    for g in range(P):  # hinted rollouts also for groups that are not hard: they must be ignored
        levels = list(range(1, rng.randint(1, 8) + 1))
        rng.shuffle(levels)  # the hinted batch need not be in level order
        for lv in levels:
            hint_group.append(g)
            hint_level.append(lv)
            hint_acc.append(1.0 if rng.random() < 0.35 else 0.0)
    order = list(range(len(hint_group)))
    rng.shuffle(order)  # interleave groups in the hinted batch
    hint_group = [hint_group[k] for k in order]
    hint_level = [hint_level[k] for k in order]
    hint_acc = [hint_acc[k] for k in order]
    plan, hard = ref_scaf_plan(acc, group.tolist(), hint_acc, hint_level, hint_group)
    at, take, hard_t, rescued = scaffold_replacement(
        torch.tensor(acc), group, torch.tensor(hint_acc), torch.tensor(hint_level), torch.tensor(hint_group), P
    )
    assert hard_t.tolist() == [g in hard for g in range(P)]
    assert rescued.tolist() == [g in plan for g in range(P)]
    assert at.tolist() == [plan[g][0] for g in sorted(plan)]
    assert take.tolist() == [plan[g][1] for g in sorted(plan)]
    # the pieces
    assert true_hard_groups(torch.tensor(acc), group, P).tolist() == [g in hard for g in range(P)]
    first_fail = [next((i for i in range(len(acc)) if group[i] == g and acc[i] == 0), -1) for g in range(P)]
    assert first_failing_member(torch.tensor(acc), group, P).tolist() == first_fail
    choice = minimal_level_choice(
        torch.tensor(hint_acc) > 0, torch.tensor(hint_level), torch.tensor(hint_group), P
    ).tolist()
    for g in range(P):
        ks = [k for k in range(len(hint_acc)) if hint_group[k] == g and hint_acc[k] > 0]
        if not ks:
            assert choice[g] == -1
        else:
            best = min(hint_level[k] for k in ks)
            assert choice[g] == min(k for k in ks if hint_level[k] == best)
    # after the replacement: exactly one reward-1 sample in every rescued group, others untouched
    new_acc = list(acc)
    for row, k in plan.values():
        new_acc[row] = hint_acc[k]
    for g in range(P):
        members = [new_acc[i] for i in range(len(acc)) if group[i] == g]
        if g in plan:
            assert sum(members) == 1
        else:
            assert members == [acc[i] for i in range(len(acc)) if group[i] == g]


# ============================================================================== Scaf-GRPO: the strategy
def scaf_rows():
    """Hints chosen so the rule below makes the minimal correct level known: a hint is correct iff it has >= 2
    characters. Row 0: levels 2, 3 correct -> 2; row 1: levels 1 and 3 correct -> 1; row 2: never; row 3: plain prompt
    always right (not hard); row 4: plain prompt always wrong but no correct hint."""
    return [
        {"prompt": "12+30=", "answer": "42", "hints": ["(4) 12+30=", "(42) 12+30=", "(421) 12+30="]},
        {"prompt": "5-7=", "answer": "-2", "hints": ["(-2) 5-7=", "(-) 5-7=", "(-22) 5-7="]},
        {"prompt": "4+4=", "answer": "8", "hints": ["(8) 4+4=", "(9) 4+4="]},
        {"prompt": "60+6=", "answer": "66", "hints": ["(66) 60+6="]},
        {"prompt": "9+9=", "answer": "18", "hints": ["(1) 9+9="]},
    ]


def hint_length_rule(prompts, completions, answer, **_):
    out = []
    for p, a in zip(prompts, answer, strict=True):
        if p.startswith("("):
            out.append(1.0 if len(p[1 : p.index(")")]) >= 2 else 0.0)
        else:
            out.append(1.0 if a == "66" else 0.0)
    return out


SCAF_MIN_LEVEL = {0: 2, 1: 1}  # rescued rows -> minimal correct level


@pytest.mark.parametrize("train_prompt", ["hinted", "original"])
def test_scaf_grpo_rescues_true_hard_groups_with_exactly_one_correct_sample(train_prompt):
    rows = scaf_rows()
    ctx = make_ctx(hint_length_rule, seed=1, max_new_tokens=3)
    group_map = [3, 0, 4, 1, 2]
    sampled = main_batch(ctx, rows, 4, group_map=group_map, seed=2)
    out, metrics = ROLLOUT_STRATEGIES["scaf_grpo"](
        ctx, sampled, step=50, warmup_steps=50, hints_key="hints", train_prompt=train_prompt
    )
    # one sampling call: one completion per level of each true-hard group (rows 0, 1, 2, 4)
    assert len(ctx.calls) == 1
    hinted_rows, n, hinted = ctx.calls[0]
    assert n == 1
    expected_prompts = sorted(h for i in (0, 1, 2, 4) for h in rows[i]["hints"])
    assert sorted(r["prompt"] for r in hinted_rows) == expected_prompts
    check_batch_invariants(out, 5)
    assert out.size == sampled.size and out.group.tolist() == sampled.group.tolist()
    tok = ctx.tokenizer
    replaced = {}
    for src, level in SCAF_MIN_LEVEL.items():
        g = group_map[src]
        first = next(i for i in range(sampled.size) if sampled.group[i].item() == g)  # the code: first row of the uid
        members = [i for i in range(out.size) if out.group[i].item() == g]
        assert [out.reward[i].item() for i in members].count(1.0) == 1 and out.reward[first].item() == 1.0
        assert out.extras["hint_level"][first].item() == level
        # off-policy only when trained under another prompt than the hinted one it was sampled with
        assert bool(out.extras["off_policy"][first]) == (train_prompt == "original")
        assert out.gen.prompt_index[first].item() == src
        hint_prompt = rows[src]["hints"][level - 1]
        k = next(k for k, r in enumerate(hinted_rows) if r["prompt"] == hint_prompt)
        assert valid_completion_ids(out.gen, first) == valid_completion_ids(hinted.gen, k)
        want = hint_prompt if train_prompt == "hinted" else rows[src]["prompt"]
        assert valid_prompt_ids(out.gen, first) == tok(want)["input_ids"]  # hinted prompt kept (code default)
        replaced[first] = True
    for i in range(out.size):  # everything else is untouched
        if i in replaced:
            continue
        assert valid_completion_ids(out.gen, i) == valid_completion_ids(sampled.gen, i)
        assert valid_prompt_ids(out.gen, i) == valid_prompt_ids(sampled.gen, i)
        assert out.reward[i].item() == sampled.reward[i].item()
        assert out.extras["hint_level"][i].item() == 0 and not bool(out.extras["off_policy"][i])
    assert out.extras["prefix_len"].tolist() == [0] * out.size
    assert metrics["scaf/hard_frac"] == pytest.approx(4 / 5) and metrics["scaf/rescued_frac"] == pytest.approx(2 / 4)


@pytest.mark.parametrize(("step", "active"), [(0, False), (49, False), (50, True), (51, True)])
def test_scaf_grpo_guidance_exemption_follows_the_codes_global_steps(step, active):
    """The code scaffolds when global_steps > warmup_steps, with global_steps = completed steps + 1."""
    assert active == (step + 1 > 50)
    ctx = make_ctx(hint_length_rule, seed=1)
    sampled = main_batch(ctx, scaf_rows(), 2)
    out, _ = ROLLOUT_STRATEGIES["scaf_grpo"](ctx, sampled, step=step, warmup_steps=50)
    assert (len(ctx.calls) == 1) == active
    changed = out.reward.tolist() != sampled.reward.tolist()
    assert changed == active


# ============================================================================== DeepVideo-R1 augmentation
def ref_gap(reward, group, P, reference):
    out = []
    for g in range(P):
        rs = [0.0 if math.isnan(r) else r for r, gg in zip(reward, group, strict=True) if gg == g]
        out.append(reference - sum(rs) / len(rs))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_difficulty_gap_and_documented_scalings_match_loops(seed):
    rng = random.Random(seed)
    P = 6
    group = shuffled_groups(torch.Generator().manual_seed(seed), [rng.randint(1, 5) for _ in range(P)])
    reward = [rng.choice([0.0, 1.0, 0.5, math.nan]) for _ in group.tolist()]
    buffer = [rng.random() for _ in range(rng.randint(0, 130))]
    window = 100
    new_buffer = update_buffer(buffer, torch.tensor(reward), window=window)
    assert new_buffer == pytest.approx(([*buffer, *[r for r in reward if not math.isnan(r)]])[-window:])
    finite = [r for r in reward if not math.isnan(r)]
    reference = sum(buffer) / len(buffer) if buffer else sum(finite) / len(finite)  # empty: the batch mean
    assert buffer_reference(buffer, torch.tensor(reward)) == pytest.approx(reference)
    gap = difficulty_gap(torch.tensor(reward), group, P, reference=reference)
    assert gap.tolist() == pytest.approx(ref_gap(reward, group.tolist(), P, reference))
    for scale in (1.0, 0.5):
        s = augmentation_strength(gap, scale=scale)
        assert s.tolist() == pytest.approx([min(1.0, abs(d) / scale) for d in gap.tolist()])
        K = torch.tensor([rng.randint(0, 5) for _ in range(P)])
        expected_level = [
            0 if (k == 0 or v == 0) else min(k, max(1, math.ceil(v * k)))
            for v, k in zip(s.tolist(), K.tolist(), strict=True)
        ]
        assert hint_level_for(s, K).tolist() == expected_level
        assert noise_count(s, max_noise=4).tolist() == [math.ceil(v * 4) for v in s.tolist()]


AUG_ROWS = [
    {"prompt": "12+30=", "answer": "42", "hints": ["(4) 12+30=", "(42) 12+30=", "(42.) 12+30=", "(42..) 12+30="]},
    {"prompt": "5-7=", "answer": "-2", "hints": ["(-) 5-7=", "(-2) 5-7=", "(-2.) 5-7=", "(-2..) 5-7="]},
    {"prompt": "60+6=", "answer": "66", "hints": ["(6) 60+6="]},
]


def aug_reward(prompts, completions, answer, **_):
    """Plain prompts: row "42" always 0 (hard), row "-2" always 1 (easy), row "66" 0.5 (= the buffer mean, left
    alone). Augmented prompts are worth 1."""
    table = {"42": 0.0, "-2": 1.0, "66": 0.5}
    return [1.0 if ("(" in p or " " in p) else table[a] for p, a in zip(prompts, answer, strict=True)]


def test_difficulty_augment_end_to_end_with_the_documented_scalings():
    ctx = make_ctx(aug_reward, seed=2, max_new_tokens=3)
    sampled = main_batch(ctx, AUG_ROWS, 3, group_map=[1, 2, 0], seed=3)
    state = {"buffer": [0.5] * 100}
    out, metrics = ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state=state, step=0, max_noise=4)
    # dR: row 0: 0.5 - 0 = 0.5 (hard, s = 0.5 -> level ceil(0.5 * 4) = 2); row 1: 0.5 - 1 = -0.5 (easy, ceil(2)
    # = 2 spaces); row 2: 0 (untouched)
    assert metrics["aug/reference"] == pytest.approx(0.5)
    assert len(ctx.calls) == 1
    check_batch_invariants(out, 3)
    assert out.size == sampled.size and out.group.tolist() == sampled.group.tolist()
    assert out.gen.prompt_index.tolist() == sampled.gen.prompt_index.tolist()
    assert out.extras["off_policy"].tolist() == [False] * out.size  # trained under the prompt they were sampled with
    tok = ctx.tokenizer
    for i in range(out.size):
        src = out.gen.prompt_index[i].item()
        prompt_text = tok.decode(valid_prompt_ids(out.gen, i), skip_special_tokens=True)
        if src == 0:
            assert out.extras["hint_level"][i].item() == 2 and out.extras["noise"][i].item() == 0
            assert prompt_text == AUG_ROWS[0]["hints"][1]
            assert out.reward[i].item() == 1.0
        elif src == 1:
            assert out.extras["noise"][i].item() == 2 and out.extras["hint_level"][i].item() == 0
            assert prompt_text.count(" ") == 2 and prompt_text.replace(" ", "") == AUG_ROWS[1]["prompt"]
        else:
            assert out.extras["hint_level"][i].item() == 0 and out.extras["noise"][i].item() == 0
            assert valid_completion_ids(out.gen, i) == valid_completion_ids(sampled.gen, i)
            assert valid_prompt_ids(out.gen, i) == valid_prompt_ids(sampled.gen, i)
    # the buffer: the last 100 rewards, the un-augmented batch's entering last
    assert state["buffer"] == pytest.approx(([0.5] * 100 + sampled.reward.tolist())[-100:])


def test_difficulty_augment_first_step_uses_the_batch_mean():
    ctx = make_ctx(aug_reward, seed=2)
    sampled = main_batch(ctx, AUG_ROWS, 2)
    state = {}
    _, metrics = ROLLOUT_STRATEGIES["difficulty_augment"](ctx, sampled, state=state, step=0)
    assert metrics["aug/reference"] == pytest.approx(sampled.reward.mean().item())
    assert state["buffer"] == pytest.approx(sampled.reward.tolist())


# ============================================================================== DR-PO
def official_rollin_mask(seq_lens, width, beta, rng):
    """tril's RollinProcessor.create_mask, transcribed."""
    batch_size, seq_len = len(seq_lens), width
    init_mask = rng.choice([True, False], size=(batch_size, 1), p=[beta, 1 - beta])
    init_mask = np.tile(init_mask, (1, seq_len))
    length_masks = np.tril(np.ones((seq_len, seq_len)))
    masks = []
    for length in seq_lens:
        if length < 2:
            masks.append(np.zeros(seq_len).astype(bool))
        else:
            masks.append(rng.choice(length_masks[: length - 1, :]).astype(bool))
    rollin_mask = np.stack(masks)
    rollin_mask[~init_mask] = False
    return rollin_mask


@pytest.mark.parametrize("L", range(0, 9))
def test_rollin_length_distribution_is_the_codes(L):
    width = 10
    # the code's support: rng.choice picks one of the rows tril[:L-1] uniformly; row k forces its k + 1 ones
    rows = np.tril(np.ones((width, width)))[: max(L - 1, 0)]
    code_lengths = sorted(int(r.sum()) for r in rows) if L >= 2 else [0]
    # grpolab on an exact grid of uniform draws: each allowed length must get exactly the same share
    n = 840  # divisible by 1..8
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    h = rollin_lengths(torch.full((n,), L), u)
    counts = {v: int((h == v).sum()) for v in sorted(set(h.tolist()))}
    assert sorted(counts) == sorted(set(code_lengths))
    assert all(c == n // len(code_lengths) for c in counts.values())
    # and the code itself, sampled, only ever produces those lengths with a prefix-shaped mask
    rng = np.random.default_rng(L)
    mask = official_rollin_mask([L] * 200, width, 1.0, rng)
    assert set(mask.sum(1).tolist()) <= set(code_lengths)
    for row in mask:
        k = int(row.sum())
        assert row[:k].all() and not row[k:].any()


def test_reset_decision_is_a_bernoulli_of_the_codes_beta():
    n = 1000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    for beta in (0.0, 0.2, 0.5, 0.75, 1.0):
        assert int(reset_groups(u, reset_prob=beta).sum()) == round(beta * n)
    assert reset_groups(torch.rand(50), reset_prob=1.0).all() and not reset_groups(torch.rand(50), reset_prob=0.0).any()


def test_mask_prefix_is_the_codes_not_rollin_mask():
    rng = np.random.default_rng(0)
    B, T = 12, 9
    seq_lens = rng.integers(0, T + 1, size=B).tolist()
    rollin = official_rollin_mask(seq_lens, T, 0.7, rng)  # [B, T] bool, some rows not reset
    h = torch.tensor(rollin.sum(1), dtype=torch.long)
    mask = right_padded(torch.Generator().manual_seed(0), B, T) | torch.tensor(rollin)  # completions cover roll-ins
    r = Rollout(group=torch.arange(B), mask=mask, reward=torch.zeros(B), extras={"prefix_len": h})
    _, keep, _ = SELECTORS["mask_prefix"](r, torch.ones(B, T))
    assert keep.tolist() == (mask & ~torch.tensor(rollin)).tolist()


DRPO_ROWS = [
    {"prompt": "12+30=", "answer": "42"},
    {"prompt": "5-7=", "answer": "-2"},
    {"prompt": "60+6=", "answer": "66"},
    {"prompt": "9+91=", "answer": "100"},
    {"prompt": "4+4=", "answer": "8"},
]


def starts_like_answer(prompts, completions, answer, **_):
    """1 iff the completion's first character is the answer's: every reset rollout (h >= 1) earns it, because the
    reward is the score of the whole roll-in + generated text."""
    return [1.0 if c[:1] == a[:1] else 0.0 for c, a in zip(completions, answer, strict=True)]


@pytest.mark.parametrize("max_len", [4, 3])  # 3: "100" + EOS is cut to "100" (documented: the limit bounds the roll-in)
def test_dataset_reset_end_to_end(max_len):
    ctx = make_ctx(starts_like_answer, seed=4, max_new_tokens=max_len)
    group_map = [4, 2, 0, 3, 1]
    sampled = main_batch(ctx, DRPO_ROWS, 3, group_map=group_map, seed=5)
    out, _ = ROLLOUT_STRATEGIES["dataset_reset"](ctx, sampled, max_len=max_len, state={}, reset_prob=1.0, seed=0)
    check_batch_invariants(out, 5)
    assert out.size == sampled.size and out.group.tolist() == sampled.group.tolist()
    assert out.gen.prompt_index.tolist() == sampled.gen.prompt_index.tolist()
    assert out.extras["off_policy"].tolist() == [False] * out.size
    tok = ctx.tokenizer
    h = out.extras["prefix_len"]
    seen = set()
    for i in range(out.size):
        src = out.gen.prompt_index[i].item()
        assert valid_prompt_ids(out.gen, i) == valid_prompt_ids(sampled.gen, i)
        ref = [*tok(DRPO_ROWS[src]["answer"], add_special_tokens=False)["input_ids"], tok.eos_token_id][:max_len]
        L = len(ref)
        ids = valid_completion_ids(out.gen, i)
        assert 1 <= h[i].item() <= L - 1 if L >= 2 else h[i].item() == 0
        assert ids[: h[i].item()] == ref[: h[i].item()]  # the roll-in is the reference's prefix
        assert h[i].item() < len(ids) <= max_len  # the policy samples at least one token, within the limit
        assert out.reward[i].item() == 1.0  # scored on the full roll-in + generated text
        seen.add(h[i].item())
    assert len(seen) >= 2  # lengths vary across completions
    # reset_prob 0: plain PPO, nothing changes
    ctx.calls.clear()
    same, _ = ROLLOUT_STRATEGIES["dataset_reset"](ctx, sampled, max_len=max_len, state={}, reset_prob=0.0, seed=0)
    assert same.extras["prefix_len"].tolist() == [0] * same.size
    assert all(valid_completion_ids(same.gen, i) == valid_completion_ids(sampled.gen, i) for i in range(same.size))


def test_drpo_preset_loss_gives_roll_in_tokens_zero_gradient(tmp_path, float64):
    """trainer.rollout_batch with the drpo preset (dataset_reset + mask_prefix), then the preset's policy loss:
    equal in value and gradient to the code's pg_loss = sum(max(pg1, pg2) * ~rollin) / sum(~rollin) over the
    completion's tokens; the roll-in tokens get exactly zero gradient."""
    if "xcheck_digits" not in TASKS:
        base = arith_task()

        def digit_fraction(prompts, completions, **_):
            return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in completions]

        TASKS.register("xcheck_digits")(lambda **_: Task("xcheck_digits", base.train, base.eval, [digit_fraction]))
    config = resolve(
        None,
        dict(model="random-tiny", task="xcheck_digits", algo="drpo", num_prompts=3, num_generations=3,
             max_new_tokens=4, progress=False, output_dir=str(tmp_path), name="drpo", eval_every=0),
    )  # fmt: skip
    torch.set_default_dtype(torch.float32)
    trainer = Trainer(config)
    batch = trainer.rollout_batch()
    torch.set_default_dtype(torch.float64)
    r, gen = batch.rollout, batch.gen
    rows = r.extras["row"]
    h = r.extras["prefix_len"]
    full = gen.completion_mask[rows]  # [B, T] every completion token
    T = full.shape[1]
    rollin = torch.arange(T)[None, :] < h[:, None]  # [B, T] the code's rollin_mask
    assert (h >= 1).all()  # reset_prob 1, min_rollin 1
    assert r.mask.tolist() == (full & ~rollin).tolist()  # the selector narrowed the loss mask to ~rollin
    preset = PRESETS["drpo"]
    g = torch.Generator().manual_seed(1)
    logp0 = torch.log(0.05 + 0.9 * torch.rand(full.shape, generator=g)).double()
    old = logp0 + 0.5 * torch.randn(full.shape, generator=g).double()
    A = torch.randn(full.shape, generator=g).double()  # the code's advantages are non-zero on roll-ins too
    logp = logp0.clone().requires_grad_(True)
    rollout = r.replace(old_logp=old)
    loss, _ = POLICY_LOSSES[preset.loss.name](
        logp, rollout, A * r.mask, aggregation=preset.aggregation, num_tokens=float(r.mask.sum()),
        num_seqs=float(r.batch_size), norm_constant=4.0, **preset.loss.params,
    )  # fmt: skip
    loss.backward()
    assert (logp.grad[rollin] == 0).all()
    code_logp = logp0.clone().requires_grad_(True)
    ratio = torch.exp(code_logp - old)
    eps = preset.loss.params["epsilon"]
    pg = torch.max(-A * ratio, -A * torch.clamp(ratio, 1.0 - eps, 1.0 + eps))
    keep = (full & ~rollin).double()  # the code's ~rollin_mask, within the completion
    code_loss = (pg * keep).sum() / keep.sum()
    code_loss.backward()
    assert loss.item() == pytest.approx(code_loss.item(), abs=TOL)
    assert torch.allclose(logp.grad, code_logp.grad, atol=TOL, rtol=0)


def test_dataset_reset_lengths_are_uniform_per_completion_and_resets_per_group():
    """h uniform on {1..L-1} drawn per completion (the code draws per row); with reset_prob 0.5 a group is reset as a
    whole or left alone (documented: the draw is per prompt group)."""
    ctx = make_ctx(starts_like_answer, seed=6, max_new_tokens=4)
    rows = [{"prompt": "9+91=", "answer": "100"}, {"prompt": "8-30=", "answer": "-22"}]  # L = 4: h in {1, 2, 3}
    sampled = main_batch(ctx, rows, 60, seed=7)
    out, _ = ROLLOUT_STRATEGIES["dataset_reset"](ctx, sampled, max_len=4, state={}, reset_prob=1.0, seed=1)
    h = out.extras["prefix_len"]
    counts = [int((h == v).sum()) for v in (1, 2, 3)]
    assert sum(counts) == 120 and all(25 <= c <= 55 for c in counts), counts  # expected 40 each
    for g in (0, 1):
        assert len(set(h[out.group == g].tolist())) == 3  # not one length per group
    ctx = make_ctx(starts_like_answer, seed=6, max_new_tokens=4)
    sampled = main_batch(ctx, DRPO_ROWS + DRPO_ROWS, 2, seed=8)
    out, _ = ROLLOUT_STRATEGIES["dataset_reset"](ctx, sampled, max_len=4, state={}, reset_prob=0.5, seed=3)
    reset = []
    for g in range(10):
        members = (out.group == g).nonzero().flatten().tolist()
        hs = [int(out.extras["prefix_len"][i]) for i in members]
        assert all(v >= 1 for v in hs) or all(v == 0 for v in hs)
        reset.append(hs[0] >= 1)
        if hs[0] == 0:
            assert all(valid_completion_ids(out.gen, i) == valid_completion_ids(sampled.gen, i) for i in members)
    assert 0 < sum(reset) < 10  # this seed gives both kinds


def test_scaf_rescued_rows_are_trained_under_their_hinted_prompt_in_the_trainer(tmp_path):
    """The trainer's log-prob pass (shared prompt forward) must score a rescued row after ITS prompt (the hinted one,
    the code copies input_ids), not after its group's plain prompt."""
    from grpolab.trainer.logprob import completion_outputs

    if "xcheck_hinted_only" not in TASKS:
        base = arith_task()

        def hinted_only(prompts, completions, **_):
            return [1.0 if p.startswith("(") else 0.0 for p in prompts]

        TASKS.register("xcheck_hinted_only")(
            lambda **_: Task("xcheck_hinted_only", base.train, base.eval, [hinted_only])
        )
    config = resolve(
        None,
        dict(model="random-tiny", task="xcheck_hinted_only", algo="scaf_grpo", num_prompts=3, num_generations=3,
             max_new_tokens=3, progress=False, output_dir=str(tmp_path), name="scaf", eval_every=0,
             rollout=[{"name": "scaf_grpo", "params": {"warmup_steps": 0}}]),
    )  # fmt: skip
    trainer = Trainer(config)
    batch = trainer.rollout_batch()
    r, gen = batch.rollout, batch.gen
    assert not r.extras["off_policy"].any()  # trained under the hinted prompts they were sampled with
    off = r.extras["hint_level"] > 0  # the rescued rows
    assert int(off.sum()) == 3  # every group is true-hard and rescued at level 1
    for i in torch.nonzero(off).flatten().tolist():
        row = int(r.extras["row"][i])
        assert trainer.tokenizer.decode(valid_prompt_ids(gen, row), skip_special_tokens=True).startswith("(")
        assert batch.advantages[i][r.mask[i]].gt(0).all() and r.reward[i].item() == 1.0
    with torch.no_grad():
        shared = trainer._outputs(trainer.model, gen).logp
        alone = completion_outputs(
            trainer.model, gen.prompt_ids, gen.prompt_mask, gen.completion_ids, gen.completion_mask
        ).logp
    assert torch.allclose(shared[gen.completion_mask], alone[gen.completion_mask], atol=1e-5)
