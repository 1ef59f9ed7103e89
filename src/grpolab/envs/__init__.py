"""Multi-turn environments: the model writes a turn, the environment answers, until an answer or a turn limit.

``base`` holds the protocol (``Environment``, ``Reply``); ``grpolab.rollout.multiturn`` runs episodes of any
environment with the policy. Environments are plain Python (strings in, strings out): no model, no tensors.
"""

from grpolab.envs.base import Environment, Reply

__all__ = ["Environment", "Reply"]
