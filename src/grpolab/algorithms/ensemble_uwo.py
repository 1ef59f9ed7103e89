"""GRPO with a reward-model ensemble under uncertainty-weighted optimisation (Coste et al.): the reward is the
ensemble mean minus λ times the intra-ensemble variance (shaping ``ensemble`` with mode "uwo")."""

from grpolab.algorithms.ensemble_wco import KL_SMALL
from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="ensemble_uwo",
    paper="Reward Model Ensembles Help Mitigate Overoptimization",
    arxiv="2310.02743",
    # UWO: R = mean_m R_m − λ·Var_m R_m; λ = 0.1 for PPO (configs/config_rl.yaml uwo_weight), unbiased variance
    # (torch.var in ppo_reward_functions.py); rewards clipped to [-10, 10] (ppo_config.yaml cliprange_reward)
    shaping=(Part("ensemble", {"mode": "uwo", "uwo_weight": 0.1, "unbiased": True, "clip": 10.0}),),
    advantage=OBJECTIVE["advantage"],
    loss=OBJECTIVE["loss"],
    aggregation=OBJECTIVE["aggregation"],
    regularizers=KL_SMALL,  # the paper's small KL penalty 0.01 (see ensemble_wco)
    trainer={"num_iterations": 1},
    notes="Sources: the authors' code (tlc4418/llm_optimization: ppo_reward_functions.py "
    "uncertainty_weighted_optimization = mean − coeff·torch.var over members, torch.var being unbiased (/(M−1)); "
    "bon/ensemble_rm.py uses np.var (population, /M) for best-of-n; configs/config_rl.yaml: 5 seeded reward models, "
    "uwo_weight 0.1; configs/ppo_config.yaml: cliprange_reward 10). Taken: λ = 0.1 (PPO; best-of-n used 0.5 and the "
    "paper finds UWO robust to λ), the unbiased variance of the PPO code (unbiased=False gives the best-of-n one), "
    "reward clip [-10, 10], KL coefficient 0.01 as GRPO's k3 KL in the loss (the paper: a small KL penalty 0.01 with "
    "WCO/UWO prevents overoptimization). The ensemble scalar feeds GRPO's advantage instead of PPO+GAE. M = 5 in every "
    "paper config: python scripts/train_reward_models.py --out rms --num-models 5, then grpolab train --algo "
    'ensemble_uwo --task arith --task-args "{reward: [exact, {reward_model: {path: rms/rm_0}}, ..., {reward_model: '
    '{path: rms/rm_4}}]}"; λ: --shaping "[{name: ensemble, params: {mode: uwo, uwo_weight: 0.5, clip: 10.0}}]". The '
    "members are the reward columns named rm_..., else every column (one member: variance 0, GRPO with β = 0.01); "
    "verifier columns are only logged.",
)
