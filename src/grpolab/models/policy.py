"""Load the policy a run trains: a built-in model, a randomly initialised test model, or a local folder."""

from __future__ import annotations

from typing import Any

import torch

from grpolab.models import TEXT_CHARS, load_pretrained, random_tiny_model

#: Names that build a model instead of loading one: the keyword arguments of ``random_tiny_model`` for each.
#: ``random-tiny`` reads the arithmetic characters (64 positions); ``random-tiny-text`` reads ``TEXT_CHARS`` (letters
#: and punctuation, for tool-use and clinical tasks) with 512 positions.
RANDOM_MODELS: dict[str, dict[str, Any]] = {
    "random-tiny": {},
    "random-tiny-text": {"chars": TEXT_CHARS, "max_positions": 512},
}


def load_policy(name_or_path: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Any, Any]:
    """``(model, tokenizer)``: ``random-tiny`` / ``random-tiny-text`` are fresh random 2-layer Llamas (seeded; for
    tests and benchmarks), anything else goes to :func:`grpolab.models.load_pretrained`. The model is put in train
    mode."""
    if name_or_path in RANDOM_MODELS:
        model, tokenizer = random_tiny_model(seed=seed, **RANDOM_MODELS[name_or_path])
        model = model.to(dtype)
    else:
        model, tokenizer = load_pretrained(name_or_path, dtype=dtype)
    return model.train(), tokenizer
