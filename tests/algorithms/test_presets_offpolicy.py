"""The rec, opmd, asymre, loop, mdpo and grpo_llds presets, composed from their parts as a trainer would (with
selectors and run arguments), equal their papers' objectives written out as Python loops on one toy batch."""

import math

import pytest
import torch

from grpolab.algorithms import PRESETS, Preset
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.advantages import ADVANTAGES, compute_gae, outcome_token_rewards
from grpolab.core.filters import FILTERS
from grpolab.core.losses import POLICY_LOSSES, value_loss
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.selection import SELECTORS
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout

F64 = torch.float64
MAX_LEN = 4  # T of the toy batch
STEP, TOTAL = 1, 4  # run arguments: one step done of four -> MDPO's t_k = 0.75
GROUP = [0, 0, 1, 1, 0, 1]  # non-contiguous groups of 3
MASK = [[1, 1, 0, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 1, 1]]  # holes = tool output
REWARD = [1.0, 0.0, 1.0, 1.0, 0.5, 0.0]
NEW = ("rec", "opmd", "asymre", "loop", "mdpo", "grpo_llds")


def toy_batch(on_policy: bool = False):
    g = torch.Generator().manual_seed(3)
    mask = torch.tensor(MASK).bool()  # [B, T]
    old = -torch.rand(6, MAX_LEN, generator=g, dtype=F64) - 0.1  # [B, T]
    logp = old + 0.3 * torch.randn(6, MAX_LEN, generator=g, dtype=F64)  # [B, T]
    if on_policy:
        old = logp.clone()
    rollout = Rollout(
        group=torch.tensor(GROUP),
        mask=mask,
        reward=torch.tensor(REWARD, dtype=F64),
        old_logp=old,
        ref_logp=old - 0.2 * torch.rand(6, MAX_LEN, generator=g, dtype=F64),
        value=torch.randn(6, MAX_LEN, generator=g, dtype=F64),
    )
    values = (rollout.value + 0.1 * torch.randn(6, MAX_LEN, generator=g, dtype=F64)).requires_grad_()
    return rollout, logp.requires_grad_(), values


ENTROPY = torch.rand(6, MAX_LEN, generator=torch.Generator().manual_seed(5), dtype=F64) * 2  # [B, T] current H


def compose(preset: Preset, rollout: Rollout, logp, values, *, num_seqs=None):
    """The trainer's pipeline for one batch, driven only by the preset's data and the run arguments."""
    run = {"max_len": MAX_LEN, "step": STEP, "total_steps": TOTAL}
    for part in preset.shaping:
        fn = SHAPING[part.name]
        rollout, _ = fn(rollout, **with_run_arguments(fn, part.params, run))
    adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params)  # [B, T]
    full, rows = rollout, torch.arange(rollout.batch_size)
    keep = torch.ones(rollout.batch_size, dtype=torch.bool)
    for part in preset.filters:
        keep &= FILTERS[part.name](rollout, **part.params)[0]
    rollout, adv, rows = rollout.select(keep), adv[keep], rows[keep]
    for part in preset.selectors:  # keep narrows the loss mask; a completion with no kept token leaves
        fn = SELECTORS[part.name]
        adv, token_keep, _ = fn(rollout, adv, **with_run_arguments(fn, part.params, run))
        alive = token_keep.any(dim=-1)  # [B]
        rollout = rollout.select(alive).replace(mask=(rollout.mask & token_keep)[alive])
        adv, rows = adv[alive], rows[alive]
    logp = logp[rows]
    agg = dict(aggregation=preset.aggregation, norm_constant=MAX_LEN, num_seqs=num_seqs)
    fn = POLICY_LOSSES[preset.loss.name]
    loss, _ = fn(logp, rollout, adv, **agg, **with_run_arguments(fn, preset.loss.params, run))
    for part in preset.regularizers:
        fn = REGULARIZERS[part.name]
        args = with_run_arguments(fn, part.params, {**run, "advantages": adv})
        loss = loss + fn(logp, rollout, entropy=ENTROPY[rows], **agg, **args)[0]
    if preset.value_loss is not None:
        gamma, lam = preset.advantage.params["gamma"], preset.advantage.params["lam"]
        _, returns = compute_gae(outcome_token_rewards(full), full.value, full.mask, gamma=gamma, lam=lam)
        vf, _ = value_loss(values[rows], rollout, returns[rows], aggregation="token_mean", **preset.value_loss)
        loss = loss + preset.trainer["vf_coef"] * vf
    return loss


