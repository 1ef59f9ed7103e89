"""Presets: one named composition of core parts per paper. ``PRESETS[name]`` gives the :class:`Preset`.

Every module of this package that defines ``PRESET`` is registered (modules are imported in name order).
"""

import importlib
import pkgutil

from grpolab.algorithms.preset import Part, Preset
from grpolab.core.registry import Registry

PRESETS = Registry("preset")
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    if hasattr(_module, "PRESET"):
        PRESETS.add(_module.PRESET.name, _module.PRESET)

__all__ = ["PRESETS", "Part", "Preset"]
