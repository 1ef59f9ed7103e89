"""Scoring a batch of completions with TRL-convention reward functions, strictly.

``score_completions`` calls each reward function once on the batch, checks what it returned, combines the
results as TRL's ``GRPOTrainer`` does (weighted sum over functions, ``None`` ignored) and says which samples
must be masked. It is strict where TRL is lenient: a function that raises, returns the wrong number of values,
a non-number, NaN or inf is an error, raised by default (``RewardError``) or, with ``on_error="skip"``, confined to
the samples it failed on, which are masked and counted; nothing is silently dropped.

>>> def length(prompts, completions, **columns):
...     return [float(len(c)) for c in completions]
>>> def bonus(prompts, completions, **columns):
...     return [1.0 if c == "ok" else None for c in completions]
>>> s = score_completions([length, bonus], [1.0, 0.5], ["p", "p"], ["ok", "nope"], {})
>>> s.reward.tolist(), s.rewards.tolist(), s.valid.tolist()
([2.5, 4.0], [[2.0, 1.0], [4.0, nan]], [True, True])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
_FLOAT32_MAX = torch.finfo(torch.float32).max
_TEXT_LIMIT = 200  # characters of a prompt / completion / exception shown in an error message


#: failures of one reward function: (sample index, or None for "the batch call as a whole", exception)
_Errors = list[tuple[int | None, Exception]]


class RewardError(RuntimeError):
    """A reward function failed (raised, or returned a wrong length, a non-number, NaN or inf)."""


@dataclass
class Scores:
    """Rewards of a batch of B completions under K reward functions.

    - ``reward`` float32 [B]: Σ_k w_k · r_k over the functions that returned a number (TRL's ``nansum``); 0 where
      ``valid`` is False.
    - ``rewards`` float32 [B, K]: each function's value, NaN where it returned None or failed. ``Rollout`` needs
      finite values: use ``finite_rewards()`` there.
    - ``names``: the K function names (``__name__``), made unique with suffixes ("exact", "exact_2").
    - ``valid`` bool [B]: False for samples to mask (a function failed on it under ``on_error="skip"``, or every
      function returned None).
    - ``metrics``: ``reward/<name>`` and ``reward/<name>_std`` (mean and std of each function's numbers over valid
      samples; NaN when it has fewer than 1 / 2 of them; std with Bessel's correction as TRL logs it),
      ``reward_errors`` (samples masked because a function failed), ``reward_none`` (samples masked because every
      function returned None).
    """

    reward: torch.Tensor  # [B] float32
    rewards: torch.Tensor  # [B, K] float32
    names: list[str]
    valid: torch.Tensor  # [B] bool
    metrics: dict[str, float] = field(default_factory=dict)

    def finite_rewards(self, fill: float = 0.0) -> torch.Tensor:
        """``rewards`` with NaN (None / failed) replaced by ``fill``, float32 [B, K], as ``Rollout.rewards`` needs."""
        return torch.nan_to_num(self.rewards, nan=fill)  # [B, K]


def reward_name(fn: Callable) -> str:
    """A reward function's name for logs: ``__name__``, the wrapped function's for ``functools.partial``."""
    name = getattr(fn, "__name__", None)
    if name is None and hasattr(fn, "func"):  # functools.partial
        name = getattr(fn.func, "__name__", None)
    return name or type(fn).__name__


def unique_names(names: Sequence[str]) -> list[str]:
    """Make names unique: the first keeps its name, later equal ones get "_2", "_3" ...

    >>> unique_names(["exact", "numeric", "exact", "exact"])
    ['exact', 'numeric', 'exact_2', 'exact_3']
    """
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in out or (candidate != name and candidate in names):
            n += 1
            candidate = f"{name}_{n}"
        out.append(candidate)
    return out


def _short(obj: Any, limit: int = _TEXT_LIMIT) -> str:
    text = obj if isinstance(obj, str) else repr(obj)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text)} chars]"


class InvalidRewardValue(ValueError):
    """One returned value is not a finite number or None."""


def _check_value(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise InvalidRewardValue(f"returned {value!r}, a {type(value).__name__}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise InvalidRewardValue(f"returned {_short(value, 80)} ({type(value).__name__}), not a number or None") from e
    if not math.isfinite(number):
        raise InvalidRewardValue(f"returned {number}, which is not finite (return None for 'does not apply')")
    if abs(number) > _FLOAT32_MAX:
        raise InvalidRewardValue(f"returned {number}, which overflows float32 (rewards are float32)")
    return number


def _check_length(out: Any, n: int) -> None:
    if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
        raise ValueError(f"returned a {type(out).__name__}; a reward function must return a list of {n} values")
    if len(out) != n:
        raise ValueError(f"returned {len(out)} values for {n} completions")


def score_completions(
    reward_funcs: Sequence[Callable[..., Sequence[Any]]],
    weights: Sequence[float] | None,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: dict[str, Sequence[Any]],
    *,
    on_error: str = "raise",
) -> Scores:
    """Score B completions with K TRL-convention reward functions: ``fn(prompts=, completions=, **columns)``.

    Combination as in TRL's ``GRPOTrainer``: ``reward[b] = Σ_k w_k · rewards[b, k]`` over the functions that
    returned a number (None means "does not apply" and is left out, TRL's ``nansum``). Differences from TRL, all
    stricter: a sample for which every function returned None is invalid (TRL gives it reward 0 and trains on it);
    wrong lengths, non-numbers, NaN and inf are errors of the function.

    Args:
        reward_funcs: K callables ``fn(prompts, completions, **columns) -> list[float | None]`` (called with keywords).
        weights: K finite weights, or None for 1 each.
        prompts: B prompts (strings or chat messages), one per completion (a group's prompt repeated).
        completions: B completions (strings, or ``[{"role": "assistant", "content": ...}]`` for chat prompts).
        columns: the rows' other columns as lists of B values (``{"answer": [...]}``); a "prompt" key is dropped,
            as TRL does, since prompts are passed separately.
        on_error: "raise" (default) raises ``RewardError`` naming the function and the index, prompt and
            completion of the first failing sample, chained to the original exception. "skip" masks exactly the
            failing samples (``valid`` False, reward 0, counted in ``metrics["reward_errors"]``, logged as a warning).

    To find the failing samples of a function whose batch call raised or returned a wrong length / type, the
    function is called again once per sample (``prompts=[p_b], completions=[c_b]``, each column cut to ``[v_b]``);
    in "raise" mode only until the first failure. Per-value errors (NaN, a string) need no second call.

    Returns:
        ``Scores`` (see its docstring); ``reward`` float32 [B], ``rewards`` float32 [B, K], ``valid`` bool [B].

    Worked example: weights [1, 0.5], function values (2, 1) and (4, None) give rewards [[2, 1], [4, nan]] and
    reward [2 + 0.5·1, 4] = [2.5, 4.0] (the module docstring runs it).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    K = len(reward_funcs)
    if K == 0:
        raise ValueError("score_completions needs at least one reward function")
    if weights is None:
        weights = [1.0] * K
    if len(weights) != K:
        raise ValueError(f"{len(weights)} reward weights for {K} reward functions; give one weight per function")
    if not all(math.isfinite(float(w)) for w in weights):
        raise ValueError(f"reward weights must be finite numbers, got {list(weights)}")
    B = len(completions)
    if len(prompts) != B:
        raise ValueError(f"{len(prompts)} prompts for {B} completions; repeat each prompt once per completion")
    columns = {k: v for k, v in columns.items() if k != "prompt"}
    for key in ("prompts", "completions"):
        if key in columns:
            raise ValueError(f"column {key!r} clashes with the reward-function argument of that name; rename it")
    for key, values in columns.items():
        if len(values) != B:
            raise ValueError(f"column {key!r} has {len(values)} values for {B} completions")

    names = unique_names([reward_name(fn) for fn in reward_funcs])
    rewards = torch.full((B, K), math.nan, dtype=torch.float32)  # [B, K]
    failed = torch.zeros(B, K, dtype=torch.bool)  # [B, K]
    for k, fn in enumerate(reward_funcs):
        values, errors = _call(fn, prompts, completions, columns, stop_at_first=on_error == "raise")
        if errors:
            b, exc = errors[0]
            if on_error == "raise":
                where = (
                    f"on the whole batch of {B} (each sample alone succeeded)"
                    if b is None
                    else f"on sample {b} of {B} (prompt: {_short(prompts[b])!r}; "
                    f"completion: {_short(completions[b])!r})"
                )
                raise RewardError(
                    f"reward function {names[k]!r} failed {where}: {type(exc).__name__}: {_short(str(exc))}. "
                    f"Fix the function or its data, or score with on_error='skip' to mask the failing samples."
                ) from exc
            logger.warning(
                "reward function %r failed on %d of %d samples (masked); first: sample %d: %s: %s",
                names[k],
                len(errors),
                B,
                b,
                type(exc).__name__,
                _short(str(exc)),
            )
            for b, _ in errors:
                failed[b, k] = True
        for b, v in enumerate(values):
            if v is not None:
                rewards[b, k] = v

    w = torch.tensor([float(x) for x in weights], dtype=torch.float32)  # [K]
    has_error = failed.any(dim=1)  # [B]
    all_none = torch.isnan(rewards).all(dim=1) & ~has_error  # [B]
    valid = ~(has_error | all_none)  # [B]
    reward = torch.nansum(rewards * w, dim=1)  # [B]  TRL: None (NaN) entries are left out of the sum
    reward = torch.where(valid, reward, torch.zeros_like(reward))  # [B]  masked samples carry 0

    metrics: dict[str, float] = {}
    for k, name in enumerate(names):
        column = rewards[:, k][valid & ~torch.isnan(rewards[:, k])]  # [n]
        metrics[f"reward/{name}"] = column.mean().item() if column.numel() else math.nan
        metrics[f"reward/{name}_std"] = column.std().item() if column.numel() > 1 else math.nan  # ddof 1, as TRL
    metrics["reward_errors"] = float(has_error.sum().item())
    metrics["reward_none"] = float(all_none.sum().item())
    return Scores(reward=reward, rewards=rewards, names=names, valid=valid, metrics=metrics)


def _call(
    fn: Callable,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: dict[str, Sequence[Any]],
    *,
    stop_at_first: bool,
) -> tuple[list[float | None], _Errors]:
    """Values of one function on the batch (None where absent or failed) and its failures ``(index, exception)``.

    Index None: the batch call failed although every sample alone succeeded (only reported when stopping at the
    first failure; otherwise every index is listed).
    """
    B = len(completions)
    try:
        out = fn(prompts=list(prompts), completions=list(completions), **{k: list(v) for k, v in columns.items()})
        _check_length(out, B)
    except Exception as first:  # the batch call failed as a whole: find the failing samples one by one
        values: list[float | None] = [None] * B
        errors: _Errors = []
        for b in range(B):
            try:
                one = fn(prompts=[prompts[b]], completions=[completions[b]], **{k: [v[b]] for k, v in columns.items()})
                _check_length(one, 1)
                values[b] = _check_value(one[0])
            except Exception as e:
                errors.append((b, e))
                if stop_at_first:
                    break
        if not errors:  # every sample alone is fine: the batch call itself is at fault, on every sample
            batch_error = RuntimeError(f"the batch call failed although each sample alone succeeded: {first}")
            batch_error.__cause__ = first
            errors = [(None, batch_error)] if stop_at_first else [(b, batch_error) for b in range(B)]
        return values, errors
    return _check_values(out, stop_at_first)


def _check_values(out: Sequence[Any], stop_at_first: bool) -> tuple[list[float | None], _Errors]:
    values: list[float | None] = []
    errors: _Errors = []
    for b, value in enumerate(out):
        try:
            values.append(_check_value(value))
        except InvalidRewardValue as e:
            values.append(None)
            errors.append((b, e))
            if stop_at_first:
                break
    return values, errors
