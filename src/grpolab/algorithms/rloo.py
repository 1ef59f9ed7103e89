"""RLOO: REINFORCE with the leave-one-out baseline of the other k−1 samples."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="rloo",
    paper="Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs",
    arxiv="2402.14740",
    shaping=(Part("kl_reward", {"coef": 0.05, "estimator": "k1", "level": "sequence"}),),
    advantage=Part("rloo"),
    loss=Part("reinforce"),
    aggregation="seq_mean_token_sum",  # the whole completion is one action: Σ_t log π, averaged over samples
    trainer={"num_iterations": 1},
    notes="The paper models the completion as a single action with the KL penalty in the sequence reward and "
    "reports k = 2 and 4; β = 0.05 is TRL's RLOO default (the paper tunes β per task).",
)
