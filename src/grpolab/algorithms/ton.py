"""TON (Think-or-Not): thought-dropout SFT, then plain GRPO on accuracy + format where thinking is optional."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Preset

PRESET = Preset(
    name="ton",
    paper="Think or Not? Selective Reasoning via Reinforcement Learning for Vision-Language Models",
    arxiv="2505.16854",
    # The GRPO stage is vanilla GRPO (Sec. 3): the method lives in the data (thought dropout) and in the format
    # reward that accepts an empty thought, not in the objective: GRPO's (grpo.py). Its KL: TON's code base (R1-V on
    # TRL's GRPOTrainer) keeps TRL's KL term, β = 0.04 by default there.
    **OBJECTIVE,
    # official script src/scripts/run_grpo_vllm_qwen25vl.sh: 8 generations per prompt, temperature 1.0, one
    # update per rollout (TRL's default)
    trainer={"num_iterations": 1, "num_generations": 8, "temperature": 1.0},
    notes="Two stages (Sec. 3). (1) SFT with thought dropout: the gold thought is replaced by an empty one with "
    "probability p = 0.5; gold thoughts come from 'reverse thinking' (the model explains how to reach the known "
    "answer; task arith_think writes that explanation by rule: ones column, then tens column): `grpolab sft "
    "--task arith_think --thought-dropout 0.5 --name ton-sft`. (2) This preset, plain GRPO on accuracy + a format"
    " reward that accepts both an empty and a full thought, so the model is free to skip thinking: `grpolab train"
    " --algo ton --task arith_think --model runs/ton-sft/model` (the task suggests 24 new tokens, which hold the "
    "longest thought; 8, the limit of tasks without a suggestion, would cut full thoughts off and bias the "
    "choice). arith_think logs the skip rate as the weight-0 reward reward/empty_thought and the mean thought "
    "length as reward/thought_length. Paper scale: Qwen2.5-VL 3B/7B, lr 1e-6 constant, G = 8; 'up to 90% shorter'"
    " completions than vanilla GRPO.",
)
