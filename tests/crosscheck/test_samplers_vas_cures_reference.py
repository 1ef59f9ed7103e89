"""Independent cross-check of the VAS (MMR1) and CurES prompt samplers against plain-loop reference implementations.

Written from the papers and the official code, not from grpolab's implementation:

- MMR1 / VAS (arXiv 2509.21268; official code LengSicong/MMR1): ``verl/curriculum/metrics.py``
  (``calculate_learnability_metric``, ``calculate_pairwise_edit_distance``, ``calculate_distinct_n``,
  ``calculate_self_bleu_123``, ``combine_metric_results``), ``verl/curriculum/samplers.py``
  (``MixedCurriculumSampler``), ``verl/trainer/ray_trainer.py`` (``_compute_curriculum_weights``: min-max with
  1e-8; ``_update_curriculum_weights``: momentum; the refresh at ``global_step % curriculum_update_freq == 0``),
  ``examples/mmr1.yaml`` and ``TRAIN.MD``.
- CurES (arXiv 2510.01037; official code ZexuSun/CurES): ``epic/epic_sampler.py`` (``EpicSampler``),
  ``epic/stage_0_init_difficulty_sample_size.py`` (``EPICInitializer.update_difficulty``, ``init_sample_size``,
  ``cal_grad_logp``), ``epic/epic_ray_trainer.py`` (``my_repeat``: n_i = 0 prompts are skipped),
  ``runs/scripts/run_epic.sh``.

The numbers in ``OFFICIAL`` were computed with the official ``calculate_self_bleu_123`` (nltk 3.10.4,
``sentence_bleu`` with ``SmoothingFunction().method1``), ``calculate_distinct_n`` and, for the raw edit distances,
python-Levenshtein's ``distance`` (the code's metric), outside this repository.

grpolab's documented deviations are tested as documented (see each test's comment): TDS edit distance normalised by
the longer length, 1 − self-BLEU, TDS 0 for a single completion, a scored pool instead of the whole data set, a
uniform fall-back when every VAS weight is 0; CurES's budget shared over the drawn batch, n_i = 0 prompts replaced by
the next draw, N_max each when every σ is 0, counts updated by training groups, gradient of the tempered policy.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter

import pytest
import torch

from grpolab.core.cures import allocation_sigma, posterior_accuracy, rollout_allocation, sampling_distribution
from grpolab.core.vas import (
    min_max_normalize,
    momentum_update,
    outcome_variance,
    trajectory_diversity,
    variance_promotion_score,
)
from grpolab.data.cures import CurESSampler
from grpolab.data.sampler import Observation, UniformSampler
from grpolab.data.vas import VASSampler
from grpolab.trainer.logprob import sequence_grad_norms

# The VAS sampler scores in float32, as the official code does (``curriculum_weights`` is a float32 tensor, so the
# 1e-8 of the min-max denominator vanishes next to a range of 0.25): its weights are compared to 1e-6.
W_TOL = 1e-6


@pytest.fixture(autouse=True, scope="module")
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ================================================================================================ VAS references
def ref_learnability(accuracies: list[list[float]]) -> list[float]:
    """metrics.py calculate_learnability_metric: pass_rate = mean accuracy, learnability = p(1 − p)."""
    out = []
    for acc in accuracies:
        p = sum(acc) / len(acc)
        out.append(p * (1 - p))
    return out


def ref_levenshtein(a: list[int], b: list[int]) -> int:
    """Textbook Wagner-Fischer (unit costs), what python-Levenshtein's ``distance`` returns."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def ref_raw_edit(group: list[list[int]]) -> float:
    """metrics.py calculate_pairwise_edit_distance: mean raw distance over pairs, 0 below two sequences."""
    d = [ref_levenshtein(group[i], group[j]) for i in range(len(group)) for j in range(i + 1, len(group))]
    return sum(d) / len(d) if d else 0.0


def ref_edit_tds(group: list[list[int]]) -> float:
    """grpolab's DOCUMENTED normalisation: each pair's distance / the longer length (0 for two empty ones)."""
    d = []
    for i in range(len(group)):
        for j in range(i + 1, len(group)):
            longer = max(len(group[i]), len(group[j]))
            d.append(ref_levenshtein(group[i], group[j]) / longer if longer else 0.0)
    return sum(d) / len(d) if d else 0.0


def ref_distinct_n(group: list[list[int]], n: int) -> float:
    """metrics.py calculate_distinct_n, verbatim."""
    all_ngrams = []
    for seq in group:
        all_ngrams.extend(list(zip(*[seq[i:] for i in range(n)], strict=False)))
    if not all_ngrams:
        return 0.0
    return len(set(all_ngrams)) / len(all_ngrams)


def ref_sentence_bleu_123(refs: list[list[int]], hyp: list[int]) -> float:
    """nltk.translate.bleu_score.sentence_bleu(refs, hyp, weights=(1/3,)*3, smoothing_function=method1), rewritten:
    modified_precision (clipped counts / max(1, hyp n-grams)), ``corpus_bleu``'s early 0 when no unigram matches,
    method1 (numerator 0 -> 0.1 / denominator), brevity penalty with the closest reference length (ties: shorter)."""
    precisions = []
    for n in (1, 2, 3):
        hyp_counts = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        max_ref: dict[tuple[int, ...], int] = {}
        for ref in refs:
            ref_counts = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            for gram in hyp_counts:
                max_ref[gram] = max(max_ref.get(gram, 0), ref_counts[gram])
        numerator = sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
        denominator = max(1, sum(hyp_counts.values()))
        precisions.append((numerator, denominator))
    if precisions[0][0] == 0:
        return 0.0
    c = len(hyp)
    r = min((len(ref) for ref in refs), key=lambda length: (abs(length - c), length))
    bp = 1.0 if c > r else (0.0 if c == 0 else math.exp(1 - r / c))
    logs = [math.log((num if num > 0 else 0.1) / den) / 3 for num, den in precisions]
    return bp * math.exp(math.fsum(logs))


