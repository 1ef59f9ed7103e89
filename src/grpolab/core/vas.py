"""Variance-Aware Sampling (VAS) scores: the math of MMR1's prompt sampler.

MMR1: Enhancing Multimodal Reasoning with Variance-Aware Sampling and Open Resources (Leng et al., arXiv
2509.21268; code ``LengSicong/MMR1``, ``verl/curriculum/metrics.py`` and ``verl/trainer/ray_trainer.py``). Each
prompt is rolled out ``n_c`` times (8) with the current policy and scored by its Variance Promotion Score

    VPS = w_ovs · OVS + w_tds · TDS

- OVS (Outcome Variance Score) = p(1 − p), p the prompt's mean accuracy over its rollouts (the code's
  ``learnability``): the Bernoulli variance of the outcome, largest (0.25) at p = 0.5, 0 for all-correct or
  all-wrong prompts, whose GRPO advantages vanish.
- TDS (Trajectory Diversity Score) of the rollouts' token ids: mean pairwise normalised edit distance,
  distinct-n, or 1 − self-BLEU (see :func:`trajectory_diversity`).

The scores of all scored prompts are min-max normalised to sampling weights (:func:`min_max_normalize`) and
smoothed with momentum (:func:`momentum_update`). The sampler that uses them is ``grpolab.data.vas``.

>>> import torch
>>> ovs = outcome_variance(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1]))  # p = 0.5 and 1
>>> ovs.tolist()
[0.25, 0.0]
>>> tds = trajectory_diversity([[[1, 2], [1, 3]], [[4], [4]]])  # one substitution of 2 tokens; identical
>>> tds.tolist()
[0.5, 0.0]
>>> vps = variance_promotion_score(ovs, tds)  # 0.8·0.25 + 0.2·0.5, 0.8·0 + 0.2·0
>>> [round(v, 6) for v in vps.tolist()]
[0.3, 0.0]
>>> [round(v, 6) for v in min_max_normalize(vps).tolist()]
[1.0, 0.0]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

from grpolab.core.checks import check_choice, check_number
from grpolab.core.stats import group_count, group_mean

#: The trajectory-diversity measures :func:`trajectory_diversity` accepts.
DIVERSITY_MEASURES = ("edit_distance", "distinct_n", "self_bleu")

Completions = Sequence[Sequence[int]]


def outcome_variance(accuracy: Tensor, group: Tensor) -> Tensor:
    """Outcome Variance Score OVS = p(1 − p) per group (MMR1, arXiv 2509.21268, VPS; the code's ``learnability``).

    Args:
        accuracy: float [N], each completion's accuracy in [0, 1] (1 correct, 0 wrong; fractional values are
            averaged the same way, as the code averages its accuracy tensor).
        group: long [N], the prompt index 0..P−1 of each completion; groups may be unequal and non-contiguous,
            every id must occur.

    Returns:
        float [P]: p(1 − p) with p the group's mean accuracy. Convention: this is the Bernoulli (population,
        ddof 0) variance of the outcome, as the paper and code define it — not ``group_std``'s ddof-1 variance.
        A group of one completion has p ∈ {0, 1} and OVS 0.

    Example: 4 of 8 correct gives p = 0.5 and OVS 0.25; 8 of 8 or 0 of 8 gives 0.

    >>> outcome_variance(torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]), torch.zeros(8, dtype=torch.long)).tolist()
    [0.25]
    """
    if not isinstance(accuracy, Tensor) or not accuracy.is_floating_point() or accuracy.dim() != 1:
        raise ValueError("outcome_variance: accuracy must be a float tensor [N] (one accuracy per completion)")
    if not isinstance(group, Tensor) or group.shape != accuracy.shape or group.dtype != torch.long:
        raise ValueError("outcome_variance: group must be a long tensor [N] (the prompt index of each completion)")
    if accuracy.numel() == 0:
        raise ValueError("outcome_variance: no completions; each prompt needs at least one scored rollout")
    if bool((accuracy < 0).any()) or bool((accuracy > 1).any()) or not bool(torch.isfinite(accuracy).all()):
        raise ValueError("outcome_variance: accuracies must lie in [0, 1]; pass the task's accuracy, not its reward")
    if int(group.min()) < 0:
        raise ValueError("outcome_variance: group ids must be >= 0")
    num_groups = int(group.max()) + 1
    if bool((group_count(group, num_groups) == 0).any()):
        raise ValueError(f"outcome_variance: group ids must cover 0..{num_groups - 1} with every id present")
    p = group_mean(accuracy, group, num_groups)  # [P] pass rate of each prompt
    return p * (1 - p)  # [P] Bernoulli variance: MMR1's OVS


def _edit_distances(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> Tensor:
    """Levenshtein distances between ``a[k]`` and ``b[k]`` (unit insert / delete / substitute costs), long [K].

    Row-by-row dynamic programme vectorised over the K pairs and the columns: a row is
    ``D[i][j] = min(D[i−1][j] + 1, D[i−1][j−1] + [a_i ≠ b_j], D[i][j−1] + 1)``; the insertion chain along the row
    is ``min_{k ≤ j} T[k] + (j − k)`` with T the first two terms, a cumulative minimum of ``T − j``. O(max len a)
    tensor operations instead of a Python double loop per pair.
    """
    K = len(a)
    la = torch.tensor([len(x) for x in a], dtype=torch.long)  # [K]
    lb = torch.tensor([len(x) for x in b], dtype=torch.long)  # [K]
    La, Lb = int(la.max()), int(lb.max())
    A = torch.full((K, max(La, 1)), -1, dtype=torch.long)  # [K, La] padding never equals a token id
    B = torch.full((K, max(Lb, 1)), -2, dtype=torch.long)  # [K, Lb] (and differs from A's padding)
    for k in range(K):
        A[k, : len(a[k])] = torch.tensor(list(a[k]), dtype=torch.long)
        B[k, : len(b[k])] = torch.tensor(list(b[k]), dtype=torch.long)
    B = B[:, :Lb]  # [K, Lb]
    j = torch.arange(Lb + 1)  # [Lb+1]
    prev = j.expand(K, Lb + 1).clone()  # [K, Lb+1] D[0][j] = j (insert j tokens)
    out = torch.where(la == 0, lb, torch.zeros_like(lb))  # [K] an empty a needs len(b) insertions
    k_index = torch.arange(K)  # [K]
    for i in range(1, La + 1):
        cost = (A[:, i - 1 : i] != B).long()  # [K, Lb] substitution cost of a_i against each b_j
        t = torch.empty_like(prev)  # [K, Lb+1]
        t[:, 0] = i  # D[i][0] = i (delete i tokens)
        t[:, 1:] = torch.minimum(prev[:, 1:] + 1, prev[:, :-1] + cost)  # [K, Lb] deletion or substitution
        cur = torch.cummin(t - j, dim=1).values + j  # [K, Lb+1] then the cheapest chain of insertions
        done = la == i  # [K] pairs whose a ends at this row (padding rows beyond it are ignored)
        out = torch.where(done, cur[k_index, lb], out)  # [K] D[len a][len b]
        prev = cur
    return out  # [K]


def _ngrams(seq: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def _self_bleu_123(seqs: Completions) -> float:
    """Mean over i of sentence-BLEU(seqs[i]; references = the others), uniform 1/2/3-gram weights, as
    ``nltk.translate.bleu_score.sentence_bleu`` with ``SmoothingFunction().method1`` computes it (MMR1's
    ``calculate_self_bleu_123``): clipped n-gram precision p_n = Σ min(count, max count in any reference) /
    max(1, number of hypothesis n-grams); a zero numerator is smoothed to 0.1 / denominator (method1), except that
    no unigram match at all gives BLEU 0; brevity penalty exp(1 − r/c) when the hypothesis length c is not above
    the closest reference length r (ties: the shorter reference)."""
    scores = []
    for i, hyp in enumerate(seqs):
        refs = [r for k, r in enumerate(seqs) if k != i]
        log_p = []
        no_unigram_match = False
        for n in (1, 2, 3):
            counts = Counter(_ngrams(hyp, n))
            best: Counter[tuple[int, ...]] = Counter()
            for ref in refs:
                for gram, c in Counter(_ngrams(ref, n)).items():
                    best[gram] = max(best[gram], c)
            numerator = sum(min(c, best[gram]) for gram, c in counts.items())
            denominator = max(1, sum(counts.values()))
            if n == 1 and numerator == 0:
                no_unigram_match = True
                break
            p = numerator / denominator if numerator > 0 else 0.1 / denominator  # method1 smoothing, eps 0.1
            log_p.append(math.log(p) / 3)
        if no_unigram_match:
            scores.append(0.0)
            continue
        c_len = len(hyp)
        r_len = min((len(r) for r in refs), key=lambda r: (abs(r - c_len), r))
        bp = 1.0 if c_len > r_len else math.exp(1 - r_len / c_len)
        scores.append(bp * math.exp(math.fsum(log_p)))
    return sum(scores) / len(scores)


def trajectory_diversity(
    completions: Sequence[Completions],
    *,
    measure: str = "edit_distance",
    n: int = 3,
) -> Tensor:
    """Trajectory Diversity Score (TDS) of each group's completions (MMR1, arXiv 2509.21268, VPS; the code's
    ``edit_distance``, ``distinct_3`` and ``self_bleu_123`` metrics), float [P] in [0, 1].

    Args:
        completions: one entry per group (prompt), each a list of completions, each a list of token ids (EOS
            included, as the trainer observes them). Groups may differ in size.
        measure: ``"edit_distance"`` (default): mean over the G(G−1)/2 pairs of the Levenshtein distance over token
            ids divided by the longer of the two lengths (0 when both are empty). Normalisation choice: the code
            averages *raw* distances (over padded response tensors), whose scale (tens to thousands of tokens)
            would swamp OVS ∈ [0, 0.25] in the weighted sum; dividing each pair by its longer length puts TDS in
            [0, 1] (1: no token in common position-wise, 0: identical) independently of the response length.
            ``"distinct_n"``: distinct n-grams / total n-grams over all completions of the group (the code's
            ``calculate_distinct_n``; 0 when no completion has n tokens). ``"self_bleu"``: 1 − self-BLEU-123 (mean
            over completions of its BLEU against the others, nltk's method1 smoothing). The code adds raw self-BLEU
            with a positive weight, which rewards *similar* rollouts although the paper calls TDS a diversity
            score; this implements the diversity form 1 − self-BLEU.
        n: the n of ``distinct_n`` (the code's ``distinct_3``: 3; usually 2 to 4). Ignored by the other measures.

    Returns:
        float [P]. A group of fewer than two completions has TDS 0 under every measure (one trajectory shows no
        diversity; the code's pairwise measures also give 0 there).

    Example: completions [1, 2, 3] and [1, 2, 4] differ by one substitution of 3 tokens → edit-distance TDS 1/3;
    their 3-grams (1,2,3), (1,2,4) are 2 distinct of 2 → distinct-3 TDS 1.

    >>> [round(v, 6) for v in trajectory_diversity([[[1, 2, 3], [1, 2, 4]]]).tolist()]
    [0.333333]
    >>> trajectory_diversity([[[1, 2, 3], [1, 2, 4]]], measure="distinct_n").tolist()
    [1.0]
    """
    check_choice("trajectory_diversity", "measure", measure, DIVERSITY_MEASURES)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"trajectory_diversity: n must be a positive integer (distinct-n), got {n!r}")
    for g, group in enumerate(completions):
        if len(group) == 0:
            raise ValueError(f"trajectory_diversity: group {g} has no completions; each needs at least one")
    out = torch.zeros(len(completions), dtype=torch.get_default_dtype())  # [P]
    if measure == "edit_distance":
        # Every pair of every group in one vectorised edit-distance pass.
        a, b, owner = [], [], []
        for g, group in enumerate(completions):
            for i in range(len(group)):
                for k in range(i + 1, len(group)):
                    a.append(group[i])
                    b.append(group[k])
                    owner.append(g)
        if not a:
            return out  # [P] every group has a single completion
        dist = _edit_distances(a, b).to(out.dtype)  # [K]
        longer = torch.tensor([max(len(x), len(y)) for x, y in zip(a, b, strict=True)], dtype=out.dtype)  # [K]
        normalised = torch.where(longer > 0, dist / longer.clamp(min=1), torch.zeros_like(dist))  # [K] in [0, 1]
        index = torch.tensor(owner, dtype=torch.long)  # [K]
        total = torch.zeros_like(out).index_add(0, index, normalised)  # [P]
        pairs = torch.zeros_like(out).index_add(0, index, torch.ones_like(normalised))  # [P]
        return torch.where(pairs > 0, total / pairs.clamp(min=1), out)  # [P] mean over the group's pairs
    for g, group in enumerate(completions):
        if len(group) < 2:
            continue  # a single trajectory: no diversity
        if measure == "distinct_n":
            grams = [gram for seq in group for gram in _ngrams(seq, n)]
            out[g] = len(set(grams)) / len(grams) if grams else 0.0
        else:  # "self_bleu": the diversity form 1 − self-BLEU (MMR1's code adds raw self-BLEU; see above)
            out[g] = 1.0 - _self_bleu_123(group)
    return out  # [P]


def variance_promotion_score(ovs: Tensor, tds: Tensor, *, ovs_weight: float = 0.8, tds_weight: float = 0.2) -> Tensor:
    """Variance Promotion Score VPS = ovs_weight · OVS + tds_weight · TDS (MMR1, arXiv 2509.21268; the code's
    ``combine_metric_results``), float [P].

    Args:
        ovs: float [P] from :func:`outcome_variance`; tds: float [P] from :func:`trajectory_diversity`.
        ovs_weight: α, the weight of outcome variance. Default 0.8: the repository's multi-metric example
            (``TRAIN.MD``, "Combine OVS and TDS metrics": ``curriculum_metric_weights=[0.8, 0.2]``); its yaml default
            uses OVS alone (1.0), its custom-config example 0.7 / 0.3. Usually 0.7 to 1.
        tds_weight: β, the weight of trajectory diversity (0.2 with the above; usually 0 to 0.3).

    Weights must be >= 0 and not both 0. OVS lies in [0, 0.25] and TDS in [0, 1], so 0.8 / 0.2 gives both terms
    the same maximum (0.2).

    >>> [round(v, 6) for v in variance_promotion_score(torch.tensor([0.25]), torch.tensor([0.5])).tolist()]
    [0.3]
    """
    for name, w in (("ovs_weight", ovs_weight), ("tds_weight", tds_weight)):
        check_number(name, w, minimum=0, where="variance_promotion_score")
    if ovs_weight == 0 and tds_weight == 0:
        raise ValueError("variance_promotion_score: ovs_weight and tds_weight cannot both be 0 (paper: 0.8 / 0.2)")
    if not isinstance(ovs, Tensor) or not isinstance(tds, Tensor) or ovs.shape != tds.shape or ovs.dim() != 1:
        raise ValueError("variance_promotion_score: ovs and tds must be tensors [P] of the same shape")
    return ovs_weight * ovs + tds_weight * tds  # [P]


def min_max_normalize(scores: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Min-max normalisation w = (v − min) / (max − min + eps) to sampling weights in [0, 1] (MMR1 code,
    ``_compute_curriculum_weights``), float [P].

    Args:
        scores: float [P], the VPS of every scored prompt (at least one).
        eps: added to the range max − min (the code's 1e-8; usually 1e-8 to 1e-6), so equal scores give all-zero
            weights instead of NaN. The best prompt gets (max − min) / (max − min + eps) ≈ 1, the worst 0
            (it is never drawn by the weighted sampler).

    >>> [round(v, 6) for v in min_max_normalize(torch.tensor([0.1, 0.3, 0.2])).tolist()]
    [0.0, 1.0, 0.5]
    """
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.numel() == 0:
        raise ValueError("min_max_normalize: scores must be a non-empty tensor [P]")
    if not eps > 0:
        raise ValueError(f"min_max_normalize: eps must be > 0, got {eps!r}")
    low, high = scores.min(), scores.max()  # scalars
    return (scores - low) / (high - low + eps)  # [P]


def momentum_update(old: Tensor, new: Tensor, *, momentum: float = 0.0) -> Tensor:
    """Momentum smoothing of the sampling weights w ← m · w_old + (1 − m) · w_new (MMR1 code,
    ``_update_curriculum_weights``), float [P].

    Args:
        old, new: float [P], the previous and the freshly normalised weights of the same prompts.
        momentum: m in [0, 1]. The yaml default 0: the new weights replace the old ones; m = 1 freezes the weights
            (the code's comment "1 means no momentum" is wrong). Usually 0 to 0.9.

    >>> momentum_update(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), momentum=0.25).tolist()
    [0.25, 0.75]
    """
    check_number("momentum", momentum, minimum=0, maximum=1, where="momentum_update", hint="0 replaces the weights")
    if not isinstance(old, Tensor) or not isinstance(new, Tensor) or old.shape != new.shape:
        raise ValueError("momentum_update: old and new must be tensors of the same shape [P]")
    return momentum * old + (1 - momentum) * new  # [P]
