"""Presets: one named composition of core parts per paper. ``PRESETS[name]`` gives the :class:`Preset`."""

from grpolab.algorithms import dapo, dr_grpo, grpo, gspo, ppo, reinforce_pp, remax, rloo
from grpolab.algorithms.preset import Part, Preset
from grpolab.core.registry import Registry

PRESETS = Registry("preset")
for _module in (grpo, dr_grpo, dapo, gspo, rloo, remax, reinforce_pp, ppo):
    PRESETS.add(_module.PRESET.name, _module.PRESET)

__all__ = ["PRESETS", "Part", "Preset"]