def ref_self_bleu_123(group: list[list[int]]) -> float:
    """metrics.py calculate_self_bleu_123: mean over hypotheses of BLEU against the others; 0 below two."""
    if len(group) < 2:
        return 0.0
    scores = [ref_sentence_bleu_123(group[:i] + group[i + 1 :], hyp) for i, hyp in enumerate(group)]
    return sum(scores) / len(scores)


def ref_min_max(v: list[float]) -> list[float]:
    """ray_trainer.py _compute_curriculum_weights: (v − min) / (max − min + 1e-8)."""
    lo, hi = min(v), max(v)
    return [(x - lo) / (hi - lo + 1e-8) for x in v]


def ref_interleave(weighted: list[int], uniform: list[int]) -> list[int]:
    """samplers.py MixedCurriculumSampler.__iter__: w0, u0, w1, u1, ... then the longer list's tail."""
    out = []
    for i in range(max(len(weighted), len(uniform))):
        if i < len(weighted):
            out.append(weighted[i])
        if i < len(uniform):
            out.append(uniform[i])
    return out


# The official metrics on fixed groups (computed outside this repo, see the module docstring):
# (group, self-BLEU-123 from nltk, distinct-3, distinct-2, raw mean pairwise Levenshtein distance)
OFFICIAL = [
    ([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [7, 8, 9]], 0.4912041998187182, 0.7142857142857143, 0.7, 3.6666666666666665),
    ([[5, 5, 5, 5], [5, 5, 5, 5]], 1.0, 0.25, 0.16666666666666666, 0.0),
    (
        [[1, 2], [2, 1], [1, 2, 1, 2, 1]],
        0.37217499083292055,
        0.6666666666666666,
        0.3333333333333333,
        2.6666666666666665,
    ),
    (
        [[4, 9, 4, 9, 4, 9, 4], [9, 4, 9, 4], [4, 4, 4, 9, 9, 9], [3]],
        0.3266975557217232,
        0.5454545454545454,
        0.2857142857142857,
        4.5,
    ),
    ([[1, 2, 3], [4, 5, 6]], 0.0, 1.0, 1.0, 3.0),
    ([[1], [1, 1, 1, 1, 1, 1, 1, 1]], 0.0155931818630176, 0.16666666666666666, 0.14285714285714285, 7.0),
    ([[], [1, 2, 3], [1, 2, 3]], 0.6666666666666666, 0.5, 0.5, 2.0),
]


def random_groups(gen: random.Random, num: int, *, vocab: int = 4, max_len: int = 9, max_size: int = 6):
    """Groups of token-id lists with many shared tokens (small vocab), some empty sequences and singletons."""
    groups = []
    for _ in range(num):
        size = gen.randint(1, max_size)
        groups.append([[gen.randrange(vocab) for _ in range(gen.randint(0, max_len))] for _ in range(size)])
    return groups


# ======================================================================================== VAS: the pure functions
def test_references_reproduce_the_official_numbers():
    """Sanity of the references themselves: they give nltk's / python-Levenshtein's numbers."""
    for group, bleu, d3, d2, raw in OFFICIAL:
        assert ref_self_bleu_123(group) == pytest.approx(bleu, abs=1e-12)
        assert ref_distinct_n(group, 3) == pytest.approx(d3, abs=1e-12)
        assert ref_distinct_n(group, 2) == pytest.approx(d2, abs=1e-12)
        assert ref_raw_edit(group) == pytest.approx(raw, abs=1e-12)
    assert ref_levenshtein(list("kitten"), list("sitting")) == 3


def test_tds_on_the_official_examples():
    groups = [g for g, *_ in OFFICIAL]
    # self_bleu: documented diversity form 1 − self-BLEU (the code adds raw self-BLEU with a positive weight)
    got = trajectory_diversity(groups, measure="self_bleu")
    assert got.tolist() == pytest.approx([1 - bleu for _, bleu, *_ in OFFICIAL], abs=1e-12)
    # distinct-n: the code's metric (every example has >= 2 completions)
    assert trajectory_diversity(groups, measure="distinct_n").tolist() == pytest.approx(
        [d3 for *_, d3, _, _ in OFFICIAL]
    )
    assert trajectory_diversity(groups, measure="distinct_n", n=2).tolist() == pytest.approx(
        [d2 for *_, d2, _ in OFFICIAL]
    )
    # edit distance: documented normalisation by the longer length (the code averages raw distances)
    assert trajectory_diversity(groups).tolist() == pytest.approx([ref_edit_tds(g) for g in groups], abs=1e-12)
    # e.g. [1,2,3] vs [4,5,6]: raw 3 (code) -> 3 / 3 = 1 (grpolab)
    assert trajectory_diversity([[[1, 2, 3], [4, 5, 6]]]).tolist() == [1.0]


@pytest.mark.parametrize("seed", range(6))
def test_tds_equals_the_loops_on_random_groups(seed):
    gen = random.Random(seed)
    groups = random_groups(gen, 7)
    multi = [g for g in groups if len(g) >= 2]
    single = [len(g) < 2 for g in groups]
    edit = trajectory_diversity(groups, measure="edit_distance")
    for g, got, one in zip(groups, edit.tolist(), single, strict=True):
        assert got == pytest.approx(0.0 if one else ref_edit_tds(g), abs=1e-12)
    for n in (1, 2, 3, 4):
        got = trajectory_diversity(groups, measure="distinct_n", n=n).tolist()
        # documented: a single completion has TDS 0 (the code's distinct-n would score the lone sequence)
        assert got == pytest.approx(
            [0.0 if one else ref_distinct_n(g, n) for g, one in zip(groups, single, strict=True)]
        )
    bleu = trajectory_diversity(groups, measure="self_bleu").tolist()
    assert bleu == pytest.approx(
        [0.0 if one else 1 - ref_self_bleu_123(g) for g, one in zip(groups, single, strict=True)]
    )
    assert multi  # the random groups do exercise the pairwise path
    for got in (edit, torch.tensor(bleu)):
        assert bool((got >= -1e-12).all()) and bool((got <= 1 + 1e-12).all())


