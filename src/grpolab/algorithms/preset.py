"""A preset: one paper's algorithm as a named composition of core parts.

A preset only *names* parts and their hyper-parameters; every mechanism lives in a core registry. It is
validated when it is built, so a misspelt part or an argument the part does not take fails at import time,
before any work starts.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.aggregation import AGGREGATIONS
from grpolab.core.filters import FILTERS
from grpolab.core.losses import POLICY_LOSSES, value_loss
from grpolab.core.registry import Registry
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.selection import SELECTORS
from grpolab.core.shaping import SHAPING
from grpolab.data.sampler import SAMPLERS
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES

#: Part arguments a trainer fills from the run when the part declares them:
#: ``max_len`` the generation limit (max_new_tokens); ``step`` the training steps completed before this one and
#: ``total_steps`` those of the run (schedules); ``state`` a dict private to the part for the whole run, saved in
#: checkpoints (tracked quantiles, an adapted temperature); ``advantages`` the batch advantages [B, T]
#: (regularizers that gate on them).
RUN_ARGUMENTS = frozenset({"max_len", "step", "total_steps", "state", "advantages"})
#: Keyword arguments a trainer supplies itself; a preset may not set them (``max_len`` it may: DAPO's L_max).
SUPPLIED_BY_TRAINER = frozenset({"aggregation", "num_tokens", "num_seqs", "norm_constant", "entropy"}) | (
    RUN_ARGUMENTS - {"max_len"}
)

#: Trainer settings a preset may set because the method needs them (applied unless the user overrides them).
#: Paper-scale settings (learning rate, batch size, 64 samples per prompt) are in each preset's ``notes``: they
#: belong to the paper's model size, not to the method.
TRAINER_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "num_generations": "completions sampled per prompt (G)",
        "num_iterations": "optimisation passes over each rollout batch (PPO epochs, GRPO's μ)",
        "minibatches": "optimizer steps per pass (the batch split into mini-batches)",
        "minibatch_groups": "split batches by whole prompt groups (losses that compare completions of a group)",
        "temperature": "sampling temperature of rollouts",
        "top_p": "nucleus sampling threshold of rollouts",
        "vf_coef": "weight of the value loss (needs value_loss)",
        "sampler": "prompt sampler (a SAMPLERS name): methods that choose prompts or group sizes",
        "sampler_args": "hyper-parameters of the sampler",
    }
)


def with_run_arguments(fn: Callable[..., Any], params: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` plus the run-supplied arguments (``RUN_ARGUMENTS``: ``max_len``, ``step``, ``state`` ...) that
    ``fn`` declares as keyword-only arguments; ``params`` win (a preset may fix ``max_len``)."""
    accepted = _keyword_only(fn)
    return {**{k: v for k, v in run.items() if k in RUN_ARGUMENTS and k in accepted}, **params}


@functools.cache
def _keyword_only(fn: Callable[..., Any]) -> frozenset[str]:
    """Names of ``fn``'s keyword-only parameters (cached: the trainer asks once per part call)."""
    return frozenset(p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY)


