"""Temporal-RLT: GRPO with a discrete + continuous dual reward and variance-aware data selection."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Preset

PRESET = Preset(
    name="dual_reward",
    paper="Reinforcement Learning Tuning for VideoLLMs: Reward Design and Data Efficiency",
    arxiv="2506.01908",
    # The paper keeps GRPO's objective ("built upon the GRPO framework"): GRPO's parts, as in grpo.py.
    **OBJECTIVE,
    trainer={
        "num_iterations": 1,
        # variance-aware data selection (the paper's offline repeated-inference selection, run online)
        "sampler": "variance_select",
        "sampler_args": {
            "pool_size": 64,  # grpolab choice: rows scored per refresh (the paper scores its whole pool once)
            "min_variance": 0.0,  # keep rows whose repeats disagree at all (paper threshold not available)
            "refresh_every": 10,  # grpolab choice: re-select every 10 steps (0 = once, as the paper)
        },
    },
    notes="Sources: the arXiv 2506.01908 abstract and summaries (the full method text was not available) and the "
    "authors' released Temporal-R1 code (github appletea233/Temporal-R1, the pre-paper version). Confirmed: GRPO; a "
    "dual reward, discrete for multiple-choice VideoQA and continuous temporal IoU for grounding; samples selected "
    "by repeated inference for reward variance (Temporal-RLT-32k from a 490k pool, offline). Assumed: the discrete "
    "and continuous parts add with weights 1 and 1; the keep rule is variance > 0 (population variance, ddof 0); "
    "the selection runs online (pool of 64 rows, refreshed every 10 steps, the last round of a step always trains) "
    "because a trainer cannot score the data set before its first step. The reward is the task's: VERIFIERS['dual'] "
    '(grpolab.rewards.dual), chosen with --task file --task-args "{train: rows.jsonl, reward: [numeric, dual], '
    'reward_weights: [0, 1]}" (numeric first with weight 0 gives the 0/1 accuracy metric, dual the trained reward). '
    'On the built-in task: grpolab train --algo dual_reward --task-args "{reward: dual}" (the accuracy metric stays '
    "the exact 0/1 verifier); with the default exact reward the sampler selects on the 0/1 reward. The authors' "
    "code (EasyR1) trains with token-mean aggregation, k3 KL β = 0.01, entropy bonus 0.001, 8 rollouts at "
    "temperature 1.0, lr 1e-6, 16 prompts per step; the preset keeps GRPO's parts (grpo.py) as the paper states.",
)