# ---------------------------------------------------------------------------------- objectives written by hand
def valid(i):
    return [t for t in range(MAX_LEN) if MASK[i][t]]


def members(i):
    return [REWARD[j] for j in range(6) if GROUP[j] == GROUP[i]]


def tensors(b):
    rollout, logp, values = b
    return logp.tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist(), rollout.value.tolist(), values.tolist()


def token_mean(terms):
    return sum(terms) / len(terms)


def expected_rec(b):
    """REC-OneSide-NoIS: −A·log π·M, A = r − mean_G r, M one-side with ε 0.2 on the detached ratio; token mean."""
    lp, old, *_ = tensors(b)
    terms = []
    for i in range(6):
        a = REWARD[i] - sum(members(i)) / 3
        for t in valid(i):
            rho = math.exp(lp[i][t] - old[i][t])
            keep = (a >= 0 and rho <= 1.2) or (a <= 0 and rho >= 0.8)
            terms.append(-a * lp[i][t] * keep)
    return token_mean(terms)


def expected_opmd(b):
    """Trinity's OPMD: −(r − mean_G r)·log π / (1 + τ), τ = 1, token mean."""
    lp, *_ = tensors(b)
    return token_mean([-(REWARD[i] - sum(members(i)) / 3) * lp[i][t] / 2 for i in range(6) for t in valid(i)])


def expected_asymre(b):
    """AsymRE: −(r − (mean_G r − 0.1))·log π, token mean."""
    lp, *_ = tensors(b)
    return token_mean([-(REWARD[i] - sum(members(i)) / 3 + 0.1) * lp[i][t] for i in range(6) for t in valid(i)])


def expected_loop(b):
    """LOOP: A_i = r_i − mean of the others; drop |A| < 0.01; per token −min(ρA, clip(ρ, 1/1.1, 1.1)·A) averaged
    over the rollout's tokens (1/|x|), then over the kept rollouts."""
    lp, old, *_ = tensors(b)
    per_rollout = []
    for i in range(6):
        others = [REWARD[j] for j in range(6) if GROUP[j] == GROUP[i] and j != i]
        a = REWARD[i] - sum(others) / len(others)
        if abs(a) < 0.01:
            continue
        terms = []
        for t in valid(i):
            rho = math.exp(lp[i][t] - old[i][t])
            terms.append(-min(rho * a, min(max(rho, 1 / 1.1), 1.1) * a))
        per_rollout.append(sum(terms) / len(terms))
    assert len(per_rollout) == 5  # rewards (1, 0, 0.5) in group 0: the 0.5 completion has A = 0 and is dropped
    return sum(per_rollout) / len(per_rollout)


def whiten(xs):
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return [(x - mean) / math.sqrt(var + 1e-8) for x in xs]


def expected_mdpo(b):
    """On-policy MDPO: GAE(γ 1, λ 0.95) over valid tokens, whitened; per token −ρA + (1/t_k)(ρ log ρ − ρ + 1) with
    t_k = 1 − 1/4; token mean; plus 0.5 × PPO's clipped value loss (clip 0.2), token mean."""
    lp, old, _, v_old, v = tensors(b)
    coef = 1 / (1 - STEP / TOTAL)
    advs, rets, rhos, vals = [], [], [], []
    for i in range(6):
        ts = valid(i)
        row, running = {}, 0.0
        for k in reversed(range(len(ts))):
            t = ts[k]
            next_v = v_old[i][ts[k + 1]] if k + 1 < len(ts) else 0.0
            reward = REWARD[i] if k == len(ts) - 1 else 0.0
            running = reward + next_v - v_old[i][t] + 0.95 * running
            row[t] = running
        for t in ts:
            advs.append(row[t])
            rets.append(row[t] + v_old[i][t])
            rhos.append(math.exp(lp[i][t] - old[i][t]))
            vals.append((v[i][t], v_old[i][t]))
    pg = token_mean([-q * a + coef * (q * math.log(q) - q + 1) for q, a in zip(rhos, whiten(advs), strict=True)])
    vf = token_mean(
        [
            0.5 * max((x - R) ** 2, (min(max(x, xo - 0.2), xo + 0.2) - R) ** 2)
            for (x, xo), R in zip(vals, rets, strict=True)
        ]
    )
    return pg + 0.5 * vf


