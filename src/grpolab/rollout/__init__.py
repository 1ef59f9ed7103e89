"""Rollout engines: turn prompts into completions (token ids, masks, texts)."""

from grpolab.rollout.hf import Generation, HFEngine

__all__ = ["Generation", "HFEngine"]