def test_edit_distance_on_long_and_one_sided_empty_pairs():
    gen = random.Random(11)
    pairs = [([], []), ([], [1, 2]), ([3, 3, 3], []), ([1] * 20, [1] * 3 + [2] * 30)]
    pairs += [([gen.randrange(3) for _ in range(gen.randint(0, 40))], [gen.randrange(3) for _ in range(30)])]
    for a, b in pairs:
        longer = max(len(a), len(b))
        expected = ref_levenshtein(a, b) / longer if longer else 0.0
        assert trajectory_diversity([[a, b]]).tolist() == pytest.approx([expected], abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ovs_vps_min_max_momentum_equal_the_code(seed):
    gen = random.Random(seed)
    sizes = [gen.randint(1, 8) for _ in range(6)]
    accs = [[float(gen.random() < 0.5) if gen.random() < 0.8 else gen.random() for _ in range(s)] for s in sizes]
    # non-contiguous group ids
    flat = [(i, a) for i, acc in enumerate(accs) for a in acc]
    gen.shuffle(flat)
    group = torch.tensor([i for i, _ in flat])
    accuracy = torch.tensor([a for _, a in flat])
    ovs = outcome_variance(accuracy, group)
    assert ovs.tolist() == pytest.approx(ref_learnability(accs), abs=1e-12)
    tds = torch.tensor([gen.random() for _ in sizes])
    w_ovs, w_tds = gen.choice([(0.8, 0.2), (0.7, 0.3), (1.0, 0.0)])
    vps = variance_promotion_score(ovs, tds, ovs_weight=w_ovs, tds_weight=w_tds)
    expected_vps = [w_ovs * o + w_tds * t for o, t in zip(ref_learnability(accs), tds.tolist(), strict=True)]
    assert vps.tolist() == pytest.approx(expected_vps, abs=1e-12)  # combine_metric_results
    assert min_max_normalize(vps).tolist() == pytest.approx(ref_min_max(expected_vps), abs=1e-12)
    old = torch.tensor([gen.random() for _ in sizes])
    for m in (0.0, 0.3, 1.0):
        got = momentum_update(old, vps, momentum=m).tolist()
        assert got == pytest.approx(
            [m * o + (1 - m) * v for o, v in zip(old.tolist(), expected_vps, strict=True)], abs=1e-12
        )


def test_spec_examples_vas():
    g8 = torch.zeros(8, dtype=torch.long)
    assert outcome_variance(torch.tensor([1.0] * 4 + [0.0] * 4), g8).tolist() == [0.25]
    assert outcome_variance(torch.ones(8), g8).tolist() == [0.0]
    assert outcome_variance(torch.zeros(8), g8).tolist() == [0.0]
    w = min_max_normalize(torch.tensor([0.3, -2.0, 5.0, 5.0, 0.0]))
    assert float(w.min()) == 0.0 and 0.999 < float(w.max()) <= 1.0


# ============================================================================================ VAS: the sampler
def estimation(sampler, accs, comps=None, *, step=0, B=4, G=8):
    """Run the estimation round of ``step``: request -> observe (nothing kept); returns the pool rows."""
    req = sampler.request(B, G, step=step, total_steps=100)
    assert len(req.rows) == len(accs) and req.num_generations == [len(a) for a in accs]
    acc = [torch.tensor(a) for a in accs]
    comps = comps if comps is not None else [[[k] for k in range(len(a))] for a in accs]
    assert sampler.observe(Observation(req.rows, acc, acc, comps, step=step)) == [False] * len(accs)
    return req.rows


@pytest.mark.parametrize(("B", "ratio"), [(8, 0.5), (7, 0.8), (5, 0.3), (6, 1.0), (6, 0.0), (10, 0.7), (3, 0.5)])
def test_vas_batch_is_the_official_interleave_of_int_B_ratio_weighted_rows(B, ratio):
    """MixedCurriculumSampler: n_w = int(B * ratio) weighted rows interleaved with B − n_w uniform rows. One pool row
    has OVS 0.25 and the rest 0, so min-max gives it the only positive weight: every weighted slot holds it; the uniform
    slots continue the seeded epoch order (UniformSampler with the same seed)."""
    s = VASSampler(20, seed=3, mixture_ratio=ratio, pool_size=5, curriculum_rollouts=2, weights=(1.0, 0.0))
    pool = estimation(s, [[1.0, 0.0]] + [[1.0, 1.0]] * 4)
    assert s.weight(pool[0]) == pytest.approx(0.25 / (0.25 + 1e-8), abs=W_TOL) and all(
        s.weight(r) == 0 for r in pool[1:]
    )
    uniform = UniformSampler(20, seed=3)
    n_w = int(B * ratio)
    for _ in range(3):
        req = s.request(B, 8, step=0, total_steps=100)
        assert req.rows == ref_interleave([pool[0]] * n_w, uniform.next(B - n_w))
        assert req.num_generations == [8] * B
        assert s.observe(Observation(req.rows, [torch.ones(8)] * B, [torch.ones(8)] * B, step=0)) == [True] * B


def test_vas_weighted_draws_are_proportional_to_min_max_vps():
    """Every row scored (pool = the whole set, as in the paper); the weighted slot (position 0 of a B = 2, λ = 0.5
    batch) is drawn with replacement ∝ the min-max normalised VPS (WeightedRandomSampler)."""
    gen = random.Random(5)
    accs = [
        [1.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 1.0, 1.0],
        [0.0, 1.0, 1.0, 1.0],
        [0.0] * 4,
        [1.0] * 4,
    ]
    comps = [[[gen.randrange(3) for _ in range(gen.randint(1, 6))] for _ in range(4)] for _ in accs]
    s = VASSampler(6, seed=1, pool_size=64, curriculum_rollouts=4, weights=(0.8, 0.2), diversity="edit_distance")
    pool = estimation(s, accs, comps)
    assert pool == list(range(6))
    vps = [0.8 * o + 0.2 * ref_edit_tds(c) for o, c in zip(ref_learnability(accs), comps, strict=True)]
    w = ref_min_max(vps)
    assert [s.weight(r) for r in range(6)] == pytest.approx(w, abs=W_TOL)
    draws = 6000
    counts = Counter(s.request(2, 4, step=0, total_steps=100).rows[0] for _ in range(draws))
    for r in range(6):
        p = w[r] / sum(w)
        assert abs(counts[r] / draws - p) <= 5 * math.sqrt(p * (1 - p) / draws) + 1e-12, (r, counts[r], p)


def test_vas_momentum_and_refresh_schedule_equal_the_code():
    """curriculum_update_freq = 2 and momentum 0.4 over a fully scored set: the code refreshes before (1-indexed)
    steps 1, 3, 5 (global_step % 2 == 0 after steps 2, 4), i.e. 0-indexed steps 0, 2, 4; the first refresh takes the
    new weights, later ones w <- m w_old + (1 − m) w_new."""
    gen = random.Random(2)
    s = VASSampler(5, seed=0, update_every=2, pool_size=8, curriculum_rollouts=3, momentum=0.4, weights=(0.7, 0.3))
    weights = None
    for step in range(6):
        if step % 2 == 0:
            accs = [[float(gen.random() < 0.5) for _ in range(3)] for _ in range(5)]
            comps = [[[gen.randrange(4) for _ in range(gen.randint(1, 5))] for _ in range(3)] for _ in range(5)]
            estimation(s, accs, comps, step=step)
            vps = [0.7 * o + 0.3 * ref_edit_tds(c) for o, c in zip(ref_learnability(accs), comps, strict=True)]
            new = ref_min_max(vps)
            weights = new if weights is None else [0.4 * o + 0.6 * n for o, n in zip(weights, new, strict=True)]
            assert [s.weight(r) for r in range(5)] == pytest.approx(weights, abs=W_TOL)
            assert s.metrics()["refreshed"] == 1.0
        req = s.request(4, 8, step=step, total_steps=6)  # the training batch, never an estimation round here
        assert req.num_generations == [8] * 4
        s.observe(Observation(req.rows, [torch.ones(8)] * 4, [torch.ones(8)] * 4, step=step))
        if step % 2 == 1:
            assert s.metrics()["refreshed"] == 0.0


def test_vas_pool_rows_outside_get_new_weight_zero_documented():
    """Documented interpretation: a refresh scores a random pool; rows outside it get a new weight of 0 before the
    momentum update (the code re-scores every row)."""
    s = VASSampler(30, seed=4, update_every=1, pool_size=4, curriculum_rollouts=2, momentum=0.5, weights=(1.0, 0.0))
    accs = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    first = estimation(s, accs, step=0)
    w = {r: v for r, v in zip(first, ref_min_max(ref_learnability(accs)), strict=True)}
    req = s.request(2, 2, step=0, total_steps=10)
    s.observe(Observation(req.rows, [torch.ones(2)] * 2, [torch.ones(2)] * 2, step=0))
    second = estimation(s, [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]], step=1)
    new = dict(zip(second, ref_min_max([0.25, 0.0, 0.0, 0.0]), strict=True))
    for r in range(30):
        expected = 0.5 * w.get(r, 0.0) + 0.5 * new.get(r, 0.0)
        assert s.weight(r) == pytest.approx(expected, abs=W_TOL)


