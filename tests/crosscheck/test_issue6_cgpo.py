"""Independent cross-check of CGPO (The Perfect Blend, arXiv 2409.20370): judges, calibrated reward, KL weight, the
three optimizers' targets, losses, gradients and normalisers, against slow plain-Python references.

Written from the spec (part B §8) and the TRL ``CGPOTrainer`` pull request (huggingface/trl #2190,
``trl/trainer/cgpo_trainer.py``), read for facts only:

- R_cal = σ(r(x, y) − r(x, ȳ)); KL(y) = Σ_t (log π_old − log π_ref) over the response's tokens.
- CRPG: w = clamp(1 − KL/KL_thr, min 0); R̃ = J·R_cal·w; coefficient R̃ − mean R̃ over ALL sampled responses of the
  batch (TRL ``regularized_rewards.mean()``); loss −Σ_i log π(y_i)·coef_i / #completion tokens (spec).
- CRRAFT: R̃ = 1[KL ≤ KL_thr]·J·R_cal; per prompt the first argmax over the sampled responses; when that is 0 the
  reference ȳ is used with the constant weight 0.5 iff ȳ passes the judges and KL(ȳ) ≤ KL_thr (TRL
  ``replace_by_baseline_mask``); loss −Σ R̃·log π(y_best) / #selected.
- CODPO: chosen = argmax r among passing, rejected = argmin r among failing (argmin over all when all pass); prompts
  with no passing response are skipped; ℓ = −[log σ(β·((π_w − π_l) − (ref_w − ref_l))) + λ/|y_w|·log π(y_w)],
  averaged over the prompts with a pair (TRL ``positive_completion_mask``).

Edge cases: shuffled unequal groups (one of size 1), negative rewards (TRL's ``argmax(judgements * rewards)``
would pick a failing response there; the spec's selection is what the reference does), KL exactly at the threshold,
all-failing prompts with a passing / a KL-violating / a judge-failing ȳ, ties, padding holding garbage.
"""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

GARBAGE = 41.0
THR = 2.0


@pytest.fixture(autouse=True, scope="module")
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > -30 else x


# ------------------------------------------------------------------------------------------------ a hand batch
# Each row: (group, rm score, judge, baseline rm of its prompt, per-token (old, ref) log-probs, is reference row).
# KL of a row = Σ (old − ref); values are dyadic so sums are exact and KL == THR exactly where wanted.
ROWS = [
    # prompt 2 (size 3 + ȳ): negative rewards, one passing -> CODPO chosen is the passing one though its r is lowest
    (2, -3.0, 1, -1.0, [(-0.5, -0.5), (-1.0, -1.0)], False),
    (0, 1.5, 1, 1.0, [(-0.25, -0.5)], False),  # prompt 0: KL 0.25
    (2, -0.5, 0, -1.0, [(-1.0, -2.0), (-0.5, -0.5), (-0.5, -1.0)], False),  # fails judge
    (1, 0.0, 0, 0.5, [(-1.0, -1.0)], False),  # prompt 1: every sampled response fails -> ȳ fallback
    (0, 2.5, 1, 1.0, [(-1.0, -2.0), (-1.5, -2.5)], False),  # KL exactly 2.0 == THR: CRRAFT keeps it, CRPG w = 0
    (2, -1.0, 0, -1.0, [(-0.5, -0.5)], False),  # fails judge
    (3, 0.7, 1, 0.2, [(-0.5, -0.75), (-0.5, -0.5)], False),  # prompt 3: a single sampled response, passing
    (1, 4.0, 0, 0.5, [(-0.5, -1.0), (-0.5, -0.5)], False),  # fails judge despite a high score
    (0, 2.5, 1, 1.0, [(-0.5, -0.5)], False),  # ties prompt 0's row 4 on r; KL 0
    (4, 1.0, 0, 2.0, [(-0.5, -0.5)], False),  # prompt 4: all fail, ȳ fails the KL check -> nothing
    (4, 3.0, 0, 2.0, [(-2.0, -2.0)], False),
    (5, 1.0, 0, 0.0, [(-0.5, -0.5)], False),  # prompt 5: all fail, ȳ fails a judge -> nothing
    # reference rows ȳ (scored like a completion: their own rm score is the baseline of their prompt)
    (1, 0.5, 1, 0.5, [(-1.0, -1.5), (-0.5, -0.5)], True),  # passes, KL 0.5 -> CRRAFT fallback weight 0.5
    (4, 2.0, 1, 2.0, [(-0.5, -3.5)], True),  # KL 3.0 > THR: no fallback
    (5, 0.0, 0, 0.0, [(-0.5, -0.5)], True),  # fails its judge: no fallback
    (0, 1.0, 1, 1.0, [(-0.5, -0.5)], True),
    (2, -1.0, 1, -1.0, [(-0.5, -0.5)], True),
    (3, 0.2, 1, 0.2, [(-0.5, -0.5)], True),
]
T = 4


