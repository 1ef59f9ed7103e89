"""GRPO with a reward-model ensemble under worst-case optimisation (Coste et al.): the reward is the minimum of M
reward models' scores (shaping ``ensemble`` with mode "wco", math in ``core/reward_combination.py``)."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Part, Preset

#: Coste et al.'s PPO runs combine a small KL penalty (β = 0.01) with WCO / UWO ("combining it with a small KL penalty
#: successfully prevents overoptimization at no performance cost"): GRPO's k3 KL term with that coefficient.
KL_SMALL = (Part("kl", {"coef": 0.01, "estimator": "k3"}),)

PRESET = Preset(
    name="ensemble_wco",
    paper="Reward Model Ensembles Help Mitigate Overoptimization",
    arxiv="2310.02743",
    # WCO: R = min_m R_m over the ensemble (no hyper-parameter); rewards clipped to [-10, 10] as the authors' PPO
    # config (configs/ppo_config.yaml cliprange_reward: 10)
    shaping=(Part("ensemble", {"mode": "wco", "clip": 10.0}),),
    advantage=OBJECTIVE["advantage"],
    loss=OBJECTIVE["loss"],
    aggregation=OBJECTIVE["aggregation"],
    regularizers=KL_SMALL,
    trainer={"num_iterations": 1},
    notes="Sources: the authors' code (tlc4418/llm_optimization: ppo_reward_functions.py worst_case_optimization = "
    "torch.min over members; configs/config_rl.yaml: 5 seeded reward models; configs/ppo_config.yaml: "
    "cliprange_reward 10) and the paper's PPO result that WCO/UWO with a small KL penalty (0.01) prevent "
    "overoptimization. Taken: WCO, reward clip [-10, 10], KL coefficient 0.01 (as GRPO's k3 KL in the loss: the paper "
    "puts the KL in PPO's reward; GRPO's β = 0.04 replaced by the paper's 0.01). Not taken: PPO itself (the ensemble "
    "reward feeds GRPO's group-normalised advantage instead of PPO+GAE; the same combined scalar replaces the single "
    "reward model's reward, as in the paper). M = 5 in every paper config: train them with python "
    "scripts/train_reward_models.py --out rms --num-models 5, then grpolab train --algo ensemble_wco --task arith "
    '--task-args "{reward: [exact, {reward_model: {path: rms/rm_0}}, {reward_model: {path: rms/rm_1}}, '
    '{reward_model: {path: rms/rm_2}}, {reward_model: {path: rms/rm_3}}, {reward_model: {path: rms/rm_4}}]}". The '
    "members are the reward columns named rm_... (every reward model), else every column (a one-reward task trains "
    "as GRPO with β = 0.01); verifier columns are only logged (others_weight 0). Metrics: ensemble/spread, "
    "ensemble/variance (intra-ensemble disagreement), ensemble/penalty (member mean − WCO).",
)