def test_vas_all_equal_scores_fall_back_to_the_pool_documented():
    """Documented: all VPS equal -> every weight 0 -> the weighted part draws uniformly from the latest pool (the
    code's WeightedRandomSampler would raise on all-zero weights)."""
    s = VASSampler(50, seed=0, pool_size=5, curriculum_rollouts=2, weights=(1.0, 0.0))
    pool = estimation(s, [[1.0, 1.0]] * 5)
    assert all(s.weight(r) == 0.0 for r in range(50))
    seen = Counter()
    for _ in range(500):
        rows = s.request(4, 8, step=0, total_steps=10).rows
        seen.update(rows[0::2])  # weighted slots of a B = 4, λ = 0.5 batch: 0 and 2
    assert set(seen) == set(pool) and min(seen.values()) > 1000 / 5 * 0.7


# ============================================================================================== CurES references
def ref_beta_mean(accepted: int, total: int) -> float:
    """stage_0 update_difficulty: Beta(alpha + 1, beta + 1).mean with alpha = Accepted, beta = All − Accepted."""
    a, b = accepted + 1, total - accepted + 1
    return a / (a + b)


def ref_epic_probs(accepted: list[int], totals: list[int], scale: float = 1e-2) -> list[float]:
    """EpicSampler.__iter__: scores = exp(sqrt(d (1 − d)) / t), t = (alpha + 1) / 1e-2, probs = scores / sum."""
    scores = []
    for c, n in zip(accepted, totals, strict=True):
        d = ref_beta_mean(c, n)
        t = (c + 1) / scale
        scores.append(math.exp(math.sqrt(d * (1 - d)) / t))
    z = sum(scores)
    return [x / z for x in scores]


