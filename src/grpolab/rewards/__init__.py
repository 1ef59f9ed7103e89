"""Rewards: verifiers as TRL-convention reward functions, and strict scoring of a batch of completions."""

from grpolab.rewards.scoring import RewardError, Scores, score_completions
from grpolab.rewards.verifiers import VERIFIERS, VerifierReward, completion_text, last_number

__all__ = [
    "VERIFIERS",
    "RewardError",
    "Scores",
    "VerifierReward",
    "completion_text",
    "last_number",
    "score_completions",
]
