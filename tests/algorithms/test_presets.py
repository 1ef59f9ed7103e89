"""Each preset, composed from its parts exactly as a trainer would, equals its paper's objective written out
by hand (Python loops over completions and tokens) on one fixed toy batch."""

import math
from pathlib import Path

import pytest
import torch

from grpolab.algorithms import PRESETS, Part, Preset
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.advantages import ADVANTAGES, compute_gae, outcome_token_rewards
from grpolab.core.filters import FILTERS
from grpolab.core.losses import POLICY_LOSSES, value_loss
from grpolab.core.registry import UnknownNameError
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout

MAX_LEN = 4  # the run's generation limit: T of the toy batch


def toy_batch():
    """Two prompts, three completions each, unequal lengths; float64 for tight comparisons."""
    g = torch.Generator().manual_seed(7)
    lengths = [4, 2, 3, 4, 1, 3]
    mask = torch.arange(MAX_LEN)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    old = -torch.rand(6, MAX_LEN, generator=g, dtype=torch.float64) - 0.1  # [B, T]
    logp = (old + 0.3 * torch.randn(6, MAX_LEN, generator=g, dtype=torch.float64)).requires_grad_()  # [B, T]
    rollout = Rollout(
        group=torch.tensor([0, 0, 0, 1, 1, 1]),
        mask=mask,
        reward=torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64),
        old_logp=old,
        ref_logp=old - 0.2 * torch.rand(6, MAX_LEN, generator=g, dtype=torch.float64),
        value=torch.randn(6, MAX_LEN, generator=g, dtype=torch.float64),
        truncated=torch.tensor([True, False, False, True, False, False]),
        extras={"greedy_reward": torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)},
    )
    values = (rollout.value + 0.1 * torch.randn(6, MAX_LEN, generator=g, dtype=torch.float64)).requires_grad_()
    return rollout, logp, values, lengths


def compose(preset: Preset, rollout: Rollout, logp, values):
    """The trainer's loop for one batch, driven only by the preset's data (no branch on its name)."""
    for part in preset.shaping:
        fn = SHAPING[part.name]
        rollout, _ = fn(rollout, **with_run_arguments(fn, part.params, {"max_len": MAX_LEN}))
    adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params)  # [B, T]
    keep = torch.ones(rollout.batch_size, dtype=torch.bool)
    for part in preset.filters:
        keep &= FILTERS[part.name](rollout, **part.params)[0]
    full = rollout
    rollout, adv, logp = rollout.select(keep), adv[keep], logp[keep]
    agg = dict(aggregation=preset.aggregation, norm_constant=MAX_LEN)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, rollout, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, rollout, **agg, **part.params)[0]
    if preset.value_loss is not None:
        gamma, lam = preset.advantage.params["gamma"], preset.advantage.params["lam"]
        _, returns = compute_gae(outcome_token_rewards(full), full.value, full.mask, gamma=gamma, lam=lam)
        vf, _ = value_loss(values[keep], rollout, returns[keep], aggregation="token_mean", **preset.value_loss)
        loss = loss + preset.trainer["vf_coef"] * vf
    return loss


# ---------------------------------------------------------------------------------- objectives written by hand
def group_of(i):
    return 0 if i < 3 else 1


def clipped(ratio, a, lo, hi):
    return -min(ratio * a, min(max(ratio, 1 - lo), 1 + hi) * a)


def grpo_adv(r, i, scale=True):
    members = [r[j] for j in range(6) if group_of(j) == group_of(i)]
    mean = sum(members) / len(members)
    std = math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
    return (r[i] - mean) / (std + 1e-6) if scale else r[i] - mean


def expected_grpo(b):
    """DeepSeekMath Eq. 3 with k3 KL, β = 0.04, ε = 0.2, 1/|o_i| inside, mean over completions."""
    rollout, logp, _, lengths = b
    r, lp, old, ref = rollout.reward.tolist(), logp.tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist()
    total = 0.0
    for i in range(6):
        a = grpo_adv(r, i)
        per_token = []
        for t in range(lengths[i]):
            x = ref[i][t] - lp[i][t]
            per_token.append(clipped(math.exp(lp[i][t] - old[i][t]), a, 0.2, 0.2) + 0.04 * (math.exp(x) - x - 1))
        total += sum(per_token) / lengths[i]
    return total / 6


