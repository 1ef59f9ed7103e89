"""What the scripts that make the built-in tiny models share: the determinism set-up, the learning-rate schedule,
and saving a model folder with its report (``pretrain_tiny.py``, ``warmstart_clinical.py``, ``warmstart_tools.py``)."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch


def deterministic(seed: int) -> None:
    """One thread (the documented timings, and bit-identical re-runs), deterministic kernels, seeded RNGs."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, *, steps: int, warmup: int, lr: float) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``lr / 10``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_with_report(model: Any, tokenizer: Any, out: Path, report: dict[str, Any], name: str, start: float) -> None:
    """Save ``model`` and ``tokenizer`` to ``out`` (world-readable weights: package data) and write ``report`` (plus
    library versions, weight size and hash, total time since ``start``) as ``out/name``; prints the report."""
    import transformers

    report["torch"] = torch.__version__
    report["transformers"] = transformers.__version__
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    weights = out / "model.safetensors"
    weights.chmod(0o644)  # safetensors writes 0600; the package data should be world-readable
    report["weights_bytes"] = weights.stat().st_size
    report["total_time_s"] = round(time.time() - start, 1)
    report["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (out / name).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