def make_rollout() -> tuple[Rollout, torch.Tensor]:
    """The ROWS as a Rollout (columns rm, judge_ok; extras as the cgpo_baseline strategy writes them) and the
    current log-probs (old + a row-dependent shift, so the loss's log π differs from the KL's)."""
    B = len(ROWS)
    mask = torch.zeros(B, T, dtype=torch.bool)
    old = torch.full((B, T), GARBAGE)
    ref = torch.full((B, T), -GARBAGE)
    for i, (_, _, _, _, toks, _) in enumerate(ROWS):
        for t, (o, r) in enumerate(toks):
            mask[i, t] = True
            old[i, t], ref[i, t] = o, r
    rm = torch.tensor([row[1] for row in ROWS])
    judge = torch.tensor([float(row[2]) for row in ROWS])
    base_rm = torch.tensor([row[3] for row in ROWS])
    rollout = Rollout(
        group=torch.tensor([row[0] for row in ROWS]),
        mask=mask,
        reward=rm + judge,
        rewards=torch.stack([rm, judge], dim=1),
        reward_names=("rm", "judge_ok"),
        old_logp=old,
        ref_logp=ref,
        extras={
            "baseline_reward": base_rm + 1.0,
            "baseline_rewards": torch.stack([base_rm, torch.ones(B)], dim=1),
            "baseline_row": torch.tensor([row[5] for row in ROWS]),
        },
    )
    shift = torch.arange(B, dtype=torch.float64)[:, None] * 0.03 - 0.2  # [B, 1]
    logp = torch.where(mask, old + shift, torch.full_like(old, GARBAGE))
    return rollout, logp


# ------------------------------------------------------------------------------------------------ references
def reference_targets(thr: float = THR):
    """Plain loops: (J, R_cal, KL, crpg coefficient, crraft weight, codpo chosen/rejected per prompt)."""
    B = len(ROWS)
    J = [float(r[2]) for r in ROWS]
    rcal = [sig(r[1] - r[3]) for r in ROWS]
    kl = [sum(o - f for o, f in r[4]) for r in ROWS]
    cand = [not r[5] for r in ROWS]
    groups = sorted({r[0] for r in ROWS})
    # CRPG
    rt = [J[i] * rcal[i] * max(0.0, 1.0 - kl[i] / thr) if cand[i] else 0.0 for i in range(B)]
    mean = sum(rt) / sum(cand)
    coef = [rt[i] - mean if cand[i] else 0.0 for i in range(B)]
    # CRRAFT
    weight = [0.0] * B
    for p in groups:
        rows = [i for i in range(B) if ROWS[i][0] == p]
        q = {i: (1.0 if kl[i] <= thr else 0.0) * J[i] * rcal[i] for i in rows}
        best = None
        for i in rows:
            if cand[i] and (best is None or q[i] > q[best]):
                best = i
        if best is not None and q[best] > 0:
            weight[best] = q[best]
            continue
        for i in rows:  # TRL: the reference ȳ with the constant 0.5 when it passes the judges and the KL check
            if not cand[i] and J[i] > 0.5 and kl[i] <= thr:
                weight[i] = 0.5
    # CODPO
    pairs = {}
    for p in groups:
        rows = [i for i in range(B) if ROWS[i][0] == p and cand[i]]
        passing = [i for i in rows if J[i] > 0.5]
        failing = [i for i in rows if J[i] <= 0.5]
        if not passing:
            continue
        chosen = passing[0]
        for i in passing:
            if ROWS[i][1] > ROWS[chosen][1]:
                chosen = i
        pool = failing if failing else rows
        rejected = pool[0]
        for i in pool:
            if ROWS[i][1] < ROWS[rejected][1]:
                rejected = i
        pairs[p] = (chosen, rejected)
    return J, rcal, kl, coef, weight, pairs


