"""Independent cross-check of GTPO, D³S and DaGRPO against plain-loop reference implementations.

Written from the papers / official code, not from grpolab's implementation:

- GTPO (arXiv 2508.03772; official code winstonsmith1897/GTPO ``gtpo/gtpo_training.py``: ``build_conflict_mask``,
  ``gtpo_compute_loss``, ``UnslothEfficientGTPO.forward``; ``config.yaml``).
- D³S (arXiv 2509.22115, abstract) with the PODS max-variance rule (arXiv 2504.13818): checked by brute force over
  every subset.
- DaGRPO (arXiv 2512.06337, abstract only): the library's documented interpretation (pairwise GRPO decomposition
  with low-distinctiveness pairs masked), checked against the textbook Levenshtein recursion.

Each reference is run through the same path the trainer takes (selector -> loss mask narrowed by ``keep`` ->
completions without a kept token dropped -> policy loss with the batch's counts), and values and gradients are
compared to 1e-6.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout

ATOL = 1e-6  # values and gradients, in float64 (the fixture below)


@pytest.fixture(autouse=True, scope="module")
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ------------------------------------------------------------------------------------------------- batch makers
def shuffled_groups(gen: torch.Generator, sizes: list[int]) -> torch.Tensor:
    """Group ids with the given sizes, in a random (non-contiguous) order."""
    g = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])  # [B]
    return g[torch.randperm(len(g), generator=gen)]


def right_padded(gen: torch.Generator, B: int, T: int) -> tuple[torch.Tensor, list[int]]:
    lengths = torch.randint(1, T + 1, (B,), generator=gen).tolist()
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i, L in enumerate(lengths):
        mask[i, :L] = True
    return mask, lengths


def shared_token_ids(gen: torch.Generator, group: torch.Tensor, mask: torch.Tensor, vocab: int) -> torch.Tensor:
    """Token ids with many shared prefixes / suffixes inside a group (so conflict runs are long and frequent);
    garbage (ids >= 1000) at padding positions."""
    B, T = mask.shape
    ids = torch.randint(0, vocab, (B, T), generator=gen)
    for g in group.unique().tolist():
        rows = (group == g).nonzero().flatten().tolist()
        template = torch.randint(0, vocab, (T,), generator=gen)
        for i in rows:
            L = int(mask[i].sum())
            p = int(torch.randint(0, L + 1, (1,), generator=gen))  # shared prefix length
            s = int(torch.randint(0, L + 1, (1,), generator=gen))  # shared suffix length (right-aligned)
            ids[i, :p] = template[:p]
            if s:
                ids[i, L - s : L] = template[T - s :]
    return torch.where(mask, ids, 1000 + torch.randint(0, 50, (B, T), generator=gen))


def broadcast(seq: torch.Tensor, mask: torch.Tensor, garbage: float = 777.0) -> torch.Tensor:
    return torch.where(mask, seq[:, None].expand(mask.shape), torch.full(mask.shape, garbage))


# -------------------------------------------------------------------------------------- the trainer's path
def selected_batch(name, rollout, advantages, **hp):
    """What the trainer does with one selector: (rollout', advantages') of the completions that stay."""
    adv, kept, _ = SELECTORS[name](rollout, advantages, **hp)
    token_keep = rollout.mask & kept  # [B, T]
    rows = token_keep.any(dim=-1)  # [B]
    r2 = rollout.select(rows).replace(mask=token_keep[rows])
    return r2, adv[rows] * r2.mask, rows


def pipeline_loss(name, rollout, advantages, logp_full, *, loss="ppo_clip", loss_hp=None, aggregation, **hp):
    r2, adv, rows = selected_batch(name, rollout, advantages, **hp)
    logp = logp_full[rows]  # [B', T]
    r2 = r2.replace(old_logp=logp.detach())  # on-policy, one iteration: ratio 1 with gradient
    value, _ = POLICY_LOSSES[loss](
        logp,
        r2,
        adv,
        aggregation=aggregation,
        num_tokens=float(r2.mask.sum()),
        num_seqs=float(r2.batch_size),
        norm_constant=float(rollout.seq_len),
        **(loss_hp or {}),
    )
    return value, r2, adv, rows


# ============================================================================================== GTPO reference
def ref_gtpo_weights(group, lengths, toks, seq_adv, W):
    """Official build_conflict_mask, as loops. toks[i] = list of the valid ids of completion i (right padded).

    Forward: token t of an active completion (A != 0) conflicts iff some completion of the same group with the
    opposite sign has the same id at the same absolute position t; only the run from t = 0 counts (cumprod).
    Backward: the same with positions counted from each completion's own end. Weight per direction: W in a
    positive completion, 0 in a negative one, 1 outside the run; the two directions multiply.
    Returns (delta [B][L_i], in_any_run [B][L_i]).
    """
    B = len(toks)
    sign = [1 if a > 0 else (-1 if a < 0 else 0) for a in seq_adv]
    delta, conflict = [], []
    for i in range(B):
        L = lengths[i]
        fwd, bwd = [False] * L, [False] * L
        if sign[i] != 0:
            opposite = [j for j in range(B) if group[j] == group[i] and sign[j] == -sign[i]]
            for t in range(L):
                if any(t < lengths[j] and toks[j][t] == toks[i][t] for j in opposite):
                    fwd[t] = True
                else:
                    break
            for s in range(L):  # s-th token from the end
                t = L - 1 - s
                if any(s < lengths[j] and toks[j][lengths[j] - 1 - s] == toks[i][t] for j in opposite):
                    bwd[t] = True
                else:
                    break
        w_run = W if sign[i] > 0 else 0.0
        delta.append([(w_run if fwd[t] else 1.0) * (w_run if bwd[t] else 1.0) for t in range(L)])
        conflict.append([fwd[t] or bwd[t] for t in range(L)])
    return delta, conflict


def ref_gtpo_token_advantages(group, lengths, toks, seq_adv, ent, *, W, thr, coef, normalize):
    """Official UnslothEfficientGTPO.forward + gtpo_compute_loss: per token δ_t · A'_i (/ n_conflict_i)."""
    delta, conflict = ref_gtpo_weights(group, lengths, toks, seq_adv, W)
    out = []
    for i in range(len(toks)):
        H = sum(ent[i][: lengths[i]]) / lengths[i]  # mean token entropy of the completion
        kept = H <= thr  # noqa: SIM300 (code: low_ent = entropies <= ENT_THRESHOLD)
        shaped = seq_adv[i] - coef * H if kept else 0.0
        n_conf = max(1, sum(conflict[i])) if normalize else 1
        out.append([delta[i][t] * shaped / n_conf for t in range(lengths[i])])
    return out


