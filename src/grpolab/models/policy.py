"""Load the policy a run trains: a built-in model, a randomly initialised test model, or a local folder."""

from __future__ import annotations

from typing import Any

import torch

from grpolab.models import load_pretrained, random_tiny_model

#: Names that build a model instead of loading one.
RANDOM_MODELS = ("random-tiny",)


def load_policy(name_or_path: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Any, Any]:
    """``(model, tokenizer)``: ``random-tiny`` is a fresh random 2-layer Llama (seeded; for tests and
    benchmarks), anything else goes to :func:`grpolab.models.load_pretrained`. The model is put in train mode."""
    if name_or_path in RANDOM_MODELS:
        model, tokenizer = random_tiny_model(seed=seed)
        model = model.to(dtype)
    else:
        model, tokenizer = load_pretrained(name_or_path, dtype=dtype)
    return model.train(), tokenizer
