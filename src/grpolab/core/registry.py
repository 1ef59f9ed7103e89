"""Named registries: the way every slot of an algorithm is filled by name.

>>> REG = Registry("advantage")
>>> @REG.register("double")
... def double(x):
...     return 2 * x
>>> REG["double"](3)
6
>>> sorted(REG)
['double']
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UnknownNameError(KeyError, ValueError):
    """Raised when a registry is asked for a name it does not hold; the message lists the known names.

    A ``KeyError`` (a registry is a mapping) and a ``ValueError`` (an unknown option value), so either catches it.
    """

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class Registry(Mapping[str, Any]):
    """A name -> part map filled with ``@REG.register("name")`` (functions) or ``REG.add(name, obj)``.

    Duplicate names raise ``ValueError``; unknown names raise ``UnknownNameError`` (a ``KeyError``) listing the
    known ones. Iterating yields names, so ``sorted(REG)`` lists them.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._requires: dict[str, frozenset[str]] = {}

    def register(self, name: str, *, requires: tuple[str, ...] = ()) -> Callable[[F], F]:
        """Decorator registering a function under ``name``; a duplicate name raises ``ValueError``.

        ``requires`` names the inputs the part reads beyond the basic rollout (``old_logp``, ``ref_logp``,
        ``value``, ``entropy``, or an ``extras`` key such as ``greedy_reward``), so a trainer can prepare exactly
        those (load a reference model, a value head, a greedy decode) without knowing the part by name.
        """
        if _source_file(self._entries.get(name)) != sys._getframe(1).f_code.co_filename:
            self._check_new(name)  # fail at the decorator line, not after the body is defined

        def decorator(fn: F) -> F:
            self.add(name, fn, requires=requires)
            return fn

        return decorator

    def add(self, name: str, obj: Any, *, requires: tuple[str, ...] = ()) -> None:
        """Register ``obj`` under ``name`` (the non-decorator form, for objects such as presets).

        The same definition imported a second time (a module loaded under two names, as pytest's doctest
        collection does) replaces the first silently; any other duplicate raises."""
        if not _same_definition(self._entries.get(name), obj):
            self._check_new(name)
        self._entries[name] = obj
        self._requires[name] = frozenset(requires)

    def requires(self, name: str) -> frozenset[str]:
        """The inputs the part ``name`` declared it reads (see :meth:`register`)."""
        self[name]  # unknown names raise, listing the known ones
        return self._requires[name]

    def _check_new(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} registry: a name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} registry: {name!r} is already registered (by {_where(self._entries[name])})")

    def __getitem__(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


def _where(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "name", None) or type(obj).__name__
    return f"{getattr(obj, '__module__', '?')}.{name}"


def _source_file(obj: Any) -> str | None:
    try:
        return inspect.getsourcefile(obj) if obj is not None else None
    except TypeError:  # builtins and plain objects have no source file
        return None


def _same_definition(old: Any, new: Any) -> bool:
    """Both are the same function or class, defined at the same place of the same file."""
    if old is None or getattr(old, "__qualname__", None) != getattr(new, "__qualname__", None):
        return False
    return _source_file(old) is not None and _source_file(old) == _source_file(new)