def ref_seq_mean_loss(token_adv, logp, lengths):
    """-1/B Σ_i 1/L_i Σ_t A_{i,t} ρ_{i,t} with ρ = exp(logp - sg(logp)) (value 1, gradient d logp)."""
    B = len(token_adv)
    total = 0.0
    for i in range(B):
        row = 0.0
        for t in range(lengths[i]):
            ratio = torch.exp(logp[i, t] - logp[i, t].detach())
            row = row - token_adv[i][t] * ratio
        total = total + row / lengths[i]
    return total / B


def gtpo_batch(seed, sizes, T=7, vocab=3):
    gen = torch.Generator().manual_seed(seed)
    group = shuffled_groups(gen, sizes)
    B = len(group)
    mask, lengths = right_padded(gen, B, T)
    ids = shared_token_ids(gen, group, mask, vocab)
    seq_adv = torch.randn(B, generator=gen)
    seq_adv[torch.rand(B, generator=gen) < 0.2] = 0.0  # some inactive completions
    ent = torch.rand(B, T, generator=gen) * 1.3  # per-token entropies: mean H straddles the 0.7 threshold
    ent = torch.where(mask, ent, torch.full((B, T), 55.0))  # garbage at padding
    rollout = Rollout(group=group, mask=mask, reward=torch.zeros(B), extras={"token_ids": ids, "old_entropy": ent})
    toks = [[int(ids[i, t]) for t in range(lengths[i])] for i in range(B)]
    return rollout, broadcast(seq_adv, mask), group.tolist(), lengths, toks, seq_adv.tolist(), ent.tolist()


GTPO_CASES = [
    (0, [4, 1, 3, 2]),
    (1, [8]),
    (2, [1, 1, 1]),
    (3, [5, 5, 2]),
    (4, [3, 6, 1, 4]),
]


