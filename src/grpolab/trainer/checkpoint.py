"""Atomic checkpoints: a file is written to a temporary name, flushed to disk, then renamed into place, so a
crash (even SIGKILL) leaves either the previous checkpoint or the new one, never a torn file."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

PATTERN = re.compile(r"^step-(\d+)\.pt$")


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save(folder: Path, step: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` as ``folder/step-<step>.pt`` atomically and delete all but the ``keep`` newest."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    atomic_torch_save(state, path)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary files of an interrupted write are ignored)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest(folder: Path) -> dict[str, Any] | None:
    checkpoints = list_checkpoints(folder)
    if not checkpoints:
        return None
    return torch.load(checkpoints[-1], map_location="cpu", weights_only=False)
