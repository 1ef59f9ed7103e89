"""DAPO: clip-higher, dynamic-sampling filter, token-level loss, overlong shaping."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="dapo",
    paper="DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
    arxiv="2503.14476",
    shaping=(Part("overlong", {"cache_fraction": 0.2, "factor": 1.0}),),  # soft overlong punishment, Eq. 13
    advantage=Part("grpo", {"scale": "group"}),
    filters=(Part("zero_variance"),),  # dynamic sampling, Eq. 11: all-correct / all-wrong groups carry no signal
    loss=Part("clip_higher", {"epsilon_low": 0.2, "epsilon_high": 0.28}),  # clip-higher
    aggregation="token_mean",  # token-level policy-gradient loss
    trainer={"temperature": 1.0, "top_p": 1.0},
    notes="Paper scale: G = 16, 512 prompts per step, lr 1e-6 with 20 warm-up steps. No KL term. "
    "L_cache = 4096 of L_max = 20480 is kept as the fraction 0.2 of the run's generation limit. "
    "Here the zero-variance filter drops groups; DAPO's refill of the batch by generating more prompts is a prompt "
    "sampler's job. The filter tests the combined reward; pass objective='accuracy' when a task logs one.",
)