def expected_dr_grpo(b):
    """Dr. GRPO: A = r − mean, token losses summed per completion and divided by the constant MAX_LEN."""
    rollout, logp, _, lengths = b
    r, lp, old = rollout.reward.tolist(), logp.tolist(), rollout.old_logp.tolist()
    return sum(
        clipped(math.exp(lp[i][t] - old[i][t]), grpo_adv(r, i, scale=False), 0.2, 0.2)
        for i in range(6)
        for t in range(lengths[i])
    ) / (6 * MAX_LEN)


def expected_dapo(b):
    """DAPO: overlong shaping (L_max 4, L_cache round(0.2·4) = 1), group-std advantage, drop zero-variance groups,
    clip-higher (0.2, 0.28), token-mean over the kept completions."""
    rollout, logp, _, lengths = b
    lp, old = logp.tolist(), rollout.old_logp.tolist()
    r = [x + (-1.0 if n > 3 else 0.0) for x, n in zip(rollout.reward.tolist(), lengths, strict=True)]
    # shaped rewards: group 0 = (0, 0, 0) -> dropped; group 1 = (0, 1, 0) -> kept
    assert r == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    terms = [
        clipped(math.exp(lp[i][t] - old[i][t]), grpo_adv(r, i), 0.2, 0.28) for i in (3, 4, 5) for t in range(lengths[i])
    ]
    return sum(terms) / len(terms)


def expected_gspo(b):
    """GSPO: s_i = exp(mean_t log ρ), loss_i = −min(s_i A_i, clip(s_i, 1 − 3e-4, 1 + 4e-4) A_i), mean over i."""
    rollout, logp, _, lengths = b
    r, lp, old = rollout.reward.tolist(), logp.tolist(), rollout.old_logp.tolist()
    total = 0.0
    for i in range(6):
        s = math.exp(sum(lp[i][t] - old[i][t] for t in range(lengths[i])) / lengths[i])
        total += clipped(s, grpo_adv(r, i), 3e-4, 4e-4)
    return total / 6


def expected_rloo(b):
    """RLOO: r'_i = r_i − 0.05·Σ_t (old − ref), A_i = r'_i − mean of the others, REINFORCE on Σ_t log π."""
    rollout, logp, _, lengths = b
    lp, old, ref = logp.tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist()
    r = [rollout.reward[i].item() - 0.05 * sum(old[i][t] - ref[i][t] for t in range(lengths[i])) for i in range(6)]
    total = 0.0
    for i in range(6):
        others = [r[j] for j in range(6) if group_of(j) == group_of(i) and j != i]
        a = r[i] - sum(others) / len(others)
        total += -a * sum(lp[i][: lengths[i]])
    return total / 6


def expected_remax(b):
    """ReMax: A_i = r_i − r(greedy), REINFORCE on Σ_t log π, mean over completions."""
    rollout, logp, _, lengths = b
    greedy = rollout.extras["greedy_reward"].tolist()
    return sum(-(rollout.reward[i].item() - greedy[i]) * sum(logp.tolist()[i][: lengths[i]]) for i in range(6)) / 6


def whiten(values):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return [(v - mean) / math.sqrt(var + 1e-8) for v in values]


def expected_reinforce_pp(b):
    """REINFORCE++: r_t = 1[last]·r − 0.01·(old − ref), G_t = Σ_{s≥t} r_s, whitened over all valid tokens,
    PPO-clip 0.2, token-mean."""
    rollout, logp, _, lengths = b
    lp, old, ref = logp.tolist(), rollout.old_logp.tolist(), rollout.ref_logp.tolist()
    returns, ratios = [], []
    for i in range(6):
        rew = [-0.01 * (old[i][t] - ref[i][t]) for t in range(lengths[i])]
        rew[-1] += rollout.reward[i].item()
        returns += [sum(rew[t:]) for t in range(lengths[i])]
        ratios += [math.exp(lp[i][t] - old[i][t]) for t in range(lengths[i])]
    adv = whiten(returns)
    return sum(clipped(q, a, 0.2, 0.2) for q, a in zip(ratios, adv, strict=True)) / len(adv)


