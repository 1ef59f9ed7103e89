"""Independent cross-check of BRPO / AnytimeReasoner (arXiv 2505.13438) and Polychromic PPO (arXiv 2509.25424).

The references below are plain Python loops written from the papers, the specs (part A §17, part B §12) and, for
BRPO, the official code (sail-sg/AnytimeReasoner ``verl/verl/trainer/ppo/brpo.py``: ``set_training_split_plan``,
``sample_partial_cot``, ``compute_cot_advantage``, ``compute_summary_advantage``, ``compute_token_level_advantage``)
and the README recipes. They are compared with the registered parts on random unequal, shuffled groups with
padding, for every documented option; the rollout strategies are checked structurally on a random tiny model.

Library conventions the references follow on purpose (documented in ``grpolab.core.brpo`` / ``.polychromic``):
a thinking completion that ended (EOS) within a budget uses its own reward there and gets no summary; a prompt
with one thinking trajectory has V2 = its own return (the code: 0 when the configured G is 1); budgets are
``⌊j·L/S⌋`` (the code's ``L // S · j`` whenever S divides L).
"""

import random

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.brpo import budget_cuts, budget_positions, budget_prior, budget_rewards
from grpolab.core.polychromic import set_scores
from grpolab.core.types import Rollout
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

from ..trainer.test_loop import TINY


# ============================================================================================== BRPO reference
def ref_prior(S, prior):
    """The code's TRAIN_BUDGET_PROBS with its budgets ``L // S · j`` (so "linear" is ∝ j)."""
    if prior == "uniform":
        return [1.0 / S] * S
    if prior == "linear":
        return [j / sum(range(1, S + 1)) for j in range(1, S + 1)]
    return [0.0] * (S - 1) + [1.0]


def ref_segment_advantages(rbar, p, vr, discount):
    """``compute_cot_advantage`` of the code for one prompt: rbar is a list (G trajectories) of lists (S)."""
    G, S = len(rbar), len(p)
    out = []
    for g in range(G):
        row = []
        for s in range(S):
            ret = sum(rbar[g][j] * p[j] for j in range(s, S))
            # V2: mean return of the prompt's trajectories (library: a lone trajectory is its own V2)
            avg = sum(sum(rbar[h][j] * p[j] for j in range(s, S)) for h in range(G)) / G
            last = 0.0
            if s > 0:
                w = [discount**j for j in range(s)]
                prev = sum(rbar[g][j] * w[j] for j in range(s)) / sum(w)
                last = prev * sum(p[s:])
            base = {"brpo": (s * last + (S - s) * avg) / S, "v1only": last, "v2only": avg, "none": 0.0}[vr]
            row.append(ret - base)
        out.append(row)
    return out