@pytest.mark.parametrize("seed,sizes", GTPO_CASES)
@pytest.mark.parametrize(
    "W,thr,coef,normalize", [(2.0, 0.7, 0.1, False), (3.0, 0.9, 0.25, True), (2.0, 10.0, 0.0, False)]
)
def test_gtpo_selector_and_loss_equal_the_official_code_as_loops(seed, sizes, W, thr, coef, normalize):
    rollout, adv, group, lengths, toks, seq_adv, ent = gtpo_batch(seed, sizes)
    hp = dict(conflict_weight=W, entropy_threshold=thr, entropy_coef=coef, normalize_by_conflicts=normalize)
    expected = ref_gtpo_token_advantages(
        group, lengths, toks, seq_adv, ent, W=W, thr=thr, coef=coef, normalize=normalize
    )

    out, keep, _ = SELECTORS["gtpo"](rollout, adv, **hp)
    got = [[float(out[i, t]) for t in range(lengths[i]) if keep[i, t]] for i in range(len(lengths))]
    # every token stays in the loss (zero-weight tokens keep counting in 1/|o_i|, as the code's n_tok)
    assert bool(keep[rollout.mask].all())
    for i in range(len(lengths)):
        assert got[i] == pytest.approx(expected[i], abs=ATOL), f"completion {i}"

    # the loss and its gradient through the trainer's path, against the code's -1/G Σ_i 1/L_i Σ_t δ A' ρ
    gen = torch.Generator().manual_seed(100 + seed)
    logp = (-torch.rand(rollout.mask.shape, generator=gen)).requires_grad_(True)
    preset = PRESETS["gtpo"]
    value, *_ = pipeline_loss(
        "gtpo",
        rollout,
        adv,
        logp,
        loss=preset.loss.name,
        loss_hp=dict(preset.loss.params),
        aggregation=preset.aggregation,
        **hp,
    )
    (grad,) = torch.autograd.grad(value, logp)
    logp_ref = logp.detach().clone().requires_grad_(True)
    ref = ref_seq_mean_loss(expected, logp_ref, lengths)
    (grad_ref,) = torch.autograd.grad(ref, logp_ref)
    assert float(value.detach()) == pytest.approx(float(ref.detach()), abs=ATOL)
    assert torch.allclose(grad, grad_ref, atol=ATOL)


def test_gtpo_ties_at_the_threshold_and_a_zero_advantage_group():
    # H exactly at the threshold is kept (code: H <= ENT_THRESHOLD); a group with all A = 0 has no conflict
    # (no active completion) and each completion gets A' = 0 - coef*H (the code shapes inactive ones too).
    ids = torch.tensor([[5, 6], [5, 6], [5, 7]])
    mask = torch.ones(3, 2, dtype=torch.bool)
    ent = torch.tensor([[0.5, 0.5], [0.6, 0.6], [0.7, 0.7]])
    r = Rollout(
        group=torch.tensor([0, 0, 0]), mask=mask, reward=torch.zeros(3), extras={"token_ids": ids, "old_entropy": ent}
    )
    out, keep, _ = SELECTORS["gtpo"](r, torch.zeros(3, 2), entropy_threshold=0.6)
    assert torch.allclose(out, torch.tensor([[-0.05, -0.05], [-0.06, -0.06], [0.0, 0.0]]), atol=ATOL)
    assert bool(keep.all())


