"""Rewards: verifiers as TRL-convention reward functions, and strict scoring of a batch of completions.

Importing this package registers every module's verifiers (``VERIFIERS``): ``exact``, ``numeric``, ``math`` and
those of the other modules here (``dual``).
"""

import importlib
import pkgutil

from grpolab.rewards.scoring import RewardError, Scores, score_completions
from grpolab.rewards.verifiers import VERIFIERS, VerifierReward, completion_text, last_number

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "VERIFIERS",
    "RewardError",
    "Scores",
    "VerifierReward",
    "completion_text",
    "last_number",
    "score_completions",
]