def ref_sigma(norms: list[float], correct: list[bool], n_min: int) -> float:
    """stage_0 init_sample_size + cal_grad_logp: a missing side's norms are [0]; alpha = #correct / N_min."""
    g_c = [g for g, ok in zip(norms, correct, strict=True) if ok] or [0.0]
    g_w = [g for g, ok in zip(norms, correct, strict=True) if not ok] or [0.0]
    a = sum(correct) / n_min
    b = (n_min - sum(correct)) / n_min
    mean_sq = lambda xs: sum(x * x for x in xs) / len(xs)  # noqa: E731
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    sigma2 = a * b**2 * mean_sq(g_c) + a**2 * b * mean_sq(g_w) - a**2 * b**2 * (mean(g_c) - mean(g_w)) ** 2
    return math.sqrt(sigma2) if sigma2 > 0 else 0.0  # (np.sqrt of a rounding-negative 0 would be nan)


def ref_allocation(sigmas: list[float], budget: int) -> list[int]:
    """init_sample_size: np.round(budget * sigma / sum(sigma)).astype(int); np.round = round half to even, as
    Python's round on a float."""
    z = sum(sigmas)
    return [round(budget * s / z) for s in sigmas]


def ref_without_replacement_inclusion(p: list[float], k: int) -> list[float]:
    """np.random.choice(replace=False, p=p) draws successively ∝ p among the rest: exact inclusion probability of
    each index in a k-subset, by enumerating the ordered draws."""
    out = [0.0] * len(p)

    def walk(prefix: list[int], prob: float) -> None:
        if len(prefix) == k:
            for i in prefix:
                out[i] += prob
            return
        rest = sum(p[j] for j in range(len(p)) if j not in prefix)
        for j in range(len(p)):
            if j not in prefix:
                walk([*prefix, j], prob * p[j] / rest)

    walk([], 1.0)
    return out


# ======================================================================================= CurES: the pure functions
def test_cures_posterior_and_the_code_sampling_distribution():
    gen = random.Random(0)
    totals = [gen.randint(0, 12) for _ in range(9)] + [4, 4, 0]
    accepted = [gen.randint(0, n) for n in totals[:9]] + [0, 4, 0]
    got = posterior_accuracy(torch.tensor(accepted), torch.tensor(totals)).tolist()
    assert got == pytest.approx([ref_beta_mean(c, n) for c, n in zip(accepted, totals, strict=True)], abs=1e-15)
    assert got[-3:] == pytest.approx([1 / 6, 5 / 6, 1 / 2])  # spec: c = 0 of 4 -> 1/6
    for scale in (1e-2, 1.0, 30.0):
        dist = sampling_distribution(torch.tensor(accepted), torch.tensor(totals), form="code", scale=scale)
        assert dist.tolist() == pytest.approx(ref_epic_probs(accepted, totals, scale), abs=1e-12)
        assert float(dist.sum()) == pytest.approx(1.0)
    # the code's default is within 0.5 % of uniform (every log-score <= 0.01 * 0.5)
    dist = sampling_distribution(torch.tensor(accepted), torch.tensor(totals))
    assert float(dist.max() / dist.min()) < math.exp(0.005) + 1e-12