def test_gtpo_sign_is_read_before_the_entropy_shaping():
    # A = +0.01 with H = 0.5 shapes to 0.01 - 0.05 < 0, but the completion still counts as positive for the
    # conflict test (code: pos_flags from the raw advantages), so its shared first token weighs W = 2.
    ids = torch.tensor([[9, 1], [9, 2]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    ent = torch.full((2, 2), 0.5)
    r = Rollout(
        group=torch.tensor([0, 0]), mask=mask, reward=torch.zeros(2), extras={"token_ids": ids, "old_entropy": ent}
    )
    out, _, _ = SELECTORS["gtpo"](r, torch.tensor([[0.01, 0.01], [-0.01, -0.01]]))
    assert torch.allclose(out, torch.tensor([[2 * (0.01 - 0.05), 0.01 - 0.05], [0.0, -0.01 - 0.05]]), atol=ATOL)


def test_gtpo_preset_matches_the_official_config():
    p = PRESETS["gtpo"]
    sel = {s.name: dict(s.params) for s in p.selectors}["gtpo"]
    assert sel["conflict_weight"] == 2.0  # W_RAW
    assert sel["entropy_threshold"] == 0.7  # ENT_THRESHOLD / config.yaml ent_threshold
    assert sel["entropy_coef"] == 0.1  # ENT_SCALE
    assert p.trainer["num_generations"] == 8 and p.trainer["num_iterations"] == 1  # config.yaml
    assert not p.regularizers  # beta 0.0: no KL, no reference model
    assert p.aggregation == "seq_mean_token_mean"  # 1/G Σ_i 1/|o_i| Σ_t
    # the paper's A_i is GRPO's group-normalised advantage; the official _prepare_inputs uses rewards - mean (its
    # std division is commented out): the preset keeps the std and must say so (scale "none" gives the code's)
    assert p.advantage.name == "grpo" and p.advantage.params.get("scale") == "group"
    assert "commented out" in p.notes and "ln 2" in p.notes


# =============================================================================================== D³S reference
def brute_force_max_var(values: list[float], m: int) -> float:
    """Largest population variance of any m-subset (PODS / D³S criterion), by enumeration."""
    best = -1.0
    for sub in itertools.combinations(values, m):
        mu = sum(sub) / m
        best = max(best, sum((x - mu) ** 2 for x in sub) / m)
    return best


def var(xs: list[float]) -> float:
    mu = sum(xs) / len(xs)
    return sum((x - mu) ** 2 for x in xs) / len(xs)


def ref_schedule(step, total, start, end, kind):
    """Curriculum from start (step 0) to end (last step) — linear, or cosine (half cosine, monotone)."""
    progress = 1.0 if total <= 1 else min(1.0, step / (total - 1))
    if kind == "linear":
        return start + (end - start) * progress
    return start + (end - start) * (1 - math.cos(math.pi * progress)) / 2


def d3s_batch(seed, sizes, T=6, ties=False):
    gen = torch.Generator().manual_seed(seed)
    group = shuffled_groups(gen, sizes)
    B = len(group)
    mask, lengths = right_padded(gen, B, T)
    reward = torch.randint(0, 3, (B,), generator=gen).double() if ties else torch.rand(B, generator=gen)
    rollout = Rollout(group=group, mask=mask, reward=reward, extras={})
    adv = ADVANTAGES["grpo"](rollout)  # [B, T], 0 at padding
    ent = torch.where(mask, torch.rand(B, T, generator=gen), torch.full((B, T), 99.0))
    rollout = rollout.replace(extras={"old_entropy": ent})
    return rollout, adv, lengths


@pytest.mark.parametrize("seed,sizes", [(0, [8, 3, 1, 5]), (1, [6, 6]), (2, [1, 2, 7]), (3, [4, 4, 4, 4])])
@pytest.mark.parametrize("step,total", [(0, 10), (4, 10), (9, 10), (3, 7)])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_d3s_intra_group_equals_brute_force_and_the_top_score_tokens(seed, sizes, step, total, kind):
    rollout, adv, lengths = d3s_batch(seed, sizes)
    hp = dict(
        step=step,
        total_steps=total,
        sample_ratio_start=0.25,
        sample_ratio_end=1.0,
        token_ratio_start=0.2,
        token_ratio_end=1.0,
        schedule=kind,
        sample_scope="group",
        token_scope="batch",
    )
    rho_s = ref_schedule(step, total, 0.25, 1.0, kind)
    rho_t = ref_schedule(step, total, 0.2, 1.0, kind)
    out, keep, _ = SELECTORS["d3s"](rollout, adv, **hp)
    assert torch.equal(out * rollout.mask, adv * rollout.mask)  # advantages are not rescaled
    rows = keep.any(dim=-1)
    group = rollout.group.tolist()
    seq_adv = adv[:, 0].tolist()
    # sample level: per group exactly m = ceil(ρ n) rollouts and the largest variance of any m-subset
    for g in set(group):
        members = [i for i in range(len(group)) if group[i] == g]
        n = len(members)
        m = math.ceil(rho_s * n - 1e-9)
        chosen = [i for i in members if rows[i]]
        # a kept rollout may lose all its tokens at the token level: count the sample-level choice separately
        assert len(chosen) <= m
    # rebuild the sample level independently: the selector with token ratio 1 keeps every token of the subset
    _, keep_s, _ = SELECTORS["d3s"](rollout, adv, **{**hp, "token_ratio_start": 1.0, "token_ratio_end": 1.0})
    rows_s = keep_s.any(dim=-1)
    for g in set(group):
        members = [i for i in range(len(group)) if group[i] == g]
        m = math.ceil(rho_s * len(members) - 1e-9)
        chosen = [seq_adv[i] for i in members if rows_s[i]]
        assert len(chosen) == m
        assert var(chosen) == pytest.approx(brute_force_max_var([seq_adv[i] for i in members], m), abs=1e-9)
        for i in members:
            if rows_s[i]:
                assert bool(keep_s[i][rollout.mask[i]].all())
    # token level: among the kept rollouts' tokens exactly ceil(ρ_tok N) with the largest |A|·H
    ent = rollout.extras["old_entropy"]
    cand = [
        (abs(float(adv[i, t])) * float(ent[i, t]), i, t)
        for i in range(len(group))
        if rows_s[i]
        for t in range(lengths[i])
    ]
    k = math.ceil(rho_t * len(cand) - 1e-9)
    kept_scores = sorted((s for s, i, t in cand if keep[i, t]), reverse=True)
    dropped = [s for s, i, t in cand if not keep[i, t]]
    assert len(kept_scores) == k
    assert kept_scores == pytest.approx(sorted((s for s, _, _ in cand), reverse=True)[:k], abs=1e-12)
    if dropped and kept_scores:
        assert max(dropped) <= min(kept_scores) + 1e-12
    assert not bool((keep & ~rollout.mask).any())
    assert not bool((keep & ~rows_s[:, None]).any())  # no token of a dropped rollout

    # loss and gradient through the trainer: GRPO's 1/|kept o_i| over kept tokens, mean over kept rollouts
    gen = torch.Generator().manual_seed(7 + seed)
    logp = (-torch.rand(rollout.mask.shape, generator=gen)).requires_grad_(True)
    value, *_ = pipeline_loss("d3s", rollout, adv, logp, aggregation="seq_mean_token_mean", **hp)
    (grad,) = torch.autograd.grad(value, logp)
    logp_ref = logp.detach().clone().requires_grad_(True)
    ref, n_rows = 0.0, 0
    for i in range(len(group)):
        toks = [t for t in range(lengths[i]) if keep[i, t]]
        if not toks:
            continue
        n_rows += 1
        ratio = [torch.exp(logp_ref[i, t] - logp_ref[i, t].detach()) for t in toks]  # value 1, with gradient
        ref = ref + sum(-float(adv[i, t]) * q for t, q in zip(toks, ratio, strict=True)) / len(toks)
    ref = ref / n_rows
    (grad_ref,) = torch.autograd.grad(ref, logp_ref)
    assert float(value.detach()) == pytest.approx(float(ref.detach()), abs=ATOL)
    assert torch.allclose(grad, grad_ref, atol=ATOL)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.75])
