"""Pure tensor functions and registries: tensors and Python scalars in, ``(tensor, metrics)`` out.

Nothing in ``grpolab.core`` touches a model, tokenizer, file or config object, so every part can be used on
its own inside another trainer (TRL, verl, a notebook).
"""

from grpolab.core.registry import Registry, UnknownNameError
from grpolab.core.types import Rollout, RolloutError

__all__ = ["Registry", "Rollout", "RolloutError", "UnknownNameError"]