def expected_grpo_llds(b):
    """GRPO (std-normalised A, clip 0.2) + 0.001·k3 KL to the reference + 0.2·LLDS with the A-gate − 0.001·H (verl's
    default entropy_coeff, kept by the official run); token mean."""
    lp, old, ref, *_ = tensors(b)
    pg, llds = [], []
    entropy = token_mean([ENTROPY[i, t].item() for i in range(6) for t in valid(i)])
    for i in range(6):
        group = members(i)
        mean = sum(group) / 3
        std = math.sqrt(sum((x - mean) ** 2 for x in group) / 2)
        a = (REWARD[i] - mean) / (std + 1e-6)
        for t in valid(i):
            rho = math.exp(lp[i][t] - old[i][t])
            x = ref[i][t] - lp[i][t]
            pg.append(-min(rho * a, min(max(rho, 0.8), 1.2) * a) + 0.001 * (math.exp(x) - x - 1))
        # LLDS: chunks = runs of valid tokens (holes split actions); active if the chunk's summed drop > 0
        chunks, run = [], []
        for t in range(MAX_LEN):
            if MASK[i][t]:
                run.append(t)
            elif run:
                chunks, run = [*chunks, run], []
        chunks += [run] if run else []
        for t in valid(i):
            chunk = next(c for c in chunks if t in c)
            active = a >= 0 and sum(old[i][s] - lp[i][s] for s in chunk) > 0
            llds.append(max(0.0, old[i][t] - lp[i][t]) if active else 0.0)
    return token_mean(pg) + 0.2 * token_mean(llds) - 0.001 * entropy


EXPECTED = {
    "rec": expected_rec,
    "opmd": expected_opmd,
    "asymre": expected_asymre,
    "loop": expected_loop,
    "mdpo": expected_mdpo,
    "grpo_llds": expected_grpo_llds,
}


def test_every_new_preset_is_registered_with_a_hand_written_objective():
    assert set(EXPECTED) == set(NEW) and set(NEW) <= set(PRESETS)


@pytest.mark.parametrize("name", NEW)
def test_preset_equals_its_paper_objective(name):
    batch = toy_batch()
    rollout, logp, values = batch
    loss = compose(PRESETS[name], rollout, logp, values)
    assert loss.item() == pytest.approx(EXPECTED[name](batch), rel=1e-9, abs=1e-12)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad.abs().sum() > 0
    assert (logp.grad[~rollout.mask] == 0).all()


def test_the_toy_batch_exercises_clipping_and_llds():
    rollout, logp, _ = toy_batch()
    ratio = torch.exp(logp - rollout.old_logp)[rollout.mask]
    assert (ratio > 1.2).any() and (ratio < 0.8).any()
    adv = ADVANTAGES["grpo"](rollout)
    _, metrics = REGULARIZERS["llds"](logp, rollout, advantages=adv)
    assert 0 < metrics["llds_active_frac"] < 1


# ---------------------------------------------------------------------------------- invariants of the papers
def grad_of(preset_or_fn, on_policy=True, **kwargs):
    rollout, logp, values = toy_batch(on_policy=on_policy)
    if isinstance(preset_or_fn, Preset):
        loss = compose(preset_or_fn, rollout, logp, values, **kwargs)
    else:
        loss = preset_or_fn(rollout, logp)
    loss.backward()
    return logp.grad


