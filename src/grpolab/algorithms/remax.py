"""ReMax: REINFORCE with the reward of the greedy completion as the baseline."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="remax",
    paper="ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for Aligning Large Language Models",
    arxiv="2310.10505",
    rollout=(Part("greedy_baseline"),),  # one greedy decode per prompt, its reward in extras["greedy_reward"]
    advantage=Part("remax", {"baseline_key": "greedy_reward"}),
    loss=Part("reinforce"),
    aggregation="seq_mean_token_sum",  # REINFORCE on the sequence log-probability
    trainer={"num_generations": 1, "num_iterations": 1},
    notes="One sampled completion per prompt plus one greedy decode whose reward is the baseline (stored by the "
    "greedy_baseline rollout strategy in extras['greedy_reward']).",
)
