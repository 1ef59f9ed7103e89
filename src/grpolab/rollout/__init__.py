"""Rollout engines (prompts to completions) and rollout strategies (what a method samples beyond that).

Importing the package registers every strategy module in it (``ROLLOUT_STRATEGIES``).
"""

import importlib
import pkgutil

from grpolab.rollout.hf import Generation, HFEngine

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Generation", "HFEngine"]
