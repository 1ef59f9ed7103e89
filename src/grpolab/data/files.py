"""Tasks from user files: JSON lines, JSON, Parquet or a ``datasets.Dataset``, scored by a named verifier.

Importing this module registers the ``file`` task: ``TASKS["file"](train="train.jsonl", reward="numeric")``.

A row is an object with a prompt column (a string, or chat messages ``[{"role": ..., "content": ...}]``) and any
reference columns (``answer`` ...). ``load_rows`` renames the prompt column to ``prompt``, the name the Task
contract uses (``grpolab.data.task``).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grpolab.data.task import TASKS, Task
from grpolab.rewards.verifiers import RewardSpec, build_rewards

SUFFIXES = (".jsonl", ".json", ".parquet")


def load_rows(source: Any, *, prompt_column: str = "prompt") -> list[dict[str, Any]]:
    """Read rows (dicts) from a file or a ``datasets.Dataset``, with the prompt renamed to ``"prompt"``.

    Args:
        source: a path (``str`` or ``os.PathLike``) ending in ``.jsonl`` (one JSON object a line; blank lines
            skipped), ``.json`` (a list of objects) or ``.parquet`` (read with pyarrow, else pandas); or a
            ``datasets.Dataset``; or a list of dicts (taken as is).
        prompt_column: the column holding the prompts (default "prompt"), renamed to "prompt". A row that has
            both ``prompt_column`` and a different "prompt" column is an error (one would be lost).

    Each prompt must be a non-empty string or a non-empty list of ``{"role": str, "content": ...}`` dicts;
    anything else raises ``ValueError`` naming the row index. A missing prompt column raises ``ValueError``
    listing the columns present.

    >>> load_rows([{"question": "2+2?", "answer": "4"}], prompt_column="question")
    [{'answer': '4', 'prompt': '2+2?'}]
    """
    rows = _read(source)
    if not rows:
        raise ValueError(f"{_describe(source)}: no rows")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{_describe(source)}: row {i} is a {type(row).__name__}, not an object (dict)")
        if prompt_column not in row:
            raise ValueError(
                f"{_describe(source)}: row {i} has no prompt column {prompt_column!r}; its columns are "
                f"{sorted(row)}. Pass prompt_column=<the column holding the prompts>"
            )
        row = dict(row)
        if prompt_column != "prompt":
            if "prompt" in row:
                raise ValueError(
                    f"{_describe(source)}: row {i} has both {prompt_column!r} and 'prompt' columns; renaming "
                    f"{prompt_column!r} to 'prompt' would lose one. Drop or rename the 'prompt' column"
                )
            row["prompt"] = row.pop(prompt_column)
        _check_prompt(row["prompt"], i, source)
        out.append(row)
    return out


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _check_prompt(prompt: Any, i: int, source: Any) -> None:
    where = f"{_describe(source)}: row {i}"
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError(f"{where}: the prompt is an empty string")
        return
    if isinstance(prompt, list) and prompt:
        for j, message in enumerate(prompt):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str) and "content" in message):
                raise ValueError(
                    f"{where}: prompt message {j} is {message!r}; chat prompts are lists of "
                    f'{{"role": str, "content": ...}} dicts'
                )
        return
    raise ValueError(
        f"{where}: the prompt is {prompt!r} ({type(prompt).__name__}); a prompt must be a non-empty string or "
        f'a non-empty list of {{"role": ..., "content": ...}} messages'
    )


def _read(source: Any) -> list[Any]:
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source))
    if isinstance(source, list):
        return source
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None and isinstance(source, datasets.Dataset):
        return source.to_list()
    raise TypeError(
        f"cannot read rows from a {type(source).__name__}: give a path ({', '.join(SUFFIXES)}), a datasets.Dataset "
        "or a list of dicts"
    )


def _read_file(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {n} is not valid JSON: {e}") from e
        return rows
    if suffix == ".json":
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json file must hold a list of objects, got a {type(data).__name__}")
        return data
    if suffix == ".parquet":
        return _read_parquet(path)
    raise ValueError(f"{path}: unknown file type {suffix!r}; use one of {', '.join(SUFFIXES)}")


def _read_parquet(path: Path) -> list[Any]:
    try:  # pyarrow gives plain Python values (lists, dicts) for nested columns such as chat prompts
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is not None:
        return pq.read_table(path).to_pylist()
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(f"{path}: reading .parquet needs pyarrow or pandas: pip install pyarrow") from e
    return [_plain(row) for row in pd.read_parquet(path).to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (pandas' nested values) → Python lists and scalars."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy array or scalar
        return _plain(value.tolist())
    return value


def split_rows(
    rows: Sequence[dict[str, Any]], *, eval_fraction: float = 0.1, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out a seeded random ``eval_fraction`` of the rows: ``(train, eval)``, disjoint, each in file order.

    ``round(eval_fraction · n)`` rows are held out, at least 1 when ``eval_fraction > 0`` and at most n − 1 (the
    training set is never empty). The same rows, seed and fraction always give the same split.

    >>> train, held = split_rows([{"prompt": str(i)} for i in range(10)], eval_fraction=0.2, seed=0)
    >>> len(train), len(held)
    (8, 2)
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}; usually 0.05 to 0.2")
    n = len(rows)
    n_eval = 0 if eval_fraction == 0 or n < 2 else min(max(1, round(eval_fraction * n)), n - 1)
    held = set(random.Random(seed).sample(range(n), n_eval))
    train = [row for i, row in enumerate(rows) if i not in held]
    eval_rows = [row for i, row in enumerate(rows) if i in held]
    return train, eval_rows


def file_task(
    *,
    train: Any,
    eval: Any = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
    reward: RewardSpec = "exact",
    reward_weights: list[float] | None = None,
    answer_column: str = "answer",
    prompt_column: str = "prompt",
    name: str = "file",
) -> Task:
    """A Task from a training file (and optionally an eval file), scored by the verifier ``VERIFIERS[reward]``.

    Args:
        train: path of the training rows (.jsonl / .json / .parquet), or a ``datasets.Dataset``.
        eval: path of the evaluation rows; None holds out ``eval_fraction`` of ``train`` instead.
        eval_fraction: fraction of the training rows held out when ``eval`` is None (default 0.1; usually 0.05
            to 0.2; 0 for no eval set).
        seed: seed of the held-out split (default 0).
        reward: verifier name: "exact", "numeric" or "math" (see ``grpolab.rewards.verifiers``), or a list of
            them; the combined reward is their weighted sum, each logged separately, and the first is the accuracy.
            An entry may be a mapping ``{name: {options}}`` (``grpolab.rewards.verifiers.build_rewards``):
            ``{numeric: {abs_tol: 0.01}}``, reward models ``{reward_model: {path: rms/rm_0}}`` or every head of one
            ``{reward_model_heads: {path: ...}}`` (put a verifier first when the accuracy should be one).
        reward_weights: one weight per reward function (default 1 each; a ``reward_model_heads`` entry counts one per
            head).
        answer_column: the column holding the reference answers (default "answer"); every row needs it.
        prompt_column: the column holding the prompts (default "prompt").
        name: the task's name in logs (default "file").
    """
    # built before the rows are read, so a bad reward spec fails fast; an unknown name raises UnknownNameError (a
    # ValueError) listing the known ones
    reward_funcs = build_rewards(reward, answer_column=answer_column)
    train_rows = load_rows(train, prompt_column=prompt_column)
    eval_rows = load_rows(eval, prompt_column=prompt_column) if eval is not None else []
    for label, rows, source in (("train", train_rows, train), ("eval", eval_rows, eval)):
        for i, row in enumerate(rows):  # checked before the split so that indices are the file's
            if answer_column not in row:
                raise ValueError(
                    f"{label} rows ({_describe(source)}): row {i} has no answer column {answer_column!r}; its columns "
                    f"are {sorted(row)}. Pass answer_column=<the column holding the reference answers>"
                )
    if eval is None:
        train_rows, eval_rows = split_rows(train_rows, eval_fraction=eval_fraction, seed=seed)
    info = {
        "train_source": _describe(train),
        "eval_source": _describe(eval) if eval is not None else f"held out {eval_fraction} of train (seed {seed})",
        "reward": reward,
        "answer_column": answer_column,
    }
    return Task(
        name=name, train=train_rows, eval=eval_rows, reward_funcs=reward_funcs, reward_weights=reward_weights, info=info
    )


TASKS.register("file")(file_task)
