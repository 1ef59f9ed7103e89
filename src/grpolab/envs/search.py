"""``ToolEnv``: a Search-R1-style tool environment with a search engine and a calculator, spoken with tags.

The protocol (what the model writes, what the environment answers):

- ``<search>query</search>``: the turn ends at ``</search>`` (a stop string); the environment answers
  ``<result>hits</result>``, the ``SearchEngine``'s top-k hits, one ``"<title>: <snippet>"`` per line.
- ``<calc>expression</calc>``: the turn ends at ``</calc>``; the answer is ``<result>value</result>`` (the
  ``Calculator``'s result), or ``<result>error: ...</result>``.
- ``<answer>text</answer>`` then EOS: the final answer; the episode ends (it is not a stop string: the model ends
  it with EOS, so no environment call follows).

Each turn that ends with a stop string is one tool call (``Reply.tool_call``, counted in ``extras["tool_calls"]``,
OTC's m), whether or not its content was usable: a call without its opening tag or with an empty query still cost
a round trip and is answered with an error text the model can learn from. A turn that ends with a stop string but
holds an ``<answer>...</answer>`` before its last tool tag ends the episode without a call (Search-R1 stops at
the first answer). The episode also ends after ``max_turns`` model turns (default 3: up to two tool calls and an
answer, as the LLDS Search-R1 runs) or at a turn that ends with EOS or the per-turn token limit.

The reply text is what the model reads: ``<result>...</result>`` with the content cut (``...``) so that the whole
reply is at most ``max_observation_tokens`` characters (one token per character for the built-in models; never
more tokens than characters for the usual tokenizers), so the rollout never has to cut it further and
warm-start traces can reproduce it exactly with :meth:`ToolEnv.observe`.

>>> from grpolab.envs.tools import SearchEngine
>>> env = ToolEnv(search=SearchEngine([{"title": "Velora", "text": "The capital of Velora is Quenth."}]))
>>> state = env.reset({"prompt": "Q: What is the capital of Velora?\\n"})
>>> env.step(state, {}, "<search>capital of Velora</search>")
Reply(text='<result>Velora: The capital of Velora is Quenth.</result>', done=False, tool_call=True)
>>> env.step(state, {}, "<calc>6*7</calc>").text, state["calls"]
('<result>42</result>', 2)
"""

from __future__ import annotations

from typing import Any

from grpolab.core.checks import check_int
from grpolab.envs.base import Environment, Reply
from grpolab.envs.tools import Calculator, SearchEngine

#: Tool tags: the tag name -> the attribute of ``ToolEnv`` holding the tool.
TOOLS = {"search": "search", "calc": "calculator"}


class ToolEnv(Environment):
    """Tool-use environment: ``<search>`` (a ``SearchEngine``) and ``<calc>`` (a ``Calculator``), see the module.

    Args:
        search: the search engine; None disables ``<search>`` (its stop string is then not used).
        calculator: the calculator; True (default) makes a ``Calculator()``, None or False disables ``<calc>``.
        max_turns: model turns per episode (default 3, LLDS's Search-R1 setting; usually 2 to 4).
        max_observation_tokens: the longest reply, in characters (default 128: two one-sentence hits).

    Per-episode state (``reset``): ``{"calls": number of tool calls so far, "log": [(tool, input, output)]}``.
    """

    stop = ("</search>", "</calc>")

    def __init__(
        self,
        *,
        search: SearchEngine | None = None,
        calculator: Calculator | bool | None = True,
        max_turns: int = 3,
        max_observation_tokens: int = 128,
    ) -> None:
        check_int("max_turns", max_turns, minimum=1, where="ToolEnv")
        check_int("max_observation_tokens", max_observation_tokens, minimum=32, where="ToolEnv")
        self.search = search
        self.calculator = Calculator() if calculator is True else (calculator or None)
        self.max_turns = max_turns
        self.max_observation_tokens = max_observation_tokens
        self.stop = tuple(f"</{tag}>" for tag, attr in TOOLS.items() if getattr(self, attr) is not None)

    def reset(self, row: dict[str, Any]) -> dict[str, Any]:
        """A fresh episode: no calls yet."""
        return {"calls": 0, "log": []}

    def observe(self, tag: str, content: str) -> str:
        """The reply text to a call ``<tag>content</tag>``: ``<result>...</result>``, cut to the size limit."""
        tool = getattr(self, TOOLS[tag]) if tag in TOOLS else None
        if tool is None:
            out = f"error: unknown tool {tag!r}; use " + " or ".join(f"<{t}>" for t in self._tags())
        elif not content.strip():
            out = f"error: empty {tag}"
        else:
            out = tool(content.strip())
        return self._wrap(out)

    def step(self, state: Any, row: dict[str, Any], turn: str) -> Reply:
        """Run the call the turn ends with and reply ``<result>...</result>`` (see the module docstring)."""
        tag = self._closing_tag(turn)
        if tag is None:  # the rollout only hands over turns that end with a stop string; be lenient anyway
            return Reply(text="", done=True)
        body = turn[: turn.rstrip().rfind(f"</{tag}>")]
        opening = body.rfind(f"<{tag}>")
        answer_end = body.rfind("</answer>")
        if answer_end >= 0 and "<answer>" in body[:answer_end] and (opening < 0 or answer_end < opening):
            return Reply(text="", done=True)  # an answer was given before this call: the episode is over
        if opening < 0:
            text = self._wrap(f"error: no <{tag}> before the closing tag")
            content = ""
        else:
            content = body[opening + len(tag) + 2 :]
            text = self.observe(tag, content)
        if isinstance(state, dict):
            state["calls"] = state.get("calls", 0) + 1
            state.setdefault("log", []).append((tag, content, text))
        return Reply(text=text, done=False, tool_call=True)

    # ---------------------------------------------------------------------------------------------- helpers
    def _tags(self) -> list[str]:
        return [tag for tag, attr in TOOLS.items() if getattr(self, attr) is not None]

    def _closing_tag(self, turn: str) -> str | None:
        end = turn.rstrip()
        for tag in self._tags():
            if end.endswith(f"</{tag}>"):
                return tag
        return None

    def _wrap(self, content: str) -> str:
        room = self.max_observation_tokens - len("<result></result>")
        if len(content) > room:
            content = content[: room - 3].rstrip() + "..."
        return f"<result>{content}</result>"


__all__ = ["TOOLS", "ToolEnv"]