def test_cures_entropy_form_is_the_documented_softmax():
    c, n = [0, 1, 2, 3, 4], [4, 4, 4, 4, 4]
    got = sampling_distribution(torch.tensor(c), torch.tensor(n), form="entropy", temperature=0.1).tolist()
    logits = [math.sqrt(ref_beta_mean(a, b) * (1 - ref_beta_mean(a, b))) / 0.1 for a, b in zip(c, n, strict=True)]
    z = sum(math.exp(x) for x in logits)
    assert got == pytest.approx([math.exp(x) / z for x in logits], abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_cures_sigma_equals_the_stage0_loop(seed):
    """Equal groups of N_min (as on an estimation round), non-contiguous ids, all-correct / all-wrong groups."""
    gen = random.Random(seed)
    n_min = gen.choice([2, 4, 8])
    P = 7
    norms = [[gen.uniform(0.0, 5.0) for _ in range(n_min)] for _ in range(P)]
    correct = [[gen.random() < 0.5 for _ in range(n_min)] for _ in range(P)]
    correct[0] = [True] * n_min
    correct[1] = [False] * n_min
    flat = [(i, g, ok) for i in range(P) for g, ok in zip(norms[i], correct[i], strict=True)]
    gen.shuffle(flat)
    got = allocation_sigma(
        torch.tensor([g for _, g, _ in flat]),
        torch.tensor([ok for _, _, ok in flat]),
        torch.tensor([i for i, _, _ in flat]),
        P,
    ).tolist()
    expected = [ref_sigma(norms[i], correct[i], n_min) for i in range(P)]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[0] == 0.0 and got[1] == 0.0  # spec: a = 1 (or 0) -> sigma 0 -> no rollouts


def test_cures_sigma_on_unequal_groups_uses_each_group_size():
    """Documented generalisation: a = c / n_i with n_i the group's size (N_min on an estimation round)."""
    norms = [[1.0, 2.0, 3.0], [4.0, 0.5], [2.0, 2.0, 2.0, 9.0, 1.0]]
    correct = [[True, False, False], [False, True], [True, True, False, True, False]]
    flat = [(i, g, ok) for i in range(3) for g, ok in zip(norms[i], correct[i], strict=True)]
    got = allocation_sigma(
        torch.tensor([g for _, g, _ in flat]),
        torch.tensor([ok for _, _, ok in flat]),
        torch.tensor([i for i, _, _ in flat]),
        3,
    ).tolist()
    assert got == pytest.approx([ref_sigma(norms[i], correct[i], len(norms[i])) for i in range(3)], abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_cures_allocation_equals_np_round(seed):
    gen = random.Random(seed)
    sigma = [gen.choice([0.0, gen.uniform(0, 3)]) for _ in range(9)] + [1.0]
    for n_max in (1, 4, 8, 16):
        got = rollout_allocation(torch.tensor(sigma), n_max=n_max).tolist()
        assert got == ref_allocation(sigma, len(sigma) * n_max)
        got = rollout_allocation(torch.tensor(sigma), n_max=n_max, num_prompts=3).tolist()
        assert got == ref_allocation(sigma, 3 * n_max)


def test_cures_allocation_ties_round_half_to_even_and_spec_examples():
    assert rollout_allocation(torch.tensor([1.0, 3.0]), n_max=1).tolist() == [0, 2]  # 0.5 -> 0, 1.5 -> 2
    assert rollout_allocation(torch.tensor([5.0, 11.0]), n_max=4).tolist() == [2, 6]  # 2.5 -> 2, 5.5 -> 6
    assert rollout_allocation(torch.tensor([3.0, 5.0]), n_max=4).tolist() == [3, 5]
    assert rollout_allocation(torch.full((6,), 0.7), n_max=8).tolist() == [8] * 6  # equal sigma: N_max each
    # documented convention (the code divides by zero): every sigma 0 -> N_max each
    assert rollout_allocation(torch.zeros(4), n_max=8).tolist() == [8] * 4


# ========================================================================================== CurES: the sampler
def cures_estimate(s, accs, norms, *, step=0, B=2, G=8):
    req = s.request(B, G, step=step)
    assert req.measure == frozenset({"grad_norms"}) and req.num_generations == [len(a) for a in accs]
    acc = [torch.tensor(a) for a in accs]
    keep = s.observe(Observation(req.rows, acc, acc, step=step, grad_norms=[torch.tensor(g) for g in norms]))
    assert keep == [False] * len(accs)
    return req.rows


def test_cures_pools_walk_the_seeded_epoch_order_and_refresh_every_window():
    """Estimation rounds at steps 0, 10, 20 (update_every = 10, the code's 10 steps per outer iteration), each pool
    the next distinct rows of the seeded epoch order; nothing between."""
    s = CurESSampler(40, seed=7, pool_size=6, n_min=2, update_every=10)
    order = UniformSampler(40, seed=7)
    for step in range(25):
        if step % 10 == 0:
            pool = cures_estimate(s, [[1.0, 0.0]] * 6, [[1.0, 2.0]] * 6, step=step)
            assert pool == order.next(6)
        req = s.request(2, 8, step=step)
        assert not req.measure and set(req.rows) <= set(pool)
    once = CurESSampler(40, seed=7, pool_size=6, n_min=2, update_every=0)
    cures_estimate(once, [[1.0, 0.0]] * 6, [[1.0, 2.0]] * 6, step=0)
    assert all(not once.request(2, 8, step=k).measure for k in range(1, 30))


def test_cures_probabilities_and_allocation_equal_the_code_on_the_pool():
    gen = random.Random(3)
    K, n_min, n_max = 8, 4, 8
    accs = [[float(gen.random() < 0.5) for _ in range(n_min)] for _ in range(K)]
    accs[0], accs[1] = [1.0] * 4, [0.0] * 4  # sigma 0: never trained (enough informative prompts)
    accs[2] = [1.0, 0.0, 1.0, 0.0]
    accs[3] = [0.0, 1.0, 0.0, 0.0]
    norms = [[gen.uniform(0.5, 3.0) for _ in range(n_min)] for _ in range(K)]
    s = CurESSampler(K, seed=0, pool_size=K, n_min=n_min, n_max=n_max)
    pool = cures_estimate(s, accs, norms)
    c = [int(sum(a > 0.5 for a in acc)) for acc in accs]
    assert s.pool_rows() == pool
    assert s.probabilities() == pytest.approx(ref_epic_probs(c, [n_min] * K), abs=1e-12)
    sigma = {pool[i]: ref_sigma(norms[i], [a > 0.5 for a in accs[i]], n_min) for i in range(K)}
    informative = {r for r, v in sigma.items() if v > 0}
    B = 3
    assert len(informative) >= B + 1
    for _ in range(50):
        req = s.request(B, 8, step=0)
        assert len(req.rows) == B == len(set(req.rows)) and set(req.rows) <= informative
        # documented: the B * N_max budget is shared by sigma over the drawn batch (the code: over all prompts)
        expected = ref_allocation([sigma[r] for r in req.rows], B * n_max)
        if min(expected) > 0:
            assert req.num_generations == expected


def test_cures_draw_is_successive_sampling_without_replacement():
    """The batch rows are a without-replacement draw ∝ P (np.random.choice(replace=False, p=P) in EpicSampler):
    inclusion frequencies of a 2-of-4 draw against the exact enumeration (form 'entropy' with a low temperature so the
    probabilities differ; every sigma > 0 and equal, so no allocation drop interferes)."""
    accs = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    norms = [[1.0] * 4] * 4  # equal norms: sigma = sqrt(a b^2 + a^2 b) = sqrt(a b) > 0
    s = CurESSampler(4, seed=2, pool_size=4, n_min=4, n_max=4, form="entropy", temperature=0.02)
    pool = cures_estimate(s, accs, norms)
    c = [1, 2, 3, 1]
    logits = [math.sqrt(ref_beta_mean(x, 4) * (1 - ref_beta_mean(x, 4))) / 0.02 for x in c]
    z = sum(math.exp(x - max(logits)) for x in logits)
    p = [math.exp(x - max(logits)) / z for x in logits]
    assert s.probabilities() == pytest.approx(p, abs=1e-12)
    for k in (1, 2):
        draws = 2500
        counts = Counter(r for _ in range(draws) for r in s.request(k, 4, step=0).rows)
        expected = ref_without_replacement_inclusion(p, k)
        for i, r in enumerate(pool):
            q = expected[i]
            assert abs(counts[r] / draws - q) <= 5 * math.sqrt(q * (1 - q) / draws) + 1e-12, (k, i, counts[r], q)


def test_cures_zero_allocation_is_replaced_by_the_next_draw_documented():
    """Documented: a drawn prompt whose n_i rounds to 0 is dropped and replaced, the allocation recomputed over the new
    batch (the code skips it and the batch shrinks). 5 prompts with sigma ~ 0.5 and one with sigma ~ 1e-4: a 4-prompt
    batch (budget 32) never holds the tiny one, and its counts are the allocation over the batch it holds."""
    accs = [[1.0, 0.0, 0.0, 0.0]] * 6
    norms = [[1.0] * 4] * 5 + [[1e-4] * 4]
    s = CurESSampler(6, seed=0, pool_size=6, n_min=4, n_max=8)
    pool = cures_estimate(s, accs, norms)
    sigma = {pool[i]: ref_sigma(norms[i], [True, False, False, False], 4) for i in range(6)}
    assert ref_allocation([sigma[pool[5]]] + [sigma[pool[0]]] * 3, 32)[0] == 0  # it would get 0
    skipped = 0.0
    for _ in range(100):
        req = s.request(4, 8, step=0)
        assert pool[5] not in req.rows and len(req.rows) == 4
        assert req.num_generations == ref_allocation([sigma[r] for r in req.rows], 32) == [8] * 4
        skipped += s.metrics()["skipped"]
    assert skipped > 0  # the tiny prompt was drawn (and replaced) in some batches


def test_cures_too_few_informative_prompts_fill_at_n_max_documented():
    """Documented: with fewer than B prompts with sigma > 0, those share k * N_max by sigma and the batch is filled
    with the next drawn prompts at N_max each; with no sigma > 0 at all, B drawn prompts at N_max each."""
    accs = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]
    norms = [[2.0, 2.0], [6.0, 6.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]  # sigma = [1, 3, 0, 0, 0]
    s = CurESSampler(5, seed=0, pool_size=5, n_min=2, n_max=4)
    pool = cures_estimate(s, accs, norms)
    for _ in range(20):
        req = s.request(4, 8, step=0)
        counts = dict(zip(req.rows, req.num_generations, strict=True))
        assert len(req.rows) == 4 and counts[pool[0]] == 2 and counts[pool[1]] == 6  # 8 shared 1 : 3
        assert sorted(counts[r] for r in req.rows if r not in pool[:2]) == [4, 4]
    dead = CurESSampler(5, seed=0, pool_size=5, n_min=2, n_max=4)
    cures_estimate(dead, [[1.0, 1.0]] * 5, [[1.0, 1.0]] * 5)
    req = dead.request(3, 8, step=0)
    assert len(set(req.rows)) == 3 and req.num_generations == [4, 4, 4]


def test_cures_a_zero_allocation_prompt_is_not_refilled_at_n_max():
    """4 prompts with sigma > 0, one of them tiny (its share of 32 rounds to 0), B = 4. The code (my_repeat) gives the
    tiny one no rollouts and trains 3 groups; grpolab's docstring: 'a drawn prompt whose n_i is 0 ... is dropped'.
    (It used to be re-added by the fill step with N_max = 8 completions.)"""
    accs = [[1.0, 0.0, 0.0, 0.0]] * 4
    norms = [[1.0] * 4] * 3 + [[1e-4] * 4]
    s = CurESSampler(4, seed=0, pool_size=4, n_min=4, n_max=8)
    pool = cures_estimate(s, accs, norms, B=4)
    sigma = [ref_sigma(g, [True, False, False, False], 4) for g in norms]
    assert all(v > 0 for v in sigma) and ref_allocation(sigma, 32)[3] == 0
    req = s.request(4, 8, step=0)
    assert pool[3] not in req.rows and len(req.rows) == 3  # the batch shrinks; the other 3 share 3 x N_max


def test_cures_training_groups_update_the_counts_documented():
    """Documented: with update_counts the training groups add to (c, N) (the Bayesian update; the script runs without
    it), sigma and so the allocation stay until the next estimation."""
    accs = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]]
    norms = [[1.0, 2.0, 3.0, 4.0]] * 3
    for update in (True, False):
        s = CurESSampler(3, seed=1, pool_size=3, n_min=4, n_max=4, update_counts=update)
        pool = cures_estimate(s, accs, norms, B=3)
        c, n = [1, 2, 3], [4, 4, 4]
        req = s.request(3, 8, step=0)
        alloc = dict(zip(req.rows, req.num_generations, strict=True))
        # accuracies 0.9 / 0.4 / 0.0 in a fixed pattern (0.4 is not "Accepted": reward > 0.5)
        acc = [torch.tensor([(0.9, 0.4, 0.0)[(k + pool.index(r)) % 3] for k in range(alloc[r])]) for r in req.rows]
        assert s.observe(Observation(req.rows, acc, acc, step=0)) == [True] * 3
        if update:
            for r, a in zip(req.rows, acc, strict=True):
                i = pool.index(r)
                c[i] += int((a > 0.5).sum())
                n[i] += a.numel()
        assert s.probabilities() == pytest.approx(ref_epic_probs(c, n), abs=1e-12)
        again = s.request(3, 8, step=0)
        assert dict(zip(again.rows, again.num_generations, strict=True)) == alloc  # same sigma, same batch of 3


