"""grpolab: GRPO-family reinforcement-learning post-training of language models, as composable parts."""

__version__ = "0.1.0"