def test_loop_with_one_epoch_and_no_minibatching_has_rloo_gradients():
    """LOOP at ratio 1 (N_epoch = 1, one mini-batch): the gradient of REINFORCE with the RLOO advantage and the same
    1/|x| normalisation. Dropped rollouts have A = 0 and no gradient; normalising by the full batch (LOOP's code
    divides by the configured mini-batch size) gives equality, the kept count a factor 6/5."""

    def rloo(rollout, logp):
        adv = ADVANTAGES["rloo"](rollout)
        return POLICY_LOSSES["reinforce"](logp, rollout, adv, aggregation="seq_mean_token_mean")[0]

    reference = grad_of(rloo)
    torch.testing.assert_close(grad_of(PRESETS["loop"], num_seqs=6), reference, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_of(PRESETS["loop"]), reference * 6 / 5, rtol=1e-12, atol=1e-14)


def test_rec_and_opmd_at_ratio_one_are_group_mean_reinforce():
    def reinforce(scale):
        def fn(rollout, logp):
            adv = ADVANTAGES["dr_grpo"](rollout)
            return scale * POLICY_LOSSES["reinforce"](logp, rollout, adv, aggregation="token_mean")[0]

        return fn

    torch.testing.assert_close(grad_of(PRESETS["rec"]), grad_of(reinforce(1.0)), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_of(PRESETS["opmd"]), grad_of(reinforce(0.5)), rtol=1e-12, atol=1e-14)


def test_asymre_equals_rec_with_the_forward_kl_regularizer():
    def rec_forward_kl(rollout, logp):
        adv = ADVANTAGES["dr_grpo"](rollout)
        return POLICY_LOSSES["rec"](logp, rollout, adv, regularizer="forward-kl", regularizer_coef=0.1)[0]

    for on_policy in (True, False):
        torch.testing.assert_close(
            grad_of(PRESETS["asymre"], on_policy=on_policy), grad_of(rec_forward_kl, on_policy=on_policy)
        )


def test_mdpo_first_step_is_the_policy_gradient():
    """At θ = θ_k the KL term and its gradient vanish: the policy part of MDPO's gradient is −A·∇log π."""
    preset = PRESETS["mdpo"]

    def policy_gradient(rollout, logp):
        adv = ADVANTAGES["gae"](rollout, **preset.advantage.params)
        return POLICY_LOSSES["reinforce"](logp, rollout, adv, aggregation="token_mean")[0]

    torch.testing.assert_close(grad_of(preset), grad_of(policy_gradient), rtol=1e-12, atol=1e-14)


def test_grpo_llds_at_the_rollout_policy_is_grpo_with_kl():
    preset = PRESETS["grpo_llds"]

    def grpo_kl(rollout, logp):
        adv = ADVANTAGES["grpo"](rollout)
        loss = POLICY_LOSSES["ppo_clip"](logp, rollout, adv, aggregation="token_mean")[0]
        return loss + REGULARIZERS["kl"](logp, rollout, coef=0.001, aggregation="token_mean")[0]

    torch.testing.assert_close(grad_of(preset), grad_of(grpo_kl), rtol=1e-12, atol=1e-14)


def test_trainer_settings():
    assert PRESETS["mdpo"].trainer["num_iterations"] == 10  # the paper's m = 10 SGD steps per batch
    assert PRESETS["loop"].trainer["num_iterations"] == 2  # apple/ml-loop epochs_per_iteration
    # group sizes of the papers (the trainer's default G = 8 must not stand in for them)
    assert PRESETS["loop"].trainer["num_generations"] == 6  # rollouts_per_scenario 6
    assert PRESETS["grpo_llds"].trainer["num_generations"] == 5  # rollout.n_agent=5
    assert PRESETS["grpo_llds"].trainer["top_p"] == 0.95  # Search-R1 verl rollout default, passed to vLLM
    for name in ("rec", "opmd", "asymre"):
        assert PRESETS[name].trainer["num_generations"] == 8  # gsm8k.yaml repeat_times 8
    assert ("entropy", {"coef": 0.001}) in [(r.name, dict(r.params)) for r in PRESETS["grpo_llds"].regularizers]
    assert PRESETS["mdpo"].requires == {"old_logp", "value"}
    assert PRESETS["grpo_llds"].requires == {"old_logp", "ref_logp", "entropy"}
    for name in NEW:
        assert PRESETS[name].notes and PRESETS[name].trainer.get("num_iterations", 1) <= 10
