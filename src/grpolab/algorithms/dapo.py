"""DAPO: clip-higher, dynamic sampling, token-level loss, overlong shaping."""

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
    # dynamic sampling (§3.2, Algorithm 1): regenerate until the batch holds groups that are neither all correct nor
    # all wrong; verl's recipe generates 3x the missing prompts per round (gen batch 1536 for 512) for <= 10 rounds
    trainer={
        "temperature": 1.0,
        "top_p": 1.0,
        "sampler": "dynamic",
        "sampler_args": {"max_rounds": 10, "oversample": 3.0, "objective": "accuracy"},
    },
    notes="Paper scale: G = 16, 512 prompts per step, lr 1e-6 with 20 warm-up steps. No KL term. "
    "L_cache = 4096 of L_max = 20480 is kept as the fraction 0.2 of the run's generation limit. "
    "Dynamic sampling is the 'dynamic' prompt sampler (accuracy objective: the paper's 'accuracy equal to 1 or 0'); "
    "the zero-variance filter stays for the batch the sampler falls back to when its 10 rounds run out (it tests the "
    "combined reward). Turn the refill off with --sampler uniform (filter only: a smaller batch).",
)