def expected_ppo(b):
    """PPO: r_t = 1[last]·r − 0.05·(old − ref); GAE(γ 1, λ 0.95), whitened; clip 0.2 token-mean;
    plus 0.5 × clipped value loss ½·max((V − R)², (clip(V, V_old ± 0.2) − R)²), token-mean."""
    rollout, logp, values, lengths = b
    lp, old, ref, v_old, v = (x.tolist() for x in (logp, rollout.old_logp, rollout.ref_logp, rollout.value, values))
    advs, rets, ratios, vf = [], [], [], []
    for i in range(6):
        n = lengths[i]
        rew = [-0.05 * (old[i][t] - ref[i][t]) for t in range(n)]
        rew[-1] += rollout.reward[i].item()
        a_next, row = 0.0, [0.0] * n
        for t in reversed(range(n)):
            delta = rew[t] + (v_old[i][t + 1] if t + 1 < n else 0.0) - v_old[i][t]
            a_next = delta + 0.95 * a_next
            row[t] = a_next
        advs += row
        rets += [row[t] + v_old[i][t] for t in range(n)]
        ratios += [math.exp(lp[i][t] - old[i][t]) for t in range(n)]
        vf += [(v[i][t], v_old[i][t]) for t in range(n)]
    pg = sum(clipped(q, a, 0.2, 0.2) for q, a in zip(ratios, whiten(advs), strict=True)) / len(advs)
    vloss = [
        0.5 * max((val - R) ** 2, (min(max(val, vo - 0.2), vo + 0.2) - R) ** 2)
        for (val, vo), R in zip(vf, rets, strict=True)
    ]
    return pg + 0.5 * sum(vloss) / len(vloss)


EXPECTED = {
    "grpo": expected_grpo,
    "dr_grpo": expected_dr_grpo,
    "dapo": expected_dapo,
    "gspo": expected_gspo,
    "rloo": expected_rloo,
    "remax": expected_remax,
    "reinforce_pp": expected_reinforce_pp,
    "ppo": expected_ppo,
}


# Presets whose paper objective (or, for methods that change what is sampled or which tokens train, whose
# mechanism) is written out by hand in another test file: preset -> (file, registered part name it checks).
ELSEWHERE = {
    "riskpo": ("tests/algorithms/test_presets_risk_beta.py", "riskpo"),
    "bnpo": ("tests/algorithms/test_presets_risk_beta.py", "bnpo"),
    "hrpo": ("tests/algorithms/test_presets_risk_beta.py", "hrpo"),
    "grpo_s": ("tests/algorithms/test_presets_risk_beta.py", "grpo_s"),
    "disco": ("tests/algorithms/test_presets_pairwise.py", "disco"),
    "disco_dro": ("tests/algorithms/test_presets_pairwise.py", "disco_dro"),
    "reg_grpo": ("tests/algorithms/test_presets_pairwise.py", "reg_grpo"),
    "trpa": ("tests/algorithms/test_presets_pairwise.py", "trpa"),
    "p3o": ("tests/algorithms/test_presets_pairwise.py", "p3o"),
    "rec": ("tests/algorithms/test_presets_offpolicy.py", "rec"),
    "opmd": ("tests/algorithms/test_presets_offpolicy.py", "opmd"),
    "asymre": ("tests/algorithms/test_presets_offpolicy.py", "asymre"),
    "loop": ("tests/algorithms/test_presets_offpolicy.py", "loop"),
    "mdpo": ("tests/algorithms/test_presets_offpolicy.py", "mdpo"),
    "grpo_llds": ("tests/algorithms/test_presets_offpolicy.py", "grpo_llds"),
    "gtpo": ("tests/core/test_gtpo.py", "gtpo"),
    "d3s": ("tests/core/test_d3s.py", "d3s"),
    "dagrpo": ("tests/core/test_dagrpo.py", "dagrpo"),
    "spo_chain": ("tests/core/test_spo.py", "spo_chain"),
    "spo_tree": ("tests/core/test_spo.py", "spo_tree"),
    "brpo": ("tests/core/test_brpo.py", "brpo"),
    "polychromic": ("tests/core/test_polychromic.py", "polychromic"),
    "aepo": ("tests/core/test_aepo.py", "aepo"),
    "tppo": ("tests/core/test_egae.py", "egae"),
    "capo": ("tests/core/test_curvature.py", "capo"),
    "dual_reward": ("tests/data/test_variance_select.py", "dual_reward"),
    "ton": ("tests/data/test_thought_dropout.py", "ton"),
    "vas": ("tests/data/test_vas.py", "vas"),
    "drpo": ("tests/core/test_reset.py", "drpo"),
    "vade": ("tests/data/test_vade.py", "vade"),
    "hard_mining": ("tests/data/test_hard_mining.py", "hard_mining"),
    "icpo": ("tests/core/test_mixed_policy.py", "icpo"),
    "scaf_grpo": ("tests/core/test_scaffold.py", "scaf_grpo"),
    "reg_grpo_aug": ("tests/core/test_scaffold.py", "reg_grpo_aug"),
    "cures": ("tests/data/test_cures.py", "cures"),
    "mo_grpo": ("tests/core/test_reward_combination.py", "multi_objective"),
    "ensemble_wco": ("tests/core/test_reward_combination.py", "ensemble"),
    "ensemble_uwo": ("tests/core/test_reward_combination.py", "ensemble"),
    "rubric_env": ("tests/envs/test_consultation_preset.py", "rubric_env"),
    "mcts_prm": ("tests/core/test_prm.py", "mcts_prm"),
    "cgpo": ("tests/core/test_cgpo.py", "cgpo"),
    "s_grpo": ("tests/rewards/test_critic.py", "s_grpo"),
    "crpo": ("tests/algorithms/test_crpo.py", "crpo"),
    "otc_grpo": ("tests/core/test_otc.py", "otc"),
    "otc_ppo": ("tests/core/test_otc.py", "otc"),
}


