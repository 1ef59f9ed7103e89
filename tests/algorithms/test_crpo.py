"""The crpo preset (Clinical-R1, arXiv 2512.00601), composed as a trainer does, equals its objective written out by
hand on a toy batch whose rewards are the clinical task's weighted accuracy + faithfulness + comprehensiveness."""

import math

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.types import Rollout
from grpolab.data.clinical import DEFAULT_WEIGHTS, clinical_task
from grpolab.rewards.scoring import score_completions

MAX_LEN = 5
CASE = {
    "findings": ["headache", "fever", "stiff neck", "confusion"],
    "key_findings": ["headache", "fever", "stiff neck"],
    "diagnosis": "meningitis",
    "differentials": ["migraine", "flu"],
}
# Two prompts (the same case), G = 5 completions each (crpo's num_generations)
COMPLETIONS = [
    "findings: headache, fever, stiff neck; ddx: migraine, flu; dx: meningitis",  # 1, 1, 1       -> 2
    "findings: headache, fever, aura; ddx: migraine, flu; dx: meningitis",  # 1, 2/3, 1/2·2/3+1/2 -> 1 + 1/3 + 5/12
    "findings: headache, fever, stiff neck; ddx: migraine, flu; dx: migraine",  # 0, 1, 1       -> 1
    "dx: meningitis",  # 1, 0, 0                                                                -> 1
    "no answer",  # 0, 0, 0                                                                     -> 0
    "findings: headache; ddx: flu; dx: meningitis",  # 1, 1, 1/2·1/3 + 1/2·1/2 = 5/12           -> 1 + 1/2 + 5/24
    "findings: headache, fever, stiff neck; ddx: migraine, flu; dx: meningitis",  # -> 2
    "findings: headache, fever, stiff neck; ddx: migraine, flu; dx: meningitis",  # -> 2
    "findings: rash; ddx: flu; dx: flu",  # 0, 0, 1/2·0 + 1/2·1/2 = 1/4                          -> 1/8
    "findings: fever, stiff neck; dx: meningitis",  # 1, 1, 1/2·2/3 = 1/3                         -> 1 + 1/2 + 1/6
]
# weights 1, 0.5, 0.5 (the task's default), computed by hand from the comments above
HAND_REWARDS = [2.0, 1 + 1 / 3 + 5 / 12, 1.0, 1.0, 0.0, 1 + 0.5 + 5 / 24, 2.0, 2.0, 1 / 8, 1 + 0.5 + 1 / 6]


def toy_batch():
    cols = {k: [v] * len(COMPLETIONS) for k, v in CASE.items()}
    task = clinical_task(n_train=5, n_eval=1)
    scores = score_completions(task.reward_funcs, task.reward_weights, [""] * 10, COMPLETIONS, cols)
    g = torch.Generator().manual_seed(5)
    lengths = torch.tensor([5, 3, 4, 1, 2, 5, 5, 2, 3, 4])
    mask = torch.arange(MAX_LEN)[None, :] < lengths[:, None]  # [B, T]
    old = -torch.rand(10, MAX_LEN, generator=g, dtype=torch.float64) - 0.1  # [B, T]
    logp = (old + 0.3 * torch.randn(10, MAX_LEN, generator=g, dtype=torch.float64)).requires_grad_()  # [B, T]
    rollout = Rollout(
        group=torch.tensor([0] * 5 + [1] * 5),
        mask=mask,
        reward=scores.reward.double(),
        rewards=scores.finite_rewards().double(),
        reward_names=tuple(scores.names),
        old_logp=old,
        ref_logp=old - 0.2 * torch.rand(10, MAX_LEN, generator=g, dtype=torch.float64),
    )
    return rollout, logp, lengths.tolist()


def test_the_task_reward_is_the_hand_weighted_sum():
    rollout, _, _ = toy_batch()
    assert dict(DEFAULT_WEIGHTS) == {"dx_accuracy": 1.0, "faithfulness": 0.5, "comprehensiveness": 0.5}
    assert rollout.reward_names == ("dx_accuracy", "faithfulness", "comprehensiveness")
    assert rollout.reward.tolist() == pytest.approx(HAND_REWARDS, abs=1e-6)


def expected_crpo(rollout, logp, lengths):
    """GRPO advantage (ddof 1, ε = 1e-6 outside the root), PPO clip 0.2, + 0.001·k3 per token, one token mean
    over all tokens of the batch (verl's masked mean)."""
    r, lp = rollout.reward.tolist(), logp.tolist()
    old, ref = rollout.old_logp.tolist(), rollout.ref_logp.tolist()
    total, tokens = 0.0, 0
    for i in range(10):
        members = [r[j] for j in range(10) if j // 5 == i // 5]
        mean = sum(members) / 5
        std = math.sqrt(sum((x - mean) ** 2 for x in members) / 4)
        a = (r[i] - mean) / (std + 1e-6)
        for t in range(lengths[i]):
            ratio = math.exp(lp[i][t] - old[i][t])
            clipped = -min(ratio * a, min(max(ratio, 0.8), 1.2) * a)
            x = ref[i][t] - lp[i][t]
            total += clipped + 0.001 * (math.exp(x) - x - 1)
            tokens += 1
    return total / tokens


def test_crpo_equals_its_objective_by_hand():
    preset = PRESETS["crpo"]
    rollout, logp, lengths = toy_batch()
    adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params)  # [B, T]
    agg = dict(aggregation=preset.aggregation, norm_constant=MAX_LEN)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, rollout, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, rollout, **agg, **part.params)[0]
    assert loss.item() == pytest.approx(expected_crpo(rollout, logp, lengths), rel=1e-9, abs=1e-12)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[~rollout.mask] == 0).all()


def test_crpo_settings_follow_the_released_scripts():
    preset, grpo = PRESETS["crpo"], PRESETS["grpo"]
    assert (preset.advantage, preset.loss) == (grpo.advantage, grpo.loss)  # GRPO's parts
    assert preset.aggregation == "token_mean" and preset.arxiv == "2512.00601"
    (kl,) = preset.regularizers
    assert (kl.name, dict(kl.params)) == ("kl", {"coef": 0.001, "estimator": "k3"})  # kl_loss_coef, low_var_kl
    assert dict(preset.trainer) == {"num_generations": 5, "temperature": 0.6, "num_iterations": 1}
    assert "weights" in preset.notes and "hard_mining" in preset.notes
