"""HRPO (MasHost): GRPO's group-relative advantage plus a weighted action-wise reward."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="hrpo",
    paper="MasHost Builds It All: Autonomous Multi-Agent System Directed by Reinforcement Learning",
    arxiv="2506.08507",
    advantage=Part("hrpo", {"step_weight": 1.0}),  # λ not reported: equal weight assumed (unverified)
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # clipped policy gradient (GRPO's ε = 0.2)
    aggregation="seq_mean_token_mean",  # GRPO's 1/G Σ_i 1/|o_i| Σ_t, the objective HRPO extends
    regularizers=(Part("kl", {"coef": 0.04, "estimator": "k3"}),),  # GRPO's k3 KL, β = 0.04 (not reported)
    trainer={"num_iterations": 1},
    notes="The paper's HRPO equations and code are not available (code 'upon acceptance'; arXiv 2506.08507 abstract "
    "and a third-party review were read). Form assumed from the spec: A_{i,t} = A_i^group + λ·r_{i,t}, A^group = "
    "GRPO's group z-score of the outcome (accuracy minus cost in the paper), r_{i,t} = the per-action "
    "'rationality' reward in rollout.token_reward, written on every token of its action. Step rewards are not "
    "normalised (one action's reward changes only that action's advantage; λ sets their scale). Without "
    "token_reward (no task writes one yet) the method is GRPO. λ = 1, the KL term and ε are GRPO's/assumed, not "
    "the paper's.",
)