# ====================================================================================== the trainer's grad norms
def ref_grad_norm(model, prompt: list[int], completion: list[int], temperature: float) -> float:
    """One unpadded forward of prompt + completion, −Σ log softmax(logits / T)[y_t], backward to the embedding matrix
    (cal_grad_logp: act_params 'embed_tokens', the first of them), its L2 norm."""
    weight = model.get_input_embeddings().weight
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1] / temperature  # [T, V]
    logp = torch.log_softmax(logits.double(), dim=-1)
    nll = -logp.gather(1, torch.tensor(completion)[:, None]).sum()
    (grad,) = torch.autograd.grad(nll, weight)
    return float(grad.double().norm())


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sequence_grad_norms_equal_a_manual_backward_per_completion(temperature):
    from grpolab.models import random_tiny_model

    torch.set_default_dtype(torch.float32)
    try:
        model, _ = random_tiny_model(seed=3, hidden=32, layers=2)
        gen = random.Random(0)
        prompts = [[1] + [gen.randrange(4, 24) for _ in range(gen.randint(1, 5))] for _ in range(4)]
        comps = [[gen.randrange(4, 24) for _ in range(gen.randint(1, 6))] + [2] for _ in range(4)]
        Lp, T = max(map(len, prompts)), max(map(len, comps))
        prompt_ids = torch.randint(4, 24, (4, Lp))  # garbage at the padded positions
        prompt_mask = torch.zeros(4, Lp, dtype=torch.long)
        completion_ids = torch.randint(4, 24, (4, T))
        completion_mask = torch.zeros(4, T, dtype=torch.long)
        for i, (p, c) in enumerate(zip(prompts, comps, strict=True)):
            prompt_ids[i, Lp - len(p) :] = torch.tensor(p)  # left padding
            prompt_mask[i, Lp - len(p) :] = 1
            completion_ids[i, : len(c)] = torch.tensor(c)  # right padding
            completion_mask[i, : len(c)] = 1
        assert next(model.parameters()) is model.get_input_embeddings().weight  # first trainable = embed_tokens
        got = sequence_grad_norms(
            model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=temperature
        ).tolist()
        expected = [ref_grad_norm(model, p, c, temperature) for p, c in zip(prompts, comps, strict=True)]
        assert got == pytest.approx(expected, rel=1e-4)
        assert all(p.grad is None for p in model.parameters())  # an optimizer step's .grad is left alone
    finally:
        torch.set_default_dtype(torch.float64)


