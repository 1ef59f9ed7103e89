"""Pure tensor functions and registries: tensors and Python scalars in, ``(tensor, metrics)`` out.

Nothing in ``grpolab.core`` touches a model, tokenizer, file or config object, so every part can be used on
its own inside another trainer (TRL, verl, a notebook).
"""

import importlib
import pkgutil

from grpolab.core.registry import Registry, UnknownNameError
from grpolab.core.types import Rollout, RolloutError

# Importing the package registers every part: each module adds its entries to the registries it extends.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Registry", "Rollout", "RolloutError", "UnknownNameError"]
