"""Argument checks shared by the parts: a wrong hyper-parameter raises ``ValueError`` naming the part, the
argument, what is allowed and what was given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_choice(part: str, argument: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``allowed``.

    >>> check_choice("d3s", "schedule", "cosine", ("linear", "cosine"))
    >>> check_choice("d3s", "schedule", "step", ("linear", "cosine"))
    Traceback (most recent call last):
    ...
    ValueError: d3s: schedule must be one of ['linear', 'cosine'], got 'step'
    """
    if value not in allowed:
        raise ValueError(f"{part}: {argument} must be one of {list(allowed)}, got {value!r}")