def _xcheck_task(**_):
    from grpolab.data import Task
    from grpolab.data.arith import arith_task

    base = arith_task()

    def first_is_digit(prompts, completions, **__):  # a 0/1 accuracy a random model gets about 40 % of the time
        return [float(text[:1].isdigit()) for text in completions]

    return Task("xcheck_first_digit", base.train[:64], base.eval[:8], [first_is_digit])


def tiny_trainer(algo, sampler_args, tmp_path):
    from grpolab.data import TASKS
    from grpolab.trainer.config import resolve
    from grpolab.trainer.loop import Trainer

    if "xcheck_first_digit" not in TASKS:
        TASKS.register("xcheck_first_digit")(_xcheck_task)
    overrides = dict(
        model="random-tiny",
        task="xcheck_first_digit",
        steps=2,
        num_prompts=2,
        num_generations=4,
        max_new_tokens=4,
        eval_prompts=4,
        eval_every=0,
        save_every=0,
        progress=False,
        algo=algo,
        name=algo,
        output_dir=str(tmp_path),
        sampler_args=sampler_args,
    )
    torch.set_default_dtype(torch.float32)
    trainer = Trainer(resolve(None, overrides))
    seen = []
    observe = trainer.sampler.observe

    def spy(obs):
        keep = observe(obs)
        seen.append((obs, keep))
        return keep

    trainer.sampler.observe = spy
    return trainer, seen


def test_trainer_cures_round_measures_each_completions_gradient_norm(tmp_path):
    """The whole trainer path: the estimation round's Observation carries, per group and completion, the norm a manual
    backward of that prompt's text + that completion's token ids gives; the training round has the allocated sizes."""
    try:
        trainer, seen = tiny_trainer("cures", {"pool_size": 3, "n_min": 3, "n_max": 4}, tmp_path)
        request = trainer.sampler.request  # cures measures gradient norms only: ask for the token ids as well

        def with_ids(*args, **kwargs):
            r = request(*args, **kwargs)
            return dataclasses.replace(r, measure=r.measure | {"completions"})

        trainer.sampler.request = with_ids
        batch, _ = trainer._sample_batch()
        (est, est_keep), (train, train_keep) = seen
        assert est_keep == [False] * 3 and train_keep == [True] * len(train.rows)
        T = trainer.config.temperature
        for row, comps, norms in zip(est.rows, est.completions, est.grad_norms, strict=True):
            prompt = trainer.tokenizer(trainer.task.train[row]["prompt"]).input_ids
            assert len(comps) == 3 == norms.numel()
            expected = [ref_grad_norm(trainer.model, prompt, c, T) for c in comps]
            assert norms.tolist() == pytest.approx(expected, rel=1e-4)
        # the batch holds the training round only, with its (unequal) group sizes
        assert batch.group.numel() == sum(int(a.numel()) for a in train.accuracies)
        accs = [(a > 0.5).tolist() for a in est.accuracies]
        sigma = [ref_sigma(g.tolist(), ok, 3) for g, ok in zip(est.grad_norms, accs, strict=True)]
        assert trainer.sampler.metrics()["pool_sigma"] == pytest.approx(sum(sigma) / 3, rel=1e-6)
    finally:
        torch.set_default_dtype(torch.float64)


def test_trainer_vas_round_weights_equal_the_reference(tmp_path):
    """The whole trainer path: VAS's estimation Observation (accuracies and unpadded completion ids) gives the
    weights the references compute; the training round then has int(B * λ) + uniform rows."""
    try:
        trainer, seen = tiny_trainer("vas", {"pool_size": 4, "curriculum_rollouts": 3}, tmp_path)
        trainer._sample_batch()
        (est, est_keep), (train, train_keep) = seen
        assert est_keep == [False] * 4 and train_keep == [True] * 2 and len(train.rows) == 2  # 1 weighted + 1 uniform
        eos = trainer.tokenizer.eos_token_id
        for comps in est.completions:
            for c in comps:
                assert c and (eos not in c[:-1])  # unpadded, nothing after EOS
        accs = [a.tolist() for a in est.accuracies]
        vps = [0.8 * o + 0.2 * ref_edit_tds(c) for o, c in zip(ref_learnability(accs), est.completions, strict=True)]
        assert [trainer.sampler.weight(r) for r in est.rows] == pytest.approx(ref_min_max(vps), abs=W_TOL)
    finally:
        torch.set_default_dtype(torch.float64)
