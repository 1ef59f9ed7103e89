"""Argument checks shared by the parts: a wrong hyper-parameter raises ``ValueError`` naming the part, the
argument, what is allowed and what was given.

Conventions: ``bool`` is neither an integer nor a number here (``True`` as a group size or a weight is a mistake,
although Python's ``bool`` subclasses ``int``); NaN never passes :func:`check_number` (every comparison with it is
False, so a bound would let it through silently).
"""

from __future__ import annotations

import math
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


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python integer (``bool`` excluded).

    >>> is_int(3), is_int(3.0), is_int(True)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any, *, finite: bool = True) -> bool:
    """Whether ``value`` is a Python ``int`` or ``float`` (``bool`` excluded), and finite unless ``finite=False``
    (then ±inf and NaN pass too).

    >>> is_number(0.5), is_number(2), is_number(True), is_number("1"), is_number(math.inf)
    (True, True, False, False, False)
    >>> is_number(math.inf, finite=False), is_number(math.nan, finite=False)
    (True, True)
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return not finite or math.isfinite(value)


def _message(where: str, name: str, requirement: str, value: Any, hint: str) -> str:
    prefix = f"{where}: " if where else ""
    note = f" ({hint})" if hint else ""
    return f"{prefix}{name} must be {requirement}{note}, got {value!r}"


def check_int(name: str, value: Any, *, minimum: int | None = None, where: str = "", hint: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` is an integer (not a ``bool``) and, when given, ``>= minimum``.

    Args:
        name: the argument's name, as the caller spells it.
        value: what was given.
        minimum: the smallest allowed value (None: no bound).
        where: the part or sampler checking (the message's prefix, e.g. ``"cures sampler"``); "" for none.
        hint: added in parentheses after the requirement (the paper default, why the bound).

    >>> check_int("n_min", 4, minimum=2, where="cures sampler")
    >>> check_int("n_min", 1, minimum=2, where="cures sampler", hint="paper 4")
    Traceback (most recent call last):
    ...
    ValueError: cures sampler: n_min must be an integer >= 2 (paper 4), got 1
    >>> check_int("pool_size", True, where="vas sampler")
    Traceback (most recent call last):
    ...
    ValueError: vas sampler: pool_size must be an integer, got True
    """
    if not is_int(value) or (minimum is not None and value < minimum):
        requirement = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(_message(where, name, requirement, value, hint))


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    finite: bool = True,
    where: str = "",
    hint: str = "",
) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` or ``float`` (not a ``bool``, not NaN) within the bounds.

    Args:
        name, where, hint: as :func:`check_int`.
        minimum, maximum: inclusive bounds (None: no bound).
        above: an exclusive lower bound, ``value > above`` (None: no bound); e.g. ``above=0`` for a scale.
        finite: reject ±inf too (default True); NaN is rejected either way.

    >>> check_number("momentum", 0.0, minimum=0, maximum=1, where="vas sampler")
    >>> check_number("momentum", 1.5, minimum=0, maximum=1, where="vas sampler")
    Traceback (most recent call last):
    ...
    ValueError: vas sampler: momentum must be a finite number in [0, 1], got 1.5
    >>> check_number("scale", 0.0, above=0, where="cures sampler", hint="code 0.01")
    Traceback (most recent call last):
    ...
    ValueError: cures sampler: scale must be a finite number > 0 (code 0.01), got 0.0
    >>> check_number("tol", math.nan, finite=False)
    Traceback (most recent call last):
    ...
    ValueError: tol must be a number, got nan
    """
    ok = is_number(value, finite=finite) and not math.isnan(value)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (above is None or value > above)
    if not ok:
        if minimum is not None and maximum is not None:
            bounds = [f"in [{minimum}, {maximum}]"]
        else:
            bounds = [f">= {minimum}"] if minimum is not None else []
            bounds += [f"<= {maximum}"] if maximum is not None else []
        bounds = ([f"> {above}"] if above is not None else []) + bounds
        number = "a finite number" if finite else "a number"
        requirement = " ".join([number, " and ".join(bounds)]) if bounds else number
        raise ValueError(_message(where, name, requirement, value, hint))