def seq_sums(logp: torch.Tensor, rollout: Rollout) -> list[float]:
    return [sum(float(logp[i, t]) for t in range(T) if rollout.mask[i, t]) for i in range(rollout.batch_size)]


def reference_losses(logp: torch.Tensor, rollout: Rollout, *, beta: float = 0.1, lamb: float = 5.0):
    """Loss values and d loss / d log π(y_i) (the same for every valid token of row i) of the three optimizers."""
    _, _, _, coef, weight, pairs = reference_targets()
    B = rollout.batch_size
    S = seq_sums(logp, rollout)
    R = seq_sums(rollout.ref_logp, rollout)
    L = [int(rollout.mask[i].sum()) for i in range(B)]
    cand = [not r[5] for r in ROWS]
    n_tok = sum(L[i] for i in range(B) if cand[i])
    crpg = -sum(coef[i] * S[i] for i in range(B)) / n_tok
    crpg_g = [-coef[i] / n_tok for i in range(B)]
    n_sel = sum(w > 0 for w in weight)
    crraft = -sum(weight[i] * S[i] for i in range(B)) / n_sel
    crraft_g = [-weight[i] / n_sel for i in range(B)]
    codpo, codpo_g = 0.0, [0.0] * B
    for w, lo in pairs.values():
        z = (S[w] - S[lo]) - (R[w] - R[lo])
        codpo += -(logsig(beta * z) + lamb / L[w] * S[w])
        d = -beta * (1.0 - sig(beta * z))  # d/dz of −log σ(βz)
        codpo_g[w] += d - lamb / L[w]
        codpo_g[lo] -= d
    n_pairs = len(pairs)
    return {
        "crpg": (crpg, crpg_g),
        "crraft": (crraft, crraft_g),
        "codpo": (codpo / n_pairs, [g / n_pairs for g in codpo_g]),
    }


# ------------------------------------------------------------------------------------------------ tests
def test_shaping_targets_match_the_reference():
    rollout, _ = make_rollout()
    shaped, metrics = SHAPING["cgpo_judges"](rollout, kl_threshold=THR)
    J, rcal, kl, coef, weight, pairs = reference_targets()
    x = shaped.extras
    assert x["cgpo_judge"].tolist() == J
    torch.testing.assert_close(x["cgpo_calibrated"], torch.tensor(rcal))
    assert x["cgpo_kl"].tolist() == kl  # dyadic: exact; garbage at padding never enters
    torch.testing.assert_close(x["cgpo_crpg"], torch.tensor(coef))
    torch.testing.assert_close(x["cgpo_crraft"], torch.tensor(weight))
    roles = x["cgpo_codpo"].tolist()
    expected = [0] * len(ROWS)
    for w, lo in pairs.values():
        expected[w] |= 1
        expected[lo] |= 2
    assert roles == expected
    torch.testing.assert_close(shaped.reward, torch.tensor(J) * torch.tensor(rcal))  # J·R_cal
    assert metrics["cgpo/crraft_fallback"] == 1.0 and metrics["cgpo/codpo_pairs"] == float(len(pairs))