def random_brpo_batch(rng, *, P, L, S, n_summary, marker=0, invalid=0.0):
    """Thinking rows (random lengths, some ended), and n_summary summary rows per (row, budget) that needs one,
    all shuffled together, right-padded. Returns the Rollout plus the bookkeeping the reference needs."""
    budgets = [j * L // S for j in range(1, S + 1)]
    think = []  # dicts: group, length, ended, reward, id
    for g in range(P):
        for _ in range(rng.randint(1, 4)):
            length = rng.randint(1, L)
            ended = length < L or rng.random() < 0.5  # a length-L completion either ended at EOS or was cut by L
            think.append(dict(group=g, length=length, ended=ended, reward=float(rng.random() < 0.5), id=None))
    ids = rng.sample(range(100, 1000), len(think))  # source ids are compared, never used as positions
    for t, i in zip(think, ids, strict=True):
        t["id"] = i
    summaries = []
    for ti, t in enumerate(think):
        t["cuts"] = [min(b, t["length"]) for b in budgets]
        t["needs"] = [not (t["ended"] and t["length"] <= b) for b in budgets]
        for j in range(S):
            if t["needs"][j]:
                for _ in range(n_summary):
                    prefix = t["cuts"][j] + marker
                    summaries.append(
                        dict(
                            think=ti,
                            budget=j,
                            prefix=prefix,
                            length=prefix + rng.randint(1, 3),
                            reward=float(rng.random() < 0.5),
                            valid=rng.random() >= invalid,
                        )
                    )
    # r̄: mean of the valid summaries at (trajectory, budget), the own reward where the trajectory had ended
    for ti, t in enumerate(think):
        t["rbar"] = []
        for j in range(S):
            if not t["needs"][j]:
                t["rbar"].append(t["reward"])
                continue
            rs = [s["reward"] for s in summaries if s["think"] == ti and s["budget"] == j and s["valid"]]
            t["rbar"].append(sum(rs) / len(rs) if rs else 0.0)
    rows = [("t", i) for i in range(len(think))] + [("s", i) for i in range(len(summaries))]
    rng.shuffle(rows)
    T = max((think[i] if k == "t" else summaries[i])["length"] for k, i in rows) + rng.randint(0, 2)
    group, mask, reward, rbar, cuts, budget, source, prefix = [], [], [], [], [], [], [], []
    for kind, i in rows:
        if kind == "t":
            t = think[i]
            length, r, bud, src, pre = t["length"], t["reward"], -1, t["id"], 0
        else:
            s = summaries[i]
            t = think[s["think"]]
            length, r, bud, src, pre = s["length"], s["reward"], s["budget"], t["id"], s["prefix"]
        group.append(t["group"])
        mask.append([k < length for k in range(T)])
        reward.append(r)
        rbar.append(t["rbar"])
        cuts.append(t["cuts"])
        budget.append(bud)
        source.append(src)
        prefix.append(pre)
    rollout = Rollout(
        group=torch.tensor(group),
        mask=torch.tensor(mask),
        reward=torch.tensor(reward),
        extras={
            "brpo_budget_reward": torch.tensor(rbar),
            "brpo_cuts": torch.tensor(cuts),
            "brpo_budget": torch.tensor(budget),
            "brpo_source": torch.tensor(source),
            "prefix_len": torch.tensor(prefix),
        },
    )
    return rollout, rows, think, summaries, budgets


def ref_brpo_tokens(rows, think, summaries, P, S, T, *, prior, vr, summary_method, discount=2.0):
    """Token advantages of the whole batch, as ``compute_token_level_advantage`` places them."""
    p = ref_prior(S, prior)
    members = {g: [i for i, t in enumerate(think) if t["group"] == g] for g in range(P)}
    seg = {}
    for _g, idx in members.items():
        adv = ref_segment_advantages([think[i]["rbar"] for i in idx], p, vr, discount)
        for i, a in zip(idx, adv, strict=True):
            seg[i] = a
    out = []
    for kind, i in rows:
        row = [0.0] * T
        if kind == "t":
            t = think[i]
            start = 0
            for s in range(S):  # tokens [c_{s-1}, c_s) belong to segment s (the code's len_0..len_1)
                for k in range(start, t["cuts"][s]):
                    row[k] = seg[i][s]
                start = max(start, t["cuts"][s])
        else:
            s = summaries[i]
            same = [x["reward"] for x in summaries if x["think"] == s["think"] and x["budget"] == s["budget"]]
            if len(same) >= 2:  # n_summary > 1: the mean of the summaries at the same (trajectory, budget)
                base = sum(same) / len(same)
            else:  # n_summary = 1: the group mean at that budget (the code's A == 1 branch)
                g = think[s["think"]]["group"]
                base = sum(think[h]["rbar"][s["budget"]] for h in members[g]) / len(members[g])
            a = s["reward"] - base
            if summary_method == "grpo" and s["budget"] != S - 1:
                a = 0.0
            for k in range(s["prefix"], s["length"]):
                row[k] = a
        out.append(row)
    return torch.tensor(out)


# ---------------------------------------------------------------------------------------------- BRPO tests
def test_budgets_and_priors_match_the_code():
    for L, S in [(8000, 4), (16000, 4), (8000, 8), (8000, 1), (12, 3), (12, 4)]:
        assert budget_positions(L, S) == [L // S * j for j in range(1, S + 1)]  # S divides L: the code's plan
    for L, S in [(10, 4), (7, 3), (5, 2)]:  # otherwise ⌊j·L/S⌋, so the last budget is the generation limit
        b = budget_positions(L, S)
        assert b[-1] == L and all(x == j * L // S for x, j in zip(b, range(1, S + 1), strict=True))
    for S in (1, 2, 3, 4, 8):
        for prior in ("uniform", "linear", "base"):
            torch.testing.assert_close(budget_prior(S, prior=prior), torch.tensor(ref_prior(S, prior)))
    # AR-linear at 8k: p = b_j / Σ b = [0.1, 0.2, 0.3, 0.4]
    torch.testing.assert_close(budget_prior(4, prior="linear"), torch.tensor([0.1, 0.2, 0.3, 0.4]))


def test_cuts_and_budget_rewards_equal_loops():
    rng = random.Random(0)
    for _ in range(5):
        L, S = rng.choice([(8, 4), (9, 3), (6, 2), (5, 1)])
        _, _, think, summaries, budgets = random_brpo_batch(rng, P=3, L=L, S=S, n_summary=2, invalid=0.3)
        lengths = torch.tensor([t["length"] for t in think])
        ended = torch.tensor([t["ended"] for t in think])
        cuts, needs = budget_cuts(lengths, ended, budgets)
        assert cuts.tolist() == [t["cuts"] for t in think]
        assert needs.tolist() == [t["needs"] for t in think]
        out = budget_rewards(
            torch.tensor([t["reward"] for t in think]),
            needs,
            torch.tensor([s["reward"] for s in summaries]),
            torch.tensor([s["think"] for s in summaries], dtype=torch.long),
            torch.tensor([s["budget"] for s in summaries], dtype=torch.long),
            torch.tensor([s["valid"] for s in summaries], dtype=torch.bool),
        )
        torch.testing.assert_close(out, torch.tensor([t["rbar"] for t in think]))


@pytest.mark.parametrize("n_summary", [1, 3])
@pytest.mark.parametrize("summary_method", ["brpo", "grpo"])
@pytest.mark.parametrize("prior", ["uniform", "linear", "base"])
def test_brpo_advantage_equals_the_code_loops(prior, summary_method, n_summary):
    rng = random.Random(hash((prior, summary_method, n_summary)) % 1000)
    for vr in ("brpo", "v1only", "v2only", "none"):
        L, S = rng.choice([(8, 4), (9, 3), (6, 2), (4, 1), (7, 3)])
        rollout, rows, think, summaries, _ = random_brpo_batch(rng, P=3, L=L, S=S, n_summary=n_summary, marker=1)
        got = ADVANTAGES["brpo"](rollout, prior=prior, variance_reduction=vr, summary_method=summary_method)
        want = ref_brpo_tokens(
            rows, think, summaries, 3, S, rollout.seq_len, prior=prior, vr=vr, summary_method=summary_method
        )
        torch.testing.assert_close(got, want.to(got), msg=f"{prior} {vr} {summary_method} n={n_summary}")


def test_brpo_discount_option_and_plain_mean():
    rng = random.Random(5)
    rollout, rows, think, summaries, _ = random_brpo_batch(rng, P=2, L=8, S=4, n_summary=2)
    for d in (1.0, 3.0):
        got = ADVANTAGES["brpo"](rollout, prior="uniform", discount=d)
        want = ref_brpo_tokens(
            rows, think, summaries, 2, 4, rollout.seq_len, prior="uniform", vr="brpo", summary_method="brpo", discount=d
        )
        torch.testing.assert_close(got, want.to(got))


def test_grpo_recipe_is_r_minus_group_mean_on_thinking_and_answer():
    """README GRPO baseline: n_summary=1, S=1, prior base, v2only, summary grpo → every trained token of a
    trajectory's thinking and of its answer carries r − mean_G r (spec §17 unit test)."""
    rng = random.Random(11)
    rollout, rows, think, summaries, _ = random_brpo_batch(rng, P=3, L=6, S=1, n_summary=1)
    got = ADVANTAGES["brpo"](rollout, prior="base", variance_reduction="v2only", summary_method="grpo")
    for b, (kind, i) in enumerate(rows):
        t = think[i] if kind == "t" else think[summaries[i]["think"]]
        g = [x["rbar"][0] for x in think if x["group"] == t["group"]]
        r = t["rbar"][0] if kind == "t" else summaries[i]["reward"]
        lo = 0 if kind == "t" else summaries[i]["prefix"]
        hi = t["length"] if kind == "t" else summaries[i]["length"]
        torch.testing.assert_close(got[b, lo:hi], torch.full((hi - lo,), r - sum(g) / len(g)))
        assert (got[b, :lo] == 0).all() and (got[b, hi:] == 0).all()


def test_brpo_preset_matches_the_readme_main_run():
    pre = PRESETS["brpo"]
    assert pre.arxiv == "2505.13438"
    (rollout,) = pre.rollout
    assert rollout.name == "brpo_budgets"
    assert rollout.params["num_budgets"] == 4 and rollout.params["n_summary"] == 4  # AR-linear: 4 budgets × 4
    assert pre.advantage.name == "brpo"
    assert dict(pre.advantage.params) == {"prior": "linear", "variance_reduction": "brpo", "summary_method": "brpo"}
    assert pre.loss.name == "ppo_clip" and pre.loss.params["epsilon"] == 0.2  # verl clip_ratio 0.2
    assert pre.trainer["num_generations"] == 8 and pre.trainer["temperature"] == 1.0  # rollout.n=8, T=1.0
    assert pre.trainer.get("num_iterations", 1) == 1  # ppo_epochs 1
    assert not pre.regularizers and not pre.shaping  # use_kl_loss False, entropy_coeff 0, kl-in-reward off
    assert [s.name for s in pre.selectors] == ["mask_prefix"]


# ============================================================================================== Polychromic
def ref_marginal(reward, state, outcome, member):
    """Loops: f_poly = mean reward × distinct/size per set, b(s) = mean over the non-empty sets at s, marginal =
    mean of f − b over the sets holding the continuation (0 if none)."""
    B, M = len(reward), len(member[0])
    states = sorted({s for s in state if s >= 0})
    adv_of = {}
    for k in states:
        scores = {}
        for m in range(M):
            rows = [i for i in range(B) if state[i] == k and member[i][m]]
            if rows:
                mean = sum(reward[i] for i in rows) / len(rows)
                scores[m] = mean * len({outcome[i] for i in rows}) / len(rows)
        base = sum(scores.values()) / len(scores) if scores else 0.0
        for m, f in scores.items():
            adv_of[(k, m)] = f - base
    out = []
    for i in range(B):
        sets = [adv_of[(state[i], m)] for m in range(M) if state[i] >= 0 and member[i][m] and (state[i], m) in adv_of]
        out.append(sum(sets) / len(sets) if sets else 0.0)
    return out


def ref_gae(rew, val, gamma, lam):
    """GAE over one completion's valid tokens (terminal after the last)."""
    n = len(rew)
    adv, nxt, run = [0.0] * n, 0.0, 0.0
    for t in reversed(range(n)):
        delta = rew[t] + gamma * nxt - val[t]
        run = delta + gamma * lam * run
        adv[t] = run
        nxt = val[t]
    return adv


def random_poly_batch(rng, *, P, K, N, M, n, drop=0.0):
    """Ordinary rows of P prompts plus N continuations of K states, shuffled; some continuations dropped (their
    reward failed) so some sets shrink or empty."""
    rows = []
    for g in range(P):
        for _ in range(rng.randint(1, 4)):
            rows.append(dict(group=g, state=-1, outcome=-1, member=[False] * M, prefix=0, length=rng.randint(1, 6)))
    for k in range(K):
        g = rng.randrange(P)
        cut = rng.randint(0, 4)
        sets = [set(rng.sample(range(N), n)) for _ in range(M)]
        for c in range(N):
            if rng.random() < drop:
                continue
            rows.append(
                dict(
                    group=g,
                    state=k,
                    outcome=100 * k + rng.randint(0, 2),  # few outcomes: repeats within a set are common
                    member=[c in s for s in sets],
                    prefix=cut,
                    length=cut + rng.randint(1, 3),
                )
            )
    rng.shuffle(rows)
    for r in rows:
        r["reward"] = rng.choice([0.0, 0.5, 1.0])
    # renumber the states that are left 0..K'-1 and prompts 0..P'-1 (as Rollout.select would)
    T = max(r["length"] for r in rows) + 1
    groups = sorted({r["group"] for r in rows})
    rollout = Rollout(
        group=torch.tensor([groups.index(r["group"]) for r in rows]),
        mask=torch.tensor([[t < r["length"] for t in range(T)] for r in rows]),
        reward=torch.tensor([r["reward"] for r in rows]),
        value=torch.tensor([[rng.uniform(-1, 1) for _ in range(T)] for _ in rows]),
        extras={
            "poly_state": torch.tensor([r["state"] for r in rows]),
            "poly_outcome": torch.tensor([r["outcome"] for r in rows]),
            "poly_member": torch.tensor([r["member"] for r in rows]),
            "prefix_len": torch.tensor([r["prefix"] for r in rows]),
        },
    )
    return rollout, rows


def ref_whiten(adv, keep, eps):
    xs = [a for row, kr in zip(adv, keep, strict=True) for a, k in zip(row, kr, strict=True) if k]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return [
        [(a - mean) / (var + eps) ** 0.5 if k else 0.0 for a, k in zip(row, kr, strict=True)]
        for row, kr in zip(adv, keep, strict=True)
    ]


@pytest.mark.parametrize("base", ["gae", "grpo", "dr_grpo"])
@pytest.mark.parametrize("whiten", [True, False])
def test_polychromic_advantage_equals_loops(base, whiten):
    rng = random.Random(hash((base, whiten)) % 1000)
    for trial in range(3):
        rollout, rows = random_poly_batch(rng, P=3, K=3, N=5, M=4, n=3, drop=0.2 * trial)
        gamma, lam = rng.choice([(1.0, 0.95), (0.9, 0.8)])
        got = ADVANTAGES["polychromic"](rollout, base=base, gamma=gamma, lam=lam, whiten=whiten)
        marg = ref_marginal(
            [r["reward"] for r in rows],
            [r["state"] for r in rows],
            [r["outcome"] for r in rows],
            [r["member"] for r in rows],
        )
        T = rollout.seq_len
        main = torch.tensor([r["state"] < 0 for r in rows])
        if base != "gae":  # group advantages over the ordinary rows only (the registered group estimators)
            base_adv = torch.zeros(len(rows), T)
            base_adv[main] = ADVANTAGES[base](rollout.select(main))
        want = []
        for b, r in enumerate(rows):
            row = [0.0] * T
            if r["state"] >= 0:
                for t in range(r["prefix"], r["length"]):
                    row[t] = marg[b]
            elif base == "gae":
                rew = [0.0] * (r["length"] - 1) + [r["reward"]]
                row[: r["length"]] = ref_gae(rew, rollout.value[b, : r["length"]].tolist(), gamma, lam)
            else:
                row = base_adv[b].tolist()
            want.append(row)
        keep = [[r["prefix"] <= t < r["length"] for t in range(T)] for r in rows]
        if whiten:
            want = ref_whiten(want, keep, 1e-8)
        want = torch.tensor(
            [[a if k else 0.0 for a, k in zip(w, kr, strict=True)] for w, kr in zip(want, keep, strict=True)]
        )
        torch.testing.assert_close(got, want.to(got), msg=f"{base} whiten={whiten} trial={trial}")


def test_set_scores_equal_loops_with_shrunken_sets():
    rng = random.Random(3)
    rollout, rows = random_poly_batch(rng, P=2, K=4, N=6, M=5, n=4, drop=0.3)
    ex = rollout.extras
    K = int(ex["poly_state"].max()) + 1
    score, size = set_scores(rollout.reward, ex["poly_state"], ex["poly_outcome"], ex["poly_member"], K)
    for k in range(K):
        for m in range(5):
            mem = [r for r in rows if r["state"] == k and r["member"][m]]
            assert int(size[k, m]) == len(mem)
            f = sum(r["reward"] for r in mem) / len(mem) * len({r["outcome"] for r in mem}) / len(mem) if mem else 0.0
            assert float(score[k, m]) == pytest.approx(f)


def test_spec_unit_values_and_failed_but_novel_continuation():
    """Spec part B §12: identical successes (n=2) → f = 0.5; success + distinct failure → 0.5; a failed
    continuation whose set-mates succeed gets a positive marginal advantage when it adds diversity."""
    # one state, 4 continuations: three identical successes (outcome 1) and a novel failure (outcome 2)
    member = [[True, True, False], [True, False, True], [False, True, True], [True, True, True]]
    reward, outcome, state = [1.0, 1.0, 1.0, 0.0], [1, 1, 1, 2], [0, 0, 0, 0]
    # sets: {0, 1, 3}: mean 2/3, d 2/3 → 4/9; {0, 2, 3}: 4/9; {1, 2, 3}: 4/9 → all equal → 0 advantages
    assert ref_marginal(reward, state, outcome, member) == pytest.approx([0.0] * 4)
    member2 = [[True, True], [True, False], [False, True], [False, False]]
    # sets {0, 1} (identical successes: 1 × 1/2 = 0.5) and {0, 2} (same): both 0.5, add novelty instead:
    outcome2 = [1, 1, 3, 2]
    # {0, 1}: 0.5; {0, 2}: 1 × 1 = 1 → b = 0.75 → A = [-0.25, 0.25]; marginal: row 0 → 0, row 1 → -0.25, row 2 →
    # 0.25 (a distinct success is pushed up, the duplicate pushed down)
    r = Rollout(
        group=torch.zeros(4, dtype=torch.long),
        mask=torch.ones(4, 2, dtype=torch.bool),
        reward=torch.tensor(reward),
        extras={
            "poly_state": torch.tensor([0, 0, 0, -1]),
            "poly_outcome": torch.tensor(outcome2),
            "poly_member": torch.tensor(member2),
            "prefix_len": torch.tensor([1, 1, 1, 0]),
        },
    )
    got = ADVANTAGES["polychromic"](r, base="dr_grpo", whiten=False)
    torch.testing.assert_close(got[:3, 1], torch.tensor([0.0, -0.25, 0.25]))
    assert (got[:3, 0] == 0).all()  # the given prefix carries nothing


def test_polychromic_preset_is_ppo_with_vines():
    pre = PRESETS["polychromic"]
    assert pre.arxiv == "2509.25424"
    assert [p.name for p in pre.rollout] == ["polychromic_vines"]
    hp = pre.rollout[0].params
    assert hp["set_size"] <= hp["num_continuations"]
    assert pre.advantage.name == "polychromic" and pre.advantage.params["base"] == "gae"  # PPO with GAE elsewhere
    assert pre.loss.name == "ppo_clip" and pre.loss.params["epsilon"] == 0.2
    assert pre.value_loss is not None  # the paper keeps PPO's critic
    assert [s.name for s in pre.selectors] == ["mask_prefix"]


# ============================================================================================== strategies
def tiny_trainer(tmp_path, algo, **overrides):
    return Trainer(resolve(None, {**TINY, "algo": algo, "output_dir": str(tmp_path), "name": algo, **overrides}))


def test_brpo_budgets_structure_on_a_sampled_batch(tmp_path):
    torch.manual_seed(1)
    L, S, n = 6, 3, 2
    t = tiny_trainer(tmp_path, "brpo", max_new_tokens=L)
    sampled = t._sample([t.task.train[0], t.task.train[1], t.task.train[2]], 3)
    out, metrics = ROLLOUT_STRATEGIES["brpo_budgets"](
        t.context, sampled, num_budgets=S, n_summary=n, summary_tokens=2, max_len=L
    )
    N = sampled.size
    lengths = sampled.gen.completion_mask.sum(-1).tolist()
    ended = (~sampled.gen.truncated).tolist()
    budgets = [j * L // S for j in range(1, S + 1)]
    cells = [(g, j) for g in range(N) for j in range(S) if not (ended[g] and lengths[g] <= budgets[j])]
    ex = out.extras
    assert out.size == N + n * len(cells) and metrics["brpo_summaries"] == n * len(cells)
    assert ex["brpo_budget"][:N].tolist() == [-1] * N and ex["prefix_len"][:N].tolist() == [0] * N
    assert ex["brpo_cuts"][:N].tolist() == [[min(b, lengths[g]) for b in budgets] for g in range(N)]
    ids = out.gen.completion_ids
    rbar = ex["brpo_budget_reward"]
    for g in range(N):
        for j in range(S):
            rows = [
                N + k for k in range(out.size - N) if ex["brpo_source"][N + k] == g and ex["brpo_budget"][N + k] == j
            ]
            if (g, j) not in cells:
                assert not rows and float(rbar[g, j]) == pytest.approx(float(sampled.reward[g]))
                continue
            assert len(rows) == n
            c = min(budgets[j], lengths[g])
            for row in rows:
                assert int(ex["prefix_len"][row]) == c and int(out.group[row]) == int(sampled.group[g])
                assert torch.equal(ids[row, :c], sampled.gen.completion_ids[g, :c])  # the thinking prefix
                assert 1 <= int(out.gen.completion_mask[row].sum()) - c <= 2  # the summary itself
                assert torch.equal(rbar[row], rbar[g])
            assert float(rbar[g, j]) == pytest.approx(float(out.reward[rows].mean()))
    adv = ADVANTAGES["brpo"](t_rollout(out), prior="linear")  # the advantage reads what the strategy wrote
    assert torch.isfinite(adv).all()


def t_rollout(out):
    return Rollout(group=out.group, mask=out.gen.completion_mask, reward=out.reward, extras=out.extras)


def test_polychromic_vines_structure_and_advantage_on_a_sampled_batch(tmp_path):
    torch.manual_seed(2)
    t = tiny_trainer(tmp_path, "polychromic", max_new_tokens=5)
    sampled = t._sample([t.task.train[0], t.task.train[1]], 3)
    p, Nc, M, n = 2, 4, 6, 2
    out, _ = ROLLOUT_STRATEGIES["polychromic_vines"](
        t.context, sampled, num_states=p, num_continuations=Nc, num_sets=M, set_size=n, max_len=5
    )
    N, K = sampled.size, 2 * p
    ex = out.extras
    assert out.size == N + K * Nc
    assert (out.gen.completion_mask.sum(-1) <= 5).all()  # the same horizon as the rollout: prefix + continuation
    member = ex["poly_member"][N:].view(K, Nc, M)
    assert (member.sum(1) == n).all()
    lengths = sampled.gen.completion_mask.sum(-1)
    for k in range(K):
        rows = list(range(N + k * Nc, N + (k + 1) * Nc))
        c = int(ex["prefix_len"][rows[0]])
        sources = [j for j in range(N) if int(sampled.group[j]) == int(out.group[rows[0]])]
        # the state is a proper prefix (0 <= c < len) of one of the prompt's trajectories
        assert any(
            c < int(lengths[j]) and torch.equal(out.gen.completion_ids[rows[0], :c], sampled.gen.completion_ids[j, :c])
            for j in sources
        )
    r = Rollout(
        group=out.group,
        mask=out.gen.completion_mask,
        reward=out.reward,
        extras=out.extras,
    )
    got = ADVANTAGES["polychromic"](r, base="dr_grpo", whiten=False)
    texts = [x.strip() for x in out.gen.texts]
    outcome = [(int(ex["poly_state"][i]), texts[i]) if int(ex["poly_state"][i]) >= 0 else -1 for i in range(out.size)]
    marg = ref_marginal(out.reward.tolist(), ex["poly_state"].tolist(), outcome, ex["poly_member"].tolist())
    for i in range(N, out.size):
        c, length = int(ex["prefix_len"][i]), int(out.gen.completion_mask[i].sum())
        torch.testing.assert_close(got[i, c:length], torch.full((length - c,), marg[i]))
