"""Independent cross-check of DisCO / DisCO-DRO, Reg-GRPO, TRPA and P3O against plain-loop references.

Written from the papers / official code, not from grpolab's implementation:

- DisCO (arXiv 2505.12366; official code Optimization-AI/DisCO ``verl/verl/trainer/ppo/core_algos.py``:
  ``compute_policy_loss_discob_{logL,Lratio}``, ``compute_policy_loss_disco_logL``; ``dp_actor.py``;
  ``scripts/train/run_disco*_1.5b_8k.sh``).
- Reg-GRPO of DeepVideo-R1 (arXiv 2506.07464, Sec. 3; no official code found): MSE between the GRPO advantage and
  the group-normalised sequence log-ratio.
- TRPA (arXiv 2504.04524; official code XueruiSu/Trust-Region-Preference-Approximation
  ``verl/trainer/ppo/core_algos.py::compute_pairwise_policy_loss``, ``kl_penalty``, ``verl/workers/actor/dp_actor.py``,
  ``verl/utils/reward_score/kk.py``, ``main_TRPA.sh``).
- P3O (arXiv 2310.00212; no official code): the pairwise policy gradient E[(r1 − r2)·∇log(π(y1)/π(y2))]/2 with
  PPO-style clipping of whole-trajectory ratios (V1 separately, V2 jointly), the library's documented reading.

Every reference is a slow, obvious Python loop; values and gradients (w.r.t. the current log-probs) are compared
with the registered parts to 1e-6 in float64, on shuffled unequal groups with padding, size-1 groups and ties.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout

ATOL = 1e-6
GARBAGE = 37.0  # written at padding positions of every token field: it must not leak into any result


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


def holey_mask(gen: torch.Generator, B: int, T: int) -> torch.Tensor:
    """Right padding plus a few masked holes inside completions (tool output); every row keeps a valid token."""
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i in range(B):
        L = int(torch.randint(1, T + 1, (1,), generator=gen))
        mask[i, :L] = True
        if L > 2 and bool(torch.rand(1, generator=gen) < 0.5):
            mask[i, int(torch.randint(1, L - 1, (1,), generator=gen))] = False
    return mask


def token_field(gen: torch.Generator, mask: torch.Tensor, scale: float = 0.3, shift: float = -1.0) -> torch.Tensor:
    vals = shift + scale * torch.randn(mask.shape, generator=gen)  # [B, T]
    return torch.where(mask, vals, torch.full(mask.shape, GARBAGE))


def make_batch(seed: int, sizes: list[int], T: int = 6, rewards=None, drift: float = 0.05):
    """(logp leaf [B, T], rollout) with old / ref log-probs near logp and garbage at padding."""
    gen = torch.Generator().manual_seed(seed)
    group = shuffled_groups(gen, sizes)
    B = len(group)
    mask = holey_mask(gen, B, T)
    old = token_field(gen, mask)
    logp = torch.where(mask, old + drift * torch.randn(B, T, generator=gen), torch.full((B, T), -GARBAGE))
    ref = torch.where(mask, old + 0.2 * torch.randn(B, T, generator=gen), torch.full((B, T), GARBAGE))
    if rewards is None:
        rewards = torch.randint(0, 2, (B,), generator=gen).double()
    elif callable(rewards):
        rewards = rewards(gen, B)
    rollout = Rollout(group=group, mask=mask, reward=torch.as_tensor(rewards).double(), old_logp=old, ref_logp=ref)
    return logp.clone().requires_grad_(True), rollout


def members(rollout: Rollout) -> list[list[int]]:
    return [[i for i in range(rollout.batch_size) if int(rollout.group[i]) == g] for g in range(rollout.num_groups)]


def valid(rollout: Rollout, i: int) -> list[int]:
    return [t for t in range(rollout.seq_len) if bool(rollout.mask[i, t])]


def value_and_grad(fn, logp: torch.Tensor):
    logp.grad = None
    out = fn(logp)
    out.backward()
    grad = logp.grad.clone()
    logp.grad = None
    return out.detach(), grad


def assert_same(ours, ref, logp):
    v1, g1 = value_and_grad(ours, logp)
    v2, g2 = value_and_grad(ref, logp)
    assert torch.isfinite(v1) and torch.isfinite(g1).all()
    assert abs(float(v1) - float(v2)) < ATOL, (float(v1), float(v2))
    assert torch.allclose(g1, g2, atol=ATOL, rtol=0), (g1 - g2).abs().max()


def loss_of(name: str, rollout: Rollout, advantages=None, **hp):
    fn = POLICY_LOSSES[name]
    if advantages is None:
        advantages = torch.zeros(rollout.mask.shape)
    hp.setdefault("aggregation", PRESET_AGG.get(name, "seq_mean_token_mean"))
    return lambda logp: fn(logp, rollout, advantages, **hp)[0]


PRESET_AGG = {"disco": "seq_mean_token_mean", "reg_grpo": "seq_mean_token_mean", "trpa": "token_mean"}


# ===================================================================================================== DisCO
def ref_disco(logp, ro, *, variant="b", score="log_l", tau=10.0, delta=1e-4, beta=1e3, threshold=0.5,
              kl_estimator="k1", num_seqs=None, num_tokens=None):  # fmt: skip
    """DisCO(-b / DRO) as the official code computes it (core_algos.py), extended to unequal groups.

    score  s(o) = 1/|o| Σ_t log π_θ (log_l) or 1/|o| Σ_t π_θ/π_old (l_ratio);
    J_q   = mean_{o+} s − mean_{o−} s  (b)   or   mean_{o+} s − τ·log mean_{o−} exp(s/τ)  (dro, the paper's Eq.);
    objective = Σ_q n_q·J_q / N_seq   (= Σ_q J_q / #questions for equal groups, the code's pg_losses.sum()/num_q;
               groups without both kinds contribute 0 but are counted);
    KL    = Σ_{i,t} k(old, logp) / N_tok  (masked_mean over the whole mini-batch; k1 = old − logp for
            ppo_kl_type=kl, k3 = r − 1 − log r with r = π_θ/π_old for low_var_kl);
    loss  = −objective + sg(β·[KL_local − δ]_+)·KL  (KL_local: this batch's token mean).
    """
    B = ro.batch_size
    old = ro.old_logp
    s = []
    for i in range(B):
        ts = valid(ro, i)
        if score == "log_l":
            s.append(sum(logp[i, t] for t in ts) / len(ts))
        else:
            s.append(sum(torch.exp(logp[i, t] - old[i, t]) for t in ts) / len(ts))
    obj = logp.sum() * 0.0
    for mem in members(ro):
        pos = [i for i in mem if float(ro.reward[i]) > threshold]
        neg = [i for i in mem if float(ro.reward[i]) <= threshold]
        if not pos or not neg:
            continue
        sp = sum(s[i] for i in pos) / len(pos)
        if variant == "b":
            sn = sum(s[i] for i in neg) / len(neg)
        else:
            sn = tau * torch.log(sum(torch.exp(s[i] / tau) for i in neg) / len(neg))
        obj = obj + len(mem) * (sp - sn)
    obj = obj / (B if num_seqs is None else num_seqs)
    kl_terms = []
    for i in range(B):
        for t in valid(ro, i):
            x = logp[i, t] - old[i, t]
            kl_terms.append(-x if kl_estimator == "k1" else torch.exp(x) - 1 - x)
    kl = sum(kl_terms) / (len(kl_terms) if num_tokens is None else num_tokens)
    # the coefficient from this batch's own token mean (= the mini-batch KL with one micro-batch per mini-batch;
    # the official code also estimates it per micro-batch, dp_actor.py)
    coef = (beta * torch.clamp(sum(kl_terms) / len(kl_terms) - delta, min=0.0)).detach()
    return -obj + coef * kl


DISCO_SIZES = [[4, 3, 1, 5], [2, 2, 2], [6, 1], [1], [3, 3, 3, 2]]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("variant", ["b", "dro"])
@pytest.mark.parametrize("score", ["log_l", "l_ratio"])
@pytest.mark.parametrize("kl_estimator", ["k1", "k3"])
def test_disco_matches_reference(seed, variant, score, kl_estimator):
    sizes = DISCO_SIZES[seed]
    # a large drift so that the KL is above δ and the penalty is active in some batches
    logp, ro = make_batch(seed, sizes, drift=0.05 if seed % 2 else 0.002)
    hp = dict(variant=variant, score=score, kl_estimator=kl_estimator, tau=10.0 if score == "log_l" else 1.0)
    assert_same(loss_of("disco", ro, **hp), lambda lp: ref_disco(lp, ro, **hp), logp)


@pytest.mark.parametrize("seed", range(3))
def test_disco_hyperparameters_and_counts(seed):
    logp, ro = make_batch(10 + seed, [5, 4, 4, 1], drift=0.1)
    hp = dict(variant="dro", tau=0.7, delta=3e-3, beta=17.0, threshold=0.2, num_seqs=31.0, num_tokens=90.0)
    rewards = ro.reward * 0.6  # rewards 0 / 0.6, threshold 0.2
    ro = ro.replace(reward=rewards)
    assert_same(loss_of("disco", ro, **hp), lambda lp: ref_disco(lp, ro, **hp), logp)


def test_disco_micro_batches_sum_to_the_mini_batch():
    """With global counts, micro-batches of whole groups add up to the mini-batch objective (KL below δ)."""
    logp, ro = make_batch(21, [4, 3, 5, 2], drift=0.0)
    full = ref_disco(logp, ro, variant="dro").item()
    n_tok, n_seq = float(ro.mask.sum()), float(ro.batch_size)
    total = 0.0
    for part in ([0, 1], [2, 3]):
        keep = torch.isin(ro.group, torch.tensor(part))
        sub = ro.select(keep)
        zeros = torch.zeros(sub.mask.shape)
        out = POLICY_LOSSES["disco"](logp.detach()[keep], sub, zeros, variant="dro", num_seqs=n_seq, num_tokens=n_tok)
        total += float(out[0])
    assert abs(total - full) < ATOL


def test_disco_dro_tends_to_disco_b_as_tau_grows():
    logp, ro = make_batch(3, [4, 4], rewards=[1, 0, 0, 0, 1, 1, 0, 0], drift=0.0)
    b = float(POLICY_LOSSES["disco"](logp.detach(), ro, torch.zeros(ro.mask.shape), variant="b")[0])
    dro = float(POLICY_LOSSES["disco"](logp.detach(), ro, torch.zeros(ro.mask.shape), variant="dro", tau=1e5)[0])
    assert abs(b - dro) < 1e-5


def test_disco_official_surrogate_has_the_same_gradient():
    """The official DRO surrogate s+ − τ·S/sg(S) (S = Σ exp((s−max)/τ)) has the exact log-mean-exp's gradient."""
    logp, ro = make_batch(5, [4, 4], rewards=[1, 0, 0, 1, 0, 0, 0, 1], drift=0.0)  # equal groups, as the code
    tau = 10.0

    def official(lp):
        obj = lp.sum() * 0.0
        for mem in members(ro):
            s = {i: sum(lp[i, t] for t in valid(ro, i)) / len(valid(ro, i)) for i in mem}
            pos = [i for i in mem if ro.reward[i] == 1]
            neg = [i for i in mem if ro.reward[i] == 0]
            if not pos or not neg:
                continue
            m = max(float(s[i].detach()) / tau for i in neg)
            S = sum(torch.exp(s[i] / tau - m) for i in neg)
            obj = obj + sum(s[i] - tau * S / (S.detach() + 2.2e-16) for i in pos) / len(pos)
        return -obj / ro.num_groups  # KL is 0 at logp = old: no penalty

    _, g_official = value_and_grad(official, logp)
    _, g_ours = value_and_grad(loss_of("disco", ro, variant="dro", tau=tau), logp)
    assert torch.allclose(g_official, g_ours, atol=ATOL, rtol=0)


def test_disco_presets_use_the_official_defaults():
    for name, variant in (("disco", "b"), ("disco_dro", "dro")):
        p = PRESETS[name]
        assert p.arxiv == "2505.12366"
        assert p.loss.name == "disco"
        params = dict(p.loss.params)
        assert params["variant"] == variant
        assert params["score"] == "log_l"
        assert params["delta"] == 1e-4 and params["beta"] == 1e3  # actor.delta / actor.beta in every script
        assert params["kl_estimator"] == "k1"  # actor.ppo_kl_type=kl
        assert params.get("threshold", 0.5) == 0.5
        if variant == "dro":
            assert params["tau"] == 10.0  # run_disco_logL_*.sh (τ = 1 for L-ratio)
        assert p.trainer["num_generations"] == 8  # rollout.n=8
        assert p.trainer["temperature"] == 0.6  # rollout.temperature=0.6
        assert p.trainer.get("num_iterations", 1) == 1  # ppo_epochs=1
        assert p.trainer["minibatch_groups"] is True
        assert not p.regularizers  # use_kl_loss=False, entropy_coeff=0


# ================================================================================================== Reg-GRPO
def ref_reg_grpo(logp, ro, adv_seq, *, eps=1e-6, ddof=1, num_seqs=None):
    """L = 1/N Σ_i (Â_i − (ρ_i − mean_G ρ)/(std_G ρ + ε))², ρ_i = Σ_t (log π_θ − log π_old)."""
    B = ro.batch_size
    rho = [sum(logp[i, t] - ro.old_logp[i, t] for t in valid(ro, i)) for i in range(B)]
    total = logp.sum() * 0.0
    for mem in members(ro):
        n = len(mem)
        mu = sum(rho[i] for i in mem) / n
        ss = sum((rho[i] - mu) ** 2 for i in mem)
        # std 0 (a lone completion, or all ρ equal) is a constant 0: sqrt has no derivative there
        std = torch.sqrt(ss / (n - ddof)) if n - ddof > 0 and float(ss.detach()) > 0 else torch.zeros(())
        for i in mem:
            pred = (rho[i] - mu) / (std + eps)
            total = total + (float(adv_seq[i]) - pred) ** 2
    return total / (B if num_seqs is None else num_seqs)


def ref_grpo_adv(ro, eps=1e-6):
    adv = [0.0] * ro.batch_size
    for mem in members(ro):
        r = [float(ro.reward[i]) for i in mem]
        mu = sum(r) / len(r)
        sd = math.sqrt(sum((x - mu) ** 2 for x in r) / (len(r) - 1)) if len(r) > 1 else 0.0
        for i in mem:
            adv[i] = (float(ro.reward[i]) - mu) / (sd + eps)
    return adv


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ddof", [0, 1])
def test_reg_grpo_matches_reference(seed, ddof):
    sizes = DISCO_SIZES[seed]
    logp, ro = make_batch(seed, sizes, rewards=lambda g, B: torch.rand(B, generator=g).round(decimals=1), drift=0.1)
    adv_seq = ref_grpo_adv(ro)
    adv = ADVANTAGES["grpo"](ro)  # [B, T]
    for i in range(ro.batch_size):
        assert abs(float(adv[i, valid(ro, i)[0]]) - adv_seq[i]) < ATOL
    hp = dict(eps=1e-6, ddof=ddof)
    assert_same(loss_of("reg_grpo", ro, adv, **hp), lambda lp: ref_reg_grpo(lp, ro, adv_seq, **hp), logp)
    hp = dict(eps=1e-3, ddof=ddof, num_seqs=40.0)
    assert_same(loss_of("reg_grpo", ro, adv, **hp), lambda lp: ref_reg_grpo(lp, ro, adv_seq, **hp), logp)


def test_reg_grpo_at_the_first_step_is_grpo_policy_gradient():
    """At θ = θ_old every ρ is 0: the loss is Σ Â²/N and the gradient −2/(ε·N)·Σ_i Â_i (1 − 1/n_g)·∇ρ_i ...
    i.e. each token of completion i gets −2·Â_i/(ε·N) (the centring term sums to 0 because Σ_g Â = 0)."""
    logp, ro = make_batch(7, [4, 3, 1], rewards=[1, 0, 0, 1, 0, 1, 1, 0], drift=0.0)
    adv_seq = ref_grpo_adv(ro)
    adv = ADVANTAGES["grpo"](ro)
    eps = 1e-6
    v, g = value_and_grad(loss_of("reg_grpo", ro, adv, eps=eps), logp)
    B = ro.batch_size
    assert abs(float(v) - sum(a * a for a in adv_seq) / B) < ATOL
    expect = torch.zeros(ro.mask.shape)
    for i in range(B):
        for t in valid(ro, i):
            expect[i, t] = -2 * adv_seq[i] / (eps * B)
    assert torch.allclose(g, expect, rtol=1e-6, atol=1e-3)


def test_reg_grpo_preset():
    p = PRESETS["reg_grpo"]
    assert p.arxiv == "2506.07464"
    assert p.loss.name == "reg_grpo"
    assert p.advantage.name == "grpo"
    kl = [r for r in p.regularizers if r.name == "kl"]
    assert len(kl) == 1 and kl[0].params["coef"] == 0.1  # β = 0.1 on SEED-Bench-R1
    assert p.trainer["num_generations"] == 8
    assert p.trainer["minibatch_groups"] is True


# ====================================================================================================== TRPA
def ref_trpa(logp, ro, *, beta=0.1, anisotropy=2.5, tr_coef=0.001, fallback="batch", num_tokens=None):
    """compute_pairwise_policy_loss + the trust-region term of dp_actor.py (use_trkl_loss, not sqrt).

    fallback "batch" is the code's; "group" / "none" are the library's documented options (−log σ(±h) for every
    completion of a single-level group, pooled into the same mean / nothing for them)."""
    B = ro.batch_size
    level = ro.extras["level"]
    h = [sum(logp[i, t] - ro.ref_logp[i, t] for t in valid(ro, i)) / len(valid(ro, i)) for i in range(B)]
    zs = []
    for mem in members(ro):
        if len(mem) < 2:
            continue
        levels = sorted({int(level[i]) for i in mem})
        for a, b in itertools.combinations(levels, 2):  # a < b: a is better
            for w in [i for i in mem if int(level[i]) == a]:
                for lo in [i for i in mem if int(level[i]) == b]:
                    bw = anisotropy * beta if a == 1 else beta
                    zs.append(bw * (h[w] - h[lo]))
    terms = [-torch.nn.functional.logsigmoid(z) for z in zs]

    def single(i):  # −log σ(±h), + for level 1, no β
        return -torch.nn.functional.logsigmoid((1.0 if int(level[i]) == 1 else -1.0) * h[i])

    if fallback == "batch" and not zs:
        terms = [single(i) for i in range(B)]
    elif fallback == "group":
        for mem in members(ro):
            if len({int(level[i]) for i in mem}) == 1:
                terms += [single(i) for i in mem]
    pref = sum(terms) / len(terms) if terms else logp.sum() * 0.0
    kls = []
    for i in range(B):
        for t in valid(ro, i):
            x = ro.old_logp[i, t] - logp[i, t]  # kl_penalty(logprob=logp, ref_logprob=old, 'low_var_kl')
            kls.append(torch.clamp(torch.exp(x) - x - 1, min=-10, max=10))
    tr = sum(kls) / (len(kls) if num_tokens is None else num_tokens)
    return pref + tr_coef * tr


def with_levels(ro: Rollout, levels) -> Rollout:
    return ro.replace(extras={**ro.extras, "level": torch.as_tensor(levels, dtype=torch.long)})


@pytest.mark.parametrize("seed", range(6))
def test_trpa_matches_reference(seed):
    sizes = [[4, 3, 1, 5], [2, 2, 2], [6, 1], [3, 3, 3, 2], [5], [1, 4]][seed]
    logp, ro = make_batch(seed, sizes, drift=0.3)
    gen = torch.Generator().manual_seed(100 + seed)
    ro = with_levels(ro, torch.randint(1, 5, (ro.batch_size,), generator=gen))
    assert_same(loss_of("trpa", ro), lambda lp: ref_trpa(lp, ro), logp)
    hp = dict(beta=0.3, anisotropy=1.7, tr_coef=0.05)
    assert_same(loss_of("trpa", ro, **hp), lambda lp: ref_trpa(lp, ro, **hp), logp)


def test_trpa_unit_example_from_the_spec():
    """Levels [1, 2, 2, 4] give 5 pairs; with h = [1, 0, 0, 0] the level-1 pairs have z = 2.5·0.1·1."""
    mask = torch.ones(4, 2, dtype=torch.bool)
    ref = torch.zeros(4, 2)
    logp = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    ro = Rollout(group=torch.zeros(4, dtype=torch.long), mask=mask, reward=torch.zeros(4), old_logp=logp.detach(),
                 ref_logp=ref, extras={"level": torch.tensor([1, 2, 2, 4])})  # fmt: skip
    # pairs: (0,1) (0,2) (0,3) with z = 0.25, (1,3) (2,3) with z = 0
    expect = (3 * -math.log(1 / (1 + math.exp(-0.25))) + 2 * math.log(2)) / 5
    assert abs(float(loss_of("trpa", ro)(logp).detach()) - expect) < ATOL


@pytest.mark.parametrize("fallback", ["batch", "group", "none"])
def test_trpa_fallback_options(fallback):
    logp, ro = make_batch(4, [3, 2, 1, 4], drift=0.2)
    lv = torch.where(ro.group == 0, 1, 3)  # every group has a single level: no pair at all
    ro1 = with_levels(ro, lv)
    lv2 = lv.clone()
    lv2[(ro.group == 3).nonzero().flatten()[:2]] = torch.tensor([1, 2])  # group 3 now has pairs
    ro2 = with_levels(ro, lv2)
    for r in (ro1, ro2):
        assert_same(loss_of("trpa", r, fallback=fallback), lambda lp, r=r: ref_trpa(lp, r, fallback=fallback), logp)


def test_trpa_reward_levels_official_scale():
    """kk.py: 3 (level 1), −0.5 (2), −1 (3), −3 (4) with thresholds (1.0, −0.75, −2.0)."""
    ro = Rollout(group=torch.zeros(4, dtype=torch.long), mask=torch.ones(4, 1, dtype=torch.bool),
                 reward=torch.tensor([3.0, -0.5, -1.0, -3.0]))  # fmt: skip
    out, _ = SHAPING["reward_levels"](ro, thresholds=(1.0, -0.75, -2.0))
    assert out.extras["level"].tolist() == [1, 2, 3, 4]
    out, _ = SHAPING["reward_levels"](ro.replace(reward=torch.tensor([1.0, 0.0, -0.5, -1.0])))
    assert out.extras["level"].tolist() == [1, 2, 3, 4]


def test_trpa_preset():
    p = PRESETS["trpa"]
    assert p.arxiv == "2504.04524"
    params = dict(p.loss.params)
    assert params["beta"] == 0.1 and params["anisotropy"] == 2.5 and params["tr_coef"] == 0.001  # main_TRPA.sh
    assert p.trainer["num_generations"] == 16 and p.trainer["temperature"] == 1.0
    assert p.trainer["minibatch_groups"] is True
    assert not any(r.name == "kl" for r in p.regularizers)  # the reference KL is only logged in TRPA mode


# ======================================================================================================= P3O
def ref_p3o(logp, ro, *, epsilon=0.2, clip="joint", num_seqs=None):
    """Per prompt: the mean over its pairs (i < j) of the clipped pairwise surrogate; Σ_q n_q·mean_q / N_seq.

    lr_i = Σ_t (log π_θ − log π_old) (whole-trajectory ratio R_i = exp(lr_i)).
    V1 (separate): −[min(R_i a, clip(R_i) a) + min(R_j (−a), clip(R_j) (−a))], a = (r_i − r_j)/2.
    V2 (joint):    −min(R a, clip(R) a), R = R_w / R_l (w the better of the pair), a = |r_i − r_j|/2.
    """
    B = ro.batch_size
    lr = [sum(logp[i, t] - ro.old_logp[i, t] for t in valid(ro, i)) for i in range(B)]

    def surrogate(log_ratio, a):
        R = torch.exp(log_ratio)
        return torch.minimum(R * a, torch.clamp(R, 1 - epsilon, 1 + epsilon) * a)

    total = logp.sum() * 0.0
    for mem in members(ro):
        pairs = list(itertools.combinations(mem, 2))
        if not pairs:
            continue
        acc = logp.sum() * 0.0
        for i, j in pairs:
            ri, rj = float(ro.reward[i]), float(ro.reward[j])
            if clip == "separate":
                a = (ri - rj) / 2
                acc = acc - surrogate(lr[i], a) - surrogate(lr[j], -a)
            else:
                w, lo = (i, j) if ri >= rj else (j, i)
                acc = acc - surrogate(lr[w] - lr[lo], abs(ri - rj) / 2)
        total = total + len(mem) * acc / len(pairs)
    return total / (B if num_seqs is None else num_seqs)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("clip", ["joint", "separate"])
def test_p3o_matches_reference(seed, clip):
    sizes = [[2, 2, 2, 2], [2, 1, 2], [3, 2, 4], [1], [2, 5, 1, 2]][seed]
    # rewards on a coarse grid so that ties occur; a large drift so that some ratios are clipped
    logp, ro = make_batch(seed, sizes, rewards=lambda g, B: torch.randint(0, 3, (B,), generator=g) * 0.5, drift=0.15)
    assert_same(loss_of("p3o", ro, clip=clip), lambda lp: ref_p3o(lp, ro, clip=clip), logp)
    hp = dict(epsilon=0.05, clip=clip, num_seqs=17.0)
    assert_same(loss_of("p3o", ro, **hp), lambda lp: ref_p3o(lp, ro, **hp), logp)


def test_p3o_on_policy_gradient_is_the_pairwise_policy_gradient():
    """At θ = θ_old both versions give −(r1 − r2)/2 · ∇(log π(y1) − log π(y2)) per pair (G = 2): the paper's
    pairwise policy gradient; adding a constant to both rewards changes nothing."""
    logp, ro = make_batch(9, [2, 2, 2], rewards=[0.3, -1.2, 2.0, 0.5, 0.0, 0.0], drift=0.0)
    for clip in ("joint", "separate"):
        _, g = value_and_grad(loss_of("p3o", ro, clip=clip), logp)
        _, g_shift = value_and_grad(loss_of("p3o", ro.replace(reward=ro.reward + 5.0), clip=clip), logp)
        expect = torch.zeros(ro.mask.shape)
        for mem in members(ro):
            i, j = mem
            d = float(ro.reward[i] - ro.reward[j]) / 2
            for t in valid(ro, i):
                expect[i, t] = -d * 2 / ro.batch_size
            for t in valid(ro, j):
                expect[j, t] = d * 2 / ro.batch_size
        assert torch.allclose(g, expect, atol=ATOL, rtol=0)
        assert torch.allclose(g_shift, expect, atol=ATOL, rtol=0)


def test_p3o_preset():
    p = PRESETS["p3o"]
    assert p.arxiv == "2310.00212"
    assert p.loss.name == "p3o"
    assert p.loss.params["clip"] == "joint" and p.loss.params["epsilon"] == 0.2
    assert p.trainer["num_generations"] == 2  # two responses per prompt
    assert p.trainer["minibatch_groups"] is True


# ================================================================================================ cross-cutting
@pytest.mark.parametrize(
    "name, hp",
    [("disco", {"variant": "dro", "score": "l_ratio", "kl_estimator": "k3"}), ("disco", {}), ("reg_grpo", {}),
     ("trpa", {}), ("p3o", {"clip": "separate"}), ("p3o", {})],
)  # fmt: skip
def test_nan_at_padding_changes_nothing(name, hp):
    logp, ro = make_batch(12, [3, 2, 1, 4], drift=0.2)
    ro = with_levels(ro, torch.arange(ro.batch_size) % 3 + 1)
    pad = ~ro.mask
    nan = torch.full(ro.mask.shape, math.nan)
    ro_nan = ro.replace(old_logp=torch.where(pad, nan, ro.old_logp), ref_logp=torch.where(pad, nan, ro.ref_logp))
    adv = ADVANTAGES["grpo"](ro)
    v1, g1 = value_and_grad(loss_of(name, ro, adv, **hp), logp)
    logp2 = torch.where(pad, nan, logp.detach()).requires_grad_(True)
    v2, g2 = value_and_grad(loss_of(name, ro_nan, torch.where(pad, nan, adv), **hp), logp2)
    assert abs(float(v1) - float(v2)) < ATOL
    assert torch.allclose(g1, g2, atol=ATOL, rtol=0) and bool((g2[pad] == 0).all())


def test_p3o_and_reg_grpo_micro_batches_of_whole_groups_sum_to_the_mini_batch():
    logp, ro = make_batch(13, [2, 3, 2, 4], rewards=lambda g, B: torch.rand(B, generator=g), drift=0.2)
    adv = ADVANTAGES["grpo"](ro)
    for name in ("p3o", "reg_grpo"):
        full = float(POLICY_LOSSES[name](logp.detach(), ro, adv)[0])
        total = 0.0
        for part in ([0, 3], [1, 2]):
            keep = torch.isin(ro.group, torch.tensor(part))
            sub = ro.select(keep)
            total += float(POLICY_LOSSES[name](logp.detach()[keep], sub, adv[keep], num_seqs=float(ro.batch_size))[0])
        assert abs(total - full) < ATOL
