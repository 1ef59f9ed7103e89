"""KV-cache helpers shared by the rollout engine and the trainer's log-prob module."""

from __future__ import annotations

import inspect
from typing import Any


def cache_argument(model: Any) -> str:
    """The keyword under which the model's forward takes a KV cache (transformers 5.x renamed
    ``past_key_values`` to ``cache``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps the model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"
