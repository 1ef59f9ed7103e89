"""Fleming-R1's two-stage RLVR: GRPO with uniform prompts in stage 1, then adaptive hard-sample mining (prompt
sampler ``hard_mining``, math in ``core/hard_mining.py``)."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Preset

PRESET = Preset(
    name="hard_mining",
    paper="Fleming-R1: Toward Expert-Level Medical Reasoning via Reinforcement Learning",
    arxiv="2509.15279",
    # the RL objective is GRPO's (the abstract: "two-stage RLVR ... using Group Relative Policy Optimization")
    **OBJECTIVE,
    trainer={
        "num_iterations": 1,
        "sampler": "hard_mining",
        # all four values are unverified choices (the paper's thresholds and stage split were not found)
        "sampler_args": {"stage1_fraction": 0.5, "tau": 0.25, "hard_fraction": 0.5, "remine_every": 1},
    },
    notes="Source: the abstract only (two-stage RLVR with GRPO after a CoT cold start: stage 1 consolidates core "
    "skills, stage 2 targets persistent failure modes through adaptive hard-sample mining); the method section's "
    "numbers were out of reach, so this is one reading. Stage 1 = the first half of the run (stage1_fraction 0.5), "
    "uniform prompts, per-row correct/total rollout counts recorded. At the stage switch the miner takes rows with "
    "pass rate p̂ ≤ τ = 0.25 (at most 2 of 8 correct) among rows with at least min_rollouts = 1 rollout. Stage 2 "
    "batches draw hard_fraction = 0.5 of their prompts from that pool (without replacement, or with replacement when "
    "the pool is smaller) and the rest uniformly ('emphasised' read as oversampled, mixed with uniform prompts so "
    "skills from stage 1 are kept). 'Adaptive' read as: counts keep updating in stage 2 and the pool is re-mined "
    "every step (remine_every = 1), so rows whose running pass rate rises above τ leave and hard rows met in the "
    "uniform share join; remine_every = 0 keeps the stage-switch pool and only drops rows. An empty pool gives a "
    "uniform batch (metric sampler/uniform_fallback). The paper's curated + knowledge-graph data and CoT cold start "
    "are data work outside the sampler. GRPO parts and defaults as in the grpo preset (β = 0.04, ε = 0.2).",
)
