"""The environment protocol of multi-turn rollouts (tool use, simulated consultations).

An episode is one completion. The policy writes a *turn*: tokens sampled until EOS, one of the environment's
``stop`` strings, or the per-turn token limit. A turn that ends with a stop string is handed to
``Environment.step``, which answers with a ``Reply``: the text of an observation (a tool's output, a patient's
answer) that is appended to the completion as *environment tokens*, then the policy writes its next turn. The
episode ends when a turn ends with EOS or hits the token limit, when the reply says ``done``, or after
``max_turns`` model turns. The whole transcript (model turns and observations, in order) is the completion the
rewards score; the environment tokens are kept out of the loss (they were not sampled from the policy) and
the rollout records per completion the number of tool calls (``extras["tool_calls"]``) and model turns
(``extras["turns"]``).

An environment is plain Python: strings in, strings out. Per-episode state lives in the object ``reset``
returns (the environment itself must stay stateless across episodes, since many run at once).

>>> class Echo(Environment):
...     stop = ("</call>",)
...     def step(self, state, row, turn):
...         return Reply(text=" ok ", tool_call=True)
>>> env = Echo()
>>> env.step(env.reset({"prompt": "x"}), {"prompt": "x"}, "<call>1+1</call>")
Reply(text=' ok ', done=False, tool_call=True)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    """The environment's answer to one model turn.

    - ``text``: the observation appended after the turn (may be empty); it is tokenized without special tokens
      and masked out of the loss.
    - ``done``: True ends the episode after this turn (``text`` is then still appended when non-empty).
    - ``tool_call``: True counts this turn as a tool call (``extras["tool_calls"]``, OTC's m).
    """

    text: str
    done: bool = False
    tool_call: bool = False


class Environment(ABC):
    """Base class of multi-turn environments. Subclasses set ``stop`` and implement ``step`` (abstract).

    - ``stop``: strings that end a model turn and hand it to ``step`` (for example ``"</search>"``). A turn that ends
      otherwise (EOS, the token limit) ends the episode.
    - ``max_turns``: the most model turns per episode (default 4; usually 2 to 8): after that many the episode
      ends whatever the last turn was.
    - ``max_observation_tokens``: observations longer than this many tokens are cut (default 64), so a chatty
      tool cannot overflow the model's context.
    """

    stop: tuple[str, ...] = ()
    max_turns: int = 4
    max_observation_tokens: int = 64

    def reset(self, row: dict[str, Any]) -> Any:
        """The state of a new episode on task row ``row`` (default None: a stateless environment)."""
        return None

    @abstractmethod
    def step(self, state: Any, row: dict[str, Any], turn: str) -> Reply:
        """Answer the model's latest ``turn`` (its text, ending with one of ``stop``) of the episode on ``row``;
        ``state`` is what ``reset`` returned for this episode and may be updated in place."""
