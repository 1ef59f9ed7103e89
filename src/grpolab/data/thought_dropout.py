"""TON's thought dropout: the SFT-stage transform that teaches a model that skipping the thought is a valid format.

"Think or Not? Selective Reasoning via Reinforcement Learning for Vision-Language Models" (TON, arXiv 2505.16854,
Sec. 3): during supervised fine-tuning each sample's gold thought ``T`` is replaced, with probability ``p``, by an
empty thought (``<think>\\n\\n</think>`` in the paper; ``""`` inside the brackets of ``arith_think``). The answer is
never touched. The SFT stage is a cold start of the think-or-not format; the GRPO stage that follows lets the
model choose.

Rows are plain dicts (the task contract of ``grpolab.data.task``), so this is a pure function over rows: no
tokenizer, no model. ``grpolab sft --thought-dropout p`` applies it to every training batch with a fresh seed per
step, so one problem is seen with and without its thought over the run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


def thought_dropout(
    rows: Sequence[dict[str, Any]],
    p: float = 0.5,
    seed: int = 0,
    *,
    column: str = "thought",
    empty: str = "",
) -> list[dict[str, Any]]:
    """New rows whose ``column`` is replaced by ``empty`` with probability ``p``, independently per row.

    TON (arXiv 2505.16854, Sec. 3, "thought dropout"). One draw ``u ~ U[0, 1)`` per row, in order, from
    ``random.Random(seed)``; the row is emptied when ``u < p`` (so ``p = 0`` never and ``p = 1`` always empties).
    Every other column (the answer included) is copied unchanged; the input rows are not modified. A row whose
    gold thought is already empty stays empty.

    - ``p``: dropout probability; paper default 0.5 ("e.g. 50%"), usually 0.3 to 0.7 (0 = plain SFT).
    - ``seed``: seed of the draws; the same rows, ``p`` and ``seed`` give the same result.
    - ``column``: the thought column; default ``"thought"`` (task ``arith_think``).
    - ``empty``: the empty thought; default ``""`` (the paper's ``"\\n\\n"`` between its think tags).

    Raises ValueError for ``p`` outside [0, 1] or a row without ``column``.

    >>> rows = [{"prompt": "1+2=", "thought": "1+2=3,0+0=0", "answer": "3"}] * 4
    >>> [r["thought"] for r in thought_dropout(rows, p=0.5, seed=0)]
    ['1+2=3,0+0=0', '1+2=3,0+0=0', '', '']
    >>> {r["answer"] for r in thought_dropout(rows, p=1.0)}
    {'3'}
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"thought dropout p must be a probability in [0, 1], got {p!r} (TON uses 0.5)")
    rng = random.Random(seed)
    out = []
    for i, row in enumerate(rows):
        if column not in row:
            raise ValueError(
                f"thought dropout: row {i} has no {column!r} column (columns: {sorted(row)}); "
                "use a task with gold thoughts (arith_think) or name the thought column"
            )
        drop = rng.random() < p  # one draw per row, whatever the row holds, so the stream is position-aligned
        out.append({**row, column: empty} if drop else dict(row))
    return out


__all__ = ["thought_dropout"]