def test_d3s_max_variance_with_ties_and_across_the_batch(seed, ratio):
    rollout, adv, _ = d3s_batch(seed, [5, 3, 1, 6], ties=True)
    seq_adv = adv[:, 0].tolist()
    for scope in ("group", "batch"):
        _, keep, _ = SELECTORS["d3s"](
            rollout, adv, step=0, total_steps=5, sample_ratio_start=ratio, token_ratio_start=1.0, sample_scope=scope
        )
        rows = keep.any(dim=-1).tolist()
        sets = (
            [list(range(len(seq_adv)))]
            if scope == "batch"
            else [[i for i in range(len(seq_adv)) if int(rollout.group[i]) == g] for g in range(rollout.num_groups)]
        )
        for members in sets:
            m = math.ceil(ratio * len(members) - 1e-9)
            chosen = [seq_adv[i] for i in members if rows[i]]
            assert len(chosen) == m
            assert var(chosen) == pytest.approx(brute_force_max_var([seq_adv[i] for i in members], m), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_d3s_token_level_per_sequence_equals_a_loop(seed):
    rollout, adv, lengths = d3s_batch(seed, [4, 2, 1, 5])
    ratio = 0.35
    _, keep, _ = SELECTORS["d3s"](
        rollout, adv, step=0, total_steps=4, sample_ratio_start=1.0, token_ratio_start=ratio, token_scope="sequence"
    )
    ent = rollout.extras["old_entropy"]
    for i, L in enumerate(lengths):
        scores = [abs(float(adv[i, t])) * float(ent[i, t]) for t in range(L)]
        k = math.ceil(ratio * L - 1e-9)
        kept = [scores[t] for t in range(L) if keep[i, t]]
        assert len(kept) == k
        assert sorted(kept, reverse=True) == pytest.approx(sorted(scores, reverse=True)[:k], abs=1e-12)
        assert not bool(keep[i, L:].any())


def test_d3s_spec_examples():
    # spec part B §4: A = [-2, -1, 0, 1, 2], m = 2 -> {-2, 2}
    r = Rollout(
        group=torch.zeros(5, dtype=torch.long),
        mask=torch.ones(5, 1, dtype=torch.bool),
        reward=torch.zeros(5),
        extras={"old_entropy": torch.ones(5, 1)},
    )
    a = torch.tensor([[-2.0], [-1.0], [0.0], [1.0], [2.0]])
    _, keep, _ = SELECTORS["d3s"](r, a, step=0, total_steps=3, sample_ratio_start=0.4, token_ratio_start=1.0)
    assert keep[:, 0].tolist() == [True, False, False, False, True]
    # token mask: ρ = 0.5 and scores [4, 1, 3, 0] -> tokens 0 and 2
    r = Rollout(
        group=torch.zeros(1, dtype=torch.long),
        mask=torch.ones(1, 4, dtype=torch.bool),
        reward=torch.zeros(1),
        extras={"old_entropy": torch.tensor([[4.0, 1.0, 3.0, 0.0]])},
    )
    _, keep, _ = SELECTORS["d3s"](
        r, torch.ones(1, 4), step=0, total_steps=3, sample_ratio_start=1.0, token_ratio_start=0.5
    )
    assert keep[0].tolist() == [True, False, True, False]


# ============================================================================================ DaGRPO reference
def levenshtein(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[-1]


def ref_dagrpo(group, reward, toks, scores, *, tau, distance, ddof=1, eps=1e-6):
    B = len(group)
    out = []
    for i in range(B):
        members = [j for j in range(B) if group[j] == group[i]]
        n = len(members)
        mu = sum(reward[j] for j in members) / n
        std = math.sqrt(sum((reward[j] - mu) ** 2 for j in members) / (n - ddof)) if n > ddof else 0.0
        total = 0.0
        for j in members:
            if distance == "edit":
                d = levenshtein(toks[i], toks[j]) / max(len(toks[i]), len(toks[j]))
            else:
                d = abs(scores[i] - scores[j])
            if d >= tau:
                total += reward[i] - reward[j]
        out.append(total / (n * (std + eps)))
    return out


@pytest.mark.parametrize("seed,sizes", [(0, [4, 1, 3, 2]), (1, [8]), (2, [1, 1]), (3, [5, 6, 2])])
@pytest.mark.parametrize("tau,distance", [(0.1, "edit"), (0.4, "edit"), (0.0, "edit"), (0.3, "score")])
def test_dagrpo_advantage_equals_the_pairwise_loop(seed, sizes, tau, distance):
    gen = torch.Generator().manual_seed(seed)
    group = shuffled_groups(gen, sizes)
    B = len(group)
    mask, lengths = right_padded(gen, B, 6)
    ids = shared_token_ids(gen, group, mask, vocab=3)
    reward = torch.randint(0, 3, (B,), generator=gen).double()  # ties in the rewards
    scores = torch.rand(B, generator=gen)
    r = Rollout(group=group, mask=mask, reward=reward, extras={"token_ids": ids, "distinct_score": scores})
    got = ADVANTAGES["dagrpo"](r, threshold=tau, distance=distance)
    toks = [[int(ids[i, t]) for t in range(lengths[i])] for i in range(B)]
    exp = ref_dagrpo(group.tolist(), reward.tolist(), toks, scores.tolist(), tau=tau, distance=distance)
    assert torch.allclose(got, broadcast(torch.tensor(exp), mask, 0.0), atol=ATOL)
    if tau == 0.0:  # every pair kept: exactly GRPO's advantage
        assert torch.allclose(got, ADVANTAGES["grpo"](r), atol=ATOL)


def test_dagrpo_preset_interpretation_is_documented_as_unverified():
    p = PRESETS["dagrpo"]
    assert p.advantage.name == "dagrpo"
    assert "UNVERIFIED" in p.notes
    assert [s.name for s in p.rollout] == ["expert_anchors", "token_ids"]  # token ids also of the anchors