def test_hand_facts_of_the_batch():
    """The facts the reference encodes, spelled out on the rows they concern."""
    rollout, _ = make_rollout()
    x = SHAPING["cgpo_judges"](rollout, kl_threshold=THR)[0].extras
    w, role = x["cgpo_crraft"].tolist(), x["cgpo_codpo"].tolist()
    # prompt 0: rows 4 and 8 tie on r = 2.5, row 4 has KL == THR (kept by CRRAFT's ≤): first index wins
    assert w[4] == pytest.approx(sig(1.5)) and w[8] == 0.0 and w[1] == 0.0
    assert x["cgpo_kl"][4].item() == THR
    # CRPG's weight is 0 at the threshold, so row 4's R̃ is 0 and its coefficient is minus the batch mean
    assert x["cgpo_crpg"][4].item() == pytest.approx(x["cgpo_crpg"][3].item())  # same as a judge-failing row
    # prompt 1: every sampled response fails -> ȳ (row 12) with TRL's constant 0.5
    assert w[12] == 0.5 and w[3] == 0.0 and w[7] == 0.0
    # prompt 4: ȳ violates the KL bound; prompt 5: ȳ fails its judge -> nothing selected, no pair
    assert w[9] == w[10] == w[13] == 0.0 and w[11] == w[14] == 0.0
    assert role[9] == role[10] == role[11] == 0
    # prompt 2 (negative rewards): chosen = the only passing row 0 (r = −3), rejected = the worst failing row 5
    # (r = −1.0 < −0.5); TRL's argmax(J·r) would pick a failing row (J·r = 0 > −3)
    assert role[0] == 1 and role[5] == 2 and role[2] == 0
    # prompt 3: one sampled response that passes -> chosen and rejected at once
    assert role[6] == 3
    # a reference row is never a CRPG or CODPO candidate
    assert all(x["cgpo_crpg"][i].item() == 0.0 and role[i] == 0 for i in range(12, 18))


@pytest.mark.parametrize("name", ["crpg", "crraft", "codpo"])
def test_loss_values_and_gradients_match_the_reference(name):
    rollout, logp = make_rollout()
    shaped, _ = SHAPING["cgpo_judges"](rollout, kl_threshold=THR)
    logp = logp.clone().requires_grad_()
    loss, _ = POLICY_LOSSES[name](logp, shaped, torch.zeros_like(logp))
    loss.backward()
    value, grads = reference_losses(logp.detach(), shaped)[name]
    assert loss.item() == pytest.approx(value, rel=1e-12, abs=1e-12)
    expected = torch.tensor(grads)[:, None].expand(-1, T) * shaped.mask  # [B, T]
    torch.testing.assert_close(logp.grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["crpg", "crraft", "codpo"])
@pytest.mark.parametrize("parts", [[[0, 1, 2, 3, 4, 5]], [[0, 3], [1, 2], [4, 5]], [[5], [2], [0, 4], [3], [1]]])
def test_micro_batches_of_whole_groups_sum_to_the_batch_loss(name, parts):
    """The trainer passes every micro-batch the mini-batch's counts; the micro losses and gradients must add up."""
    rollout, logp = make_rollout()
    shaped, _ = SHAPING["cgpo_judges"](rollout, kl_threshold=THR)
    counts = dict(num_tokens=float(shaped.mask.sum()), num_seqs=float(shaped.batch_size))
    value, grads = reference_losses(logp, shaped)[name]
    total = 0.0
    grad = torch.zeros_like(logp)
    for part in parts:
        keep = torch.isin(shaped.group, torch.tensor(part))
        sub = logp[keep].clone().requires_grad_()
        loss, _ = POLICY_LOSSES[name](sub, shaped.select(keep), torch.zeros_like(sub), **counts)
        loss.backward()
        total += loss.item()
        grad[keep] = sub.grad
    assert total == pytest.approx(value, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor(grads)[:, None].expand(-1, T) * shaped.mask)


