"""The trainer: ``resolve`` a config, then ``train`` (or build a ``Trainer`` to drive steps yourself)."""

from grpolab.trainer.config import TrainConfig, resolve
from grpolab.trainer.loop import NonFiniteLossError, Trainer, evaluate, train

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "evaluate", "resolve", "train"]
