"""S-GRPO: GRPO on a critic's format + accuracy + suggestion rewards (GUI-Critic-R1)."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Preset

PRESET = Preset(
    name="s_grpo",
    paper="Look Before You Leap: A GUI-Critic-R1 Model for Pre-Operative Error Diagnosis in GUI Automation",
    arxiv="2506.04614",
    **OBJECTIVE,  # S-GRPO keeps GRPO's objective; its change is the reward (the suggestion reward)
    trainer={"num_iterations": 1},
    notes="Suggestion-aware GRPO: GRPO's parts unchanged; the method is in the reward, which belongs to the task: train"
    " with `grpolab train --algo s_grpo --task critic` (grpolab.data.critic: an arith problem with a proposed "
    "answer, '23+45=67,', answered '1' (correct) or '0,68' (wrong, with the correction); rewards in "
    "grpolab.rewards.critic). Reward = format + accuracy (predicted label = ground truth) + suggestion (on a "
    "wrong proposal the suggestion equals the correct answer; None, i.e. not applicable, on a correct proposal). "
    "The paper's reward weights were not found (spec part B §13): 1, 1, 1 (critic task option reward_weights). "
    "The paper's free-text critique is left out (the built-in tokenizer has no letters) and its RFT cold start is"
    " a separate SFT stage (grpolab sft). Paper scale: a 7B multimodal critic trained on GUI-Critic-Train.",
)