def test_codpo_refuses_a_split_pair():
    rollout, logp = make_rollout()
    shaped, _ = SHAPING["cgpo_judges"](rollout, kl_threshold=THR)
    keep = torch.zeros(shaped.batch_size, dtype=torch.bool)
    keep[0] = True  # prompt 2's chosen row without its rejected row 5
    with pytest.raises(ValueError, match="minibatch_groups"):
        POLICY_LOSSES["codpo"](logp[keep], shaped.select(keep), torch.zeros_like(logp[keep]))


def test_kl_weight_never_reaches_crraft_and_threshold_scaling():
    """Doubling every KL and the threshold leaves every target unchanged (only KL/KL_thr matters)."""
    rollout, _ = make_rollout()
    a = SHAPING["cgpo_judges"](rollout, kl_threshold=THR)[0].extras
    doubled = rollout.replace(old_logp=rollout.old_logp * 2, ref_logp=rollout.ref_logp * 2)
    b = SHAPING["cgpo_judges"](doubled, kl_threshold=2 * THR)[0].extras
    for key in ("cgpo_crpg", "cgpo_crraft", "cgpo_codpo"):
        torch.testing.assert_close(a[key], b[key])


def test_without_the_strategy_the_baseline_is_zero():
    """No cgpo_baseline extras: r(x, ȳ) = 0 so R_cal = σ(r), every row is a candidate."""
    rollout, _ = make_rollout()
    extras = {k: v for k, v in rollout.extras.items() if not k.startswith("baseline")}
    shaped, _ = SHAPING["cgpo_judges"](rollout.replace(extras=extras), kl_threshold=THR)
    torch.testing.assert_close(shaped.extras["cgpo_calibrated"], torch.tensor([sig(r[1]) for r in ROWS]))
    assert (shaped.extras["cgpo_crpg"] != 0).sum().item() >= 12  # reference rows are now candidates too


# ------------------------------------------------------------------------------------------------ the trainer
def dense_arith(**_):
    """arith rows (with their 'answer' column, which cgpo_baseline scores as ȳ) and a dense reward a random model
    earns unevenly, so CRPG's coefficients are not all 0."""
    base = arith_task()

    def digit_share(prompts, completions, **__):
        return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]

    return Task("xc_cgpo_dense", base.train, base.eval, [digit_share])


if "xc_cgpo_dense" not in TASKS:
    TASKS.register("xc_cgpo_dense")(dense_arith)


@pytest.mark.parametrize("loss", ["crraft", "crpg", "codpo"])
def test_trainer_micro_batches_add_up_to_one_pass(tmp_path, loss):
    """With the real trainer (cgpo preset, arith task, random tiny model): the micro-batch losses the update loop
    computes with the mini-batch's counts sum to the loss of the whole batch in one micro-batch."""
    torch.set_default_dtype(torch.float32)
    try:
        settings = dict(
            model="random-tiny",
            task="xc_cgpo_dense",
            algo="cgpo",
            loss=loss,
            num_prompts=3,
            num_generations=3,
            max_new_tokens=4,
            steps=1,
            progress=False,
            eval_every=0,
            save_every=0,
            output_dir=str(tmp_path),
            name=loss,
            grad_accum=3,
        )
        trainer = Trainer(resolve(None, settings))
        batch = trainer.rollout_batch()
        rows = torch.arange(batch.rollout.batch_size)
        counts = dict(num_tokens=float(batch.rollout.mask.sum()), num_seqs=float(len(rows)))
        whole, _ = trainer._micro_loss(batch, rows, counts)
        assert whole.item() != 0.0
        parts = trainer._split(batch.rollout.group, 3, within=rows)
        assert len(parts) == 3
        total = sum(trainer._micro_loss(batch, part, counts)[0] for part in parts)
        assert total.item() == pytest.approx(whole.item(), rel=1e-5, abs=1e-6)
        assert batch.rollout.extras["baseline_row"].sum().item() == 3  # one ȳ per prompt joined the batch
    finally:
        torch.set_default_dtype(torch.float64)