def test_every_preset_has_a_hand_written_objective():
    root = Path(__file__).resolve().parents[2]
    for name, (path, part) in ELSEWHERE.items():
        assert f'"{part}"' in (root / path).read_text(), f"{path} does not check {part!r} ({name})"
    assert sorted(PRESETS) == sorted({*EXPECTED, *ELSEWHERE})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_equals_its_paper_objective(name):
    batch = toy_batch()
    rollout, logp, values, _ = batch
    loss = compose(PRESETS[name], rollout, logp, values)
    assert loss.item() == pytest.approx(EXPECTED[name](batch), rel=1e-9, abs=1e-12)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad.abs().sum() > 0
    assert (logp.grad[~rollout.mask] == 0).all()


def test_presets_cite_their_paper_and_use_known_trainer_settings():
    for name in PRESETS:
        preset = PRESETS[name]
        assert preset.name == name and preset.paper and preset.notes
        assert preset.arxiv.replace(".", "").isdigit() and len(preset.arxiv.split(".")[0]) == 4


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (dict(advantage=Part("gpro")), UnknownNameError, "unknown advantage 'gpro'; known: .*grpo"),
        (dict(loss=Part("ppo_clip", {"epsilom": 0.2})), ValueError, r"unknown arguments \['epsilom'\]"),
        (dict(loss=Part("ppo_clip", {"aggregation": "token_mean"})), ValueError, "supplied by the trainer"),
        (dict(aggregation="mean"), UnknownNameError, "unknown aggregation 'mean'"),
        (dict(shaping=(Part("kl_reward"),)), ValueError, r"required arguments \['coef'\]"),
        (dict(filters=(Part("zero_var"),)), UnknownNameError, "unknown filter"),
        (dict(regularizers=(Part("kl", {"beta": 0.1}),)), ValueError, "unknown arguments"),
        (dict(value_loss={"clip": 0.2}), ValueError, "value_loss: unknown arguments"),
        (dict(trainer={"lr": 1e-6}), ValueError, r"unknown trainer settings \['lr'\]"),
    ],
)
def test_invalid_presets_fail_when_built(changes, error, message):
    fields = dict(name="x", paper="p", arxiv="0000.00000", advantage=Part("grpo"), loss=Part("ppo_clip"))
    fields["aggregation"] = "token_mean"
    with pytest.raises(error, match=message):
        Preset(**{**fields, **changes})


def test_overlong_needs_only_the_run_supplied_max_len():
    preset = Preset(
        name="x",
        paper="p",
        arxiv="0000.00000",
        advantage=Part("grpo"),
        loss=Part("ppo_clip"),
        aggregation="token_mean",
        shaping=(Part("overlong"),),
    )
    assert preset.slots["shaping"] == "overlong"


def test_preset_parts_are_read_only():
    with pytest.raises(TypeError):
        PRESETS["grpo"].loss.params["epsilon"] = 0.3


def test_presets_know_what_their_parts_read():
    assert PRESETS["grpo"].requires == {"old_logp", "ref_logp"}
    assert PRESETS["dr_grpo"].requires == {"old_logp"}
    assert PRESETS["ppo"].requires == {"old_logp", "ref_logp", "value"}
    assert PRESETS["remax"].requires == {"greedy_reward"}
    assert PRESETS["rloo"].requires == {"old_logp", "ref_logp"}