@dataclass(frozen=True)
class Part:
    """A registry entry by name plus the hyper-parameters the preset sets (the rest keep their defaults)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


@dataclass(frozen=True)
class Preset:
    """A named algorithm: which part fills each slot, with the paper's hyper-parameters.

    - ``advantage``: an ``ADVANTAGES`` entry; ``loss``: a ``POLICY_LOSSES`` entry; ``aggregation``: an
      ``AGGREGATIONS`` entry shared by the loss and the regularizers.
    - ``regularizers``, ``shaping``, ``filters``, ``selectors``: ``REGULARIZERS`` / ``SHAPING`` / ``FILTERS`` /
      ``SELECTORS`` entries, applied in order (shaping before the advantage, filters then selectors after it).
    - ``rollout``: ``ROLLOUT_STRATEGIES`` entries that change or extend the sampled batch (extra decodes,
      continuations from a prefix, off-policy completions), applied in order right after sampling.
    - ``value_loss``: arguments of ``core.losses.value_loss`` when the method trains a critic, else None.
    - ``trainer``: trainer settings the method needs (keys of ``TRAINER_SETTINGS``).
    - ``paper``, ``arxiv``: the citation; ``notes``: interpretation choices and their sources.
    """

    name: str
    paper: str
    arxiv: str
    advantage: Part
    loss: Part
    aggregation: str
    regularizers: tuple[Part, ...] = ()
    shaping: tuple[Part, ...] = ()
    filters: tuple[Part, ...] = ()
    selectors: tuple[Part, ...] = ()
    rollout: tuple[Part, ...] = ()
    value_loss: Mapping[str, Any] | None = None
    trainer: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "trainer", MappingProxyType(dict(self.trainer)))
        where = f"preset {self.name!r}"
        _check_part(ADVANTAGES, self.advantage, where, skip_leading=1)
        _check_part(POLICY_LOSSES, self.loss, where, skip_leading=3)
        if self.aggregation not in AGGREGATIONS:
            AGGREGATIONS[self.aggregation]  # raises UnknownNameError listing the known modes
        for part in self.regularizers:
            _check_part(REGULARIZERS, part, where, skip_leading=2)
        for part in self.shaping:
            _check_part(SHAPING, part, where, skip_leading=1)
        for part in self.filters:
            _check_part(FILTERS, part, where, skip_leading=1)
        for part in self.selectors:
            _check_part(SELECTORS, part, where, skip_leading=2)
        for part in self.rollout:
            _check_part(ROLLOUT_STRATEGIES, part, where, skip_leading=2)
        if self.value_loss is not None:
            _check_arguments(value_loss, dict(self.value_loss), f"{where}: value_loss", skip_leading=3)
        unknown = sorted(set(self.trainer) - set(TRAINER_SETTINGS))
        if unknown:
            raise ValueError(f"{where}: unknown trainer settings {unknown}; known: {sorted(TRAINER_SETTINGS)}")
        sampler = SAMPLERS[self.trainer.get("sampler", "uniform")]  # unknown samplers raise, listing the known ones
        _check_arguments(sampler, dict(self.trainer.get("sampler_args", {})), f"{where}: sampler", skip_leading=1)

    @property
    def slots(self) -> dict[str, str]:
        """The filled slots as display strings, in pipeline order."""
        sampler = self.trainer.get("sampler", "uniform")
        return {
            "sampler": "-" if sampler == "uniform" else str(Part(sampler, self.trainer.get("sampler_args", {}))),
            "rollout": ", ".join(map(str, self.rollout)) or "-",
            "shaping": ", ".join(map(str, self.shaping)) or "-",
            "advantage": str(self.advantage),
            "filters": ", ".join(map(str, self.filters)) or "-",
            "selectors": ", ".join(map(str, self.selectors)) or "-",
            "loss": str(self.loss),
            "aggregation": self.aggregation,
            "regularizers": ", ".join(map(str, self.regularizers)) or "-",
            "value_loss": "-" if self.value_loss is None else str(Part("clipped", self.value_loss)),
        }

    def parts(self) -> list[tuple[Registry, Part]]:
        """Every (registry, part) the preset names, in pipeline order."""
        return [
            *((ROLLOUT_STRATEGIES, p) for p in self.rollout),
            *((SHAPING, p) for p in self.shaping),
            (ADVANTAGES, self.advantage),
            *((FILTERS, p) for p in self.filters),
            *((SELECTORS, p) for p in self.selectors),
            (POLICY_LOSSES, self.loss),
            *((REGULARIZERS, p) for p in self.regularizers),
        ]

    @property
    def requires(self) -> frozenset[str]:
        """Inputs the parts read beyond the basic rollout (``ref_logp``, ``value``, ``greedy_reward`` ...)."""
        needs = frozenset().union(*(registry.requires(part.name) for registry, part in self.parts()))
        return needs | {"value"} if self.value_loss is not None else needs

    @property
    def citation(self) -> str:
        return f"{self.paper} (arXiv {self.arxiv})"


def _check_part(registry: Registry, part: Part, where: str, *, skip_leading: int) -> None:
    fn = registry[part.name]  # unknown names raise, listing the known ones
    _check_arguments(fn, dict(part.params), f"{where}: {registry.kind} {part.name!r}", skip_leading=skip_leading)


def _check_arguments(fn: Callable[..., Any], params: dict[str, Any], where: str, *, skip_leading: int) -> None:
    """Every param must be a keyword argument of ``fn``; every required one must be set or run-supplied."""
    signature = list(inspect.signature(fn).parameters.values())[skip_leading:]
    accepted = {p.name for p in signature if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    reserved = sorted(set(params) & SUPPLIED_BY_TRAINER)
    if reserved:
        raise ValueError(f"{where}: {reserved} are supplied by the trainer, not by a preset")
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"{where}: unknown arguments {unknown}; it takes {sorted(accepted - SUPPLIED_BY_TRAINER)}")
    missing = [
        p.name
        for p in signature
        if p.default is inspect.Parameter.empty and p.name not in params and p.name not in RUN_ARGUMENTS
    ]
    if missing:
        raise ValueError(f"{where}: required arguments {missing} are not set")
