"""Task ``search``: Search-R1-style questions about invented facts, answered with a search engine and a calculator.

The knowledge lives in a corpus shipped with the package (``grpolab/envs/corpus/facts.jsonl``): invented facts
about invented places (``"The capital of Velora is Quenth."``), so no model can know the answers beforehand; it
has to look them up with the ``ToolEnv`` protocol (``grpolab.envs.search``)::

    Q: What's the capital of Velora?\\n                       <- prompt
    <search>capital of Velora</search>                        <- model turn (ends with the stop string)
    <result>Velora: The capital of Velora is Quenth.</result> <- environment tokens (not trained)
    <answer>Quenth</answer>                                   <- model turn, then EOS

Three kinds of question, so that tool efficiency matters (OTC, arXiv 2504.14870):

- ``lookup`` (``"Q: What's the river of Velora?"``): the fact must be searched; the fewest calls is 1.
- ``given`` (``"Q: What's the river of Velora?\\nNote: The river of Velora is Amsel."``): the fact is in the
  prompt, right before the model's turn; searching works too but is unnecessary; the fewest calls is 0.
- ``calc`` (``"Q: What's 23*7?"``): two-number arithmetic (``+ - *``), which the calculator
  (``<calc>23*7</calc>``) answers; the fewest calls is 1 for a small model that cannot multiply by heart.

Rows: ``prompt``, ``answer``, ``kind``, ``min_calls`` (the fewest tool calls that answer it, see above) and
``query`` (the gold tool input: ``"river of Velora"`` or ``"23*7"``; ``scripts/warmstart_tools.py`` writes its
traces from it). The split is by fact: each entity has one of its five facts held out, and the eval rows ask
only about held-out facts (lookups, and given-in-prompt questions) plus held-out calc problems; the train rows
and the ``tiny-tools`` warm-start traces never contain a held-out fact's answer. Eval rows are interleaved
(seeded shuffle), so the first ``--eval-prompts`` rows mix the three kinds.

Rewards (TRL plain-callable convention; only ``search_em`` has weight 1, so the reward is Search-R1's exact match):

- ``search_em``: 1.0 when the last ``<answer>...</answer>`` of the transcript, normalised (``normalize_answer``:
  lower case, surrounding whitespace and a final period dropped, inner whitespace collapsed, a leading article
  dropped), equals the normalised reference; else 0.0. The task's accuracy, and the r_φ the OTC shaping reads.
- ``search_format`` (weight 0, a metric): 1.0 for a well-formed transcript (tool calls each followed by a
  ``<result>``, then one ``<answer>...</answer>`` and nothing after it), else 0.0.
- ``tool_calls`` (weight 0, a metric): the number of tool calls the transcript holds (``</search>`` and
  ``</calc>`` closings outside the replies): ``reward/tool_calls`` and ``eval/reward/tool_calls`` are the mean
  calls per answer, on the training batch and the held-out rows. It equals the rollout's ``extras["tool_calls"]``
  except for a turn that ends with an answer and then a tool tag (the env ends the episode without a call).
- ``calls_lookup``, ``calls_given``, ``calls_calc`` (weight 0, metrics): ``tool_calls`` of the rows of one kind
  (None for the others, so ``eval/reward/calls_given`` is the mean number of calls on given questions: all of them
  unnecessary).

``task.info``: ``max_new_tokens`` 48 (per model turn: the longest gold turn is 40 characters), ``max_turns``,
``model`` (``"tiny-tools"``, the built-in model warm-started on this task), ``held_out_from_tiny_tools``.

>>> task = search_task()
>>> len(task.train), len(task.eval), task.env.max_turns
(768, 128, 3)
>>> search_em(["Q"] * 3, ["<search>x</search><result>y</result><answer>Quenth</answer>", "<answer>quenth.</answer>",
...                        "Quenth"], answer=["Quenth"] * 3)
[1.0, 1.0, 0.0]
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from grpolab.data.task import TASKS, Task
from grpolab.envs.search import ToolEnv
from grpolab.envs.tools import FACTS_PATH, Calculator, SearchEngine

#: The five relations of the corpus, each fact written ``"The <attribute> of <entity> is <value>."``.
ATTRIBUTES = ("capital", "river", "founder", "language", "mountain")
#: Entities of the shipped corpus (5 facts each: 320 documents) and its generation seed.
DEFAULT_ENTITIES, DEFAULT_SEED = 64, 0
#: Calc problems held out for evaluation (of all ``a op b`` with the operand ranges of ``calc_problems``).
N_EVAL_CALC = 32
#: Rows of each kind in the train split: every train fact as a lookup and as a given question, and this many calc.
N_TRAIN_CALC = 256
#: The per-turn token limit the task suggests (the longest gold turn, ``<search>the mountain of Xxxxxxx</search>``,
#: is at most 40 characters; ``<answer>...</answer>`` at most 27; one character is one token of ``tiny-tools``).
MAX_NEW_TOKENS = 48

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "sh", "qu", "br", "dr", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m")


def _name(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)).title()


def generate_facts(*, entities: int = DEFAULT_ENTITIES, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """The invented corpus: ``entities`` invented places with one invented value per attribute, as documents.

    Names are random syllables (seeded), all distinct: places of 4 to 7 letters, values of 3 to 6 (short
    names: the tiny model copies answers character by character); every value is used once, so an answer
    can only come from its own document. Each document: ``id``, ``title`` (the entity), ``text``
    (``"The capital of Velora is Quenth."``), ``entity``, ``attribute``, ``value``, and ``held_out`` (True for the
    one fact per entity that only the eval split asks about). ``scripts/warmstart_tools.py --write-corpus``
    writes the shipped ``facts.jsonl`` with the defaults.

    >>> facts = generate_facts(entities=2)
    >>> len(facts), sum(f["held_out"] for f in facts)
    (10, 2)
    >>> facts[0]["text"] == f"The capital of {facts[0]['title']} is {facts[0]['value']}."
    True
    """
    rng = random.Random(seed)
    used: set[str] = set()

    def fresh(syllables: tuple[int, ...], shortest: int, longest: int) -> str:
        while True:
            name = _name(rng, rng.choice(syllables))
            if shortest <= len(name) <= longest and name.lower() not in used:
                used.add(name.lower())
                return name

    docs = []
    for _ in range(entities):
        entity = fresh((2,), 4, 7)
        held = rng.randrange(len(ATTRIBUTES))
        for j, attribute in enumerate(ATTRIBUTES):
            value = fresh((1, 2), 3, 6)
            docs.append(
                {
                    "id": len(docs),
                    "title": entity,
                    "text": f"The {attribute} of {entity} is {value}.",
                    "entity": entity,
                    "attribute": attribute,
                    "value": value,
                    "held_out": j == held,
                }
            )
    return docs


def load_facts(path: str | Path = FACTS_PATH) -> list[dict[str, Any]]:
    """The documents of a facts file (default: the shipped corpus), one JSON object a line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def question(attribute: str, entity: str) -> str:
    """``"What's the <attribute> of <entity>?"`` (no ``" is "``: in a transcript the only ``is`` precedes the answer,
    in the note or the search result)."""
    return f"What's the {attribute} of {entity}?"


def calc_problems(split: str, *, seed: int = DEFAULT_SEED) -> list[tuple[int, str, int]]:
    """Calc problems ``(a, op, b)`` of one split: ``a`` in 10..99 and ``b`` in 10..99 for ``+``/``-``, ``b`` in
    2..9 for ``*``; enumerated, shuffled with ``seed``, the first ``N_EVAL_CALC`` are the eval split and the next
    ``N_TRAIN_CALC`` the train split."""
    problems = [(a, op, b) for op in "+-" for a in range(10, 100) for b in range(10, 100)]
    problems += [(a, "*", b) for a in range(10, 100) for b in range(2, 10)]
    random.Random(seed).shuffle(problems)
    if split == "eval":
        return problems[:N_EVAL_CALC]
    if split == "train":
        return problems[N_EVAL_CALC : N_EVAL_CALC + N_TRAIN_CALC]
    raise ValueError(f"unknown split {split!r}; use 'train' or 'eval'")


def search_rows(split: str, *, facts: list[dict[str, Any]] | None = None, seed: int = DEFAULT_SEED) -> list[dict]:
    """The rows of one split (``"train"`` or ``"eval"``), shuffled with ``seed`` (see the module docstring).

    - train: every non-held-out fact as a ``lookup`` and as a ``given`` question, plus ``N_TRAIN_CALC`` calc rows.
    - eval: every held-out fact as a ``lookup``, half of them (every other one) also as ``given``, and
      ``N_EVAL_CALC`` held-out calc rows.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'eval'")
    facts = load_facts() if facts is None else facts
    chosen = [f for f in facts if bool(f["held_out"]) == (split == "eval")]
    rows: list[dict[str, Any]] = []
    for i, f in enumerate(chosen):
        q, query = question(f["attribute"], f["entity"]), f"{f['attribute']} of {f['entity']}"
        rows.append({"prompt": f"Q: {q}\n", "answer": f["value"], "kind": "lookup", "min_calls": 1, "query": query})
        if split == "train" or i % 2 == 0:
            rows.append(
                {"prompt": f"Q: {q}\nNote: {f['text']}\n", "answer": f["value"], "kind": "given", "min_calls": 0}
                | {"query": query}
            )
    for a, op, b in calc_problems(split, seed=seed):
        expr = f"{a}{op}{b}"
        answer = Calculator()(expr)
        rows.append({"prompt": f"Q: What's {expr}?\n", "answer": answer, "kind": "calc", "min_calls": 1, "query": expr})
    random.Random(f"{seed}-{split}").shuffle(rows)
    return rows


# ------------------------------------------------------------------------------------------------------ rewards
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_WELL_FORMED = re.compile(
    r"\s*(?:<(search|calc)>[^<]*</\1>\s*<result>.*?</result>\s*)*<answer>[^<]*</answer>\s*", re.DOTALL
)
_ARTICLE = re.compile(r"^(a|an|the)\s+")


def normalize_answer(text: str) -> str:
    """Lower case, surrounding whitespace and a final period dropped, inner whitespace collapsed, a leading
    article dropped (Search-R1's exact match normalises likewise; punctuation inside is kept so ``-5`` != ``5``).

    >>> normalize_answer("  The  Amsel. "), normalize_answer("-5")
    ('amsel', '-5')
    """
    text = " ".join(text.lower().split()).rstrip(".").strip()
    return _ARTICLE.sub("", text)


def extract_answer(text: str) -> str | None:
    """The content of the last ``<answer>...</answer>`` of ``text``, or None.

    >>> extract_answer("<answer>a</answer> <answer>b</answer>"), extract_answer("b")
    ('b', None)
    """
    found = _ANSWER.findall(text)
    return found[-1] if found else None


def _text(completion: Any) -> str:
    from grpolab.rewards.verifiers import completion_text

    return completion_text(completion)


def search_em(prompts: list, completions: list, answer: list, **_: Any) -> list[float]:
    """1.0 when the transcript's last ``<answer>`` matches ``answer`` after ``normalize_answer``, else 0.0."""
    out = []
    for completion, ref in zip(completions, answer, strict=True):
        got = extract_answer(_text(completion))
        out.append(float(got is not None and normalize_answer(got) == normalize_answer(str(ref))))
    return out


def search_format(prompts: list, completions: list, **_: Any) -> list[float]:
    """1.0 for ``(<search|calc>...</..><result>...</result>)* <answer>...</answer>`` and nothing else, else 0.0."""
    return [float(_WELL_FORMED.fullmatch(_text(c)) is not None) for c in completions]


_RESULT = re.compile(r"<result>.*?</result>", re.DOTALL)


def tool_calls(prompts: list, completions: list, **_: Any) -> list[float]:
    """Number of tool calls in the transcript: its ``</search>`` and ``</calc>`` closings outside ``<result>``
    replies (a weight-0 metric)."""
    texts = [_RESULT.sub("", _text(c)) for c in completions]
    return [float(sum(t.count(stop) for stop in ToolEnv.stop)) for t in texts]


def _calls_of_kind(kind: str, completions: list, kinds: list) -> list[float | None]:
    counts = tool_calls([], completions)
    return [c if k == kind else None for c, k in zip(counts, kinds, strict=True)]


def calls_lookup(prompts: list, completions: list, kind: list, **_: Any) -> list[float | None]:
    """Tool calls of ``lookup`` rows, None for the other kinds (a weight-0 metric: the mean over lookups)."""
    return _calls_of_kind("lookup", completions, kind)


def calls_given(prompts: list, completions: list, kind: list, **_: Any) -> list[float | None]:
    """Tool calls of ``given`` rows (all unnecessary), None for the other kinds (a weight-0 metric)."""
    return _calls_of_kind("given", completions, kind)


def calls_calc(prompts: list, completions: list, kind: list, **_: Any) -> list[float | None]:
    """Tool calls of ``calc`` rows, None for the other kinds (a weight-0 metric)."""
    return _calls_of_kind("calc", completions, kind)


@TASKS.register("search")
def search_task(
    *,
    top_k: int = 1,
    max_turns: int = 3,
    corpus: str | None = None,
    seed: int = DEFAULT_SEED,
) -> Task:
    """The ``search`` task (see the module docstring).

    - ``top_k``: search results per query (default 1; Search-R1 retrieves 3 passages of a Wikipedia dump; here a
      one-sentence fact per hit, and one hit keeps the tiny model's transcripts short; usually 1 to 3).
    - ``max_turns``: model turns per episode (default 3, the LLDS Search-R1 runs' 3 turns: up to two tool calls
      and an answer; usually 2 to 4).
    - ``corpus``: a facts file (JSON lines with the ``generate_facts`` columns); default the shipped corpus.
    - ``seed``: the split's shuffle (default 0, the split ``tiny-tools`` was warm-started on).
    """
    facts = load_facts(corpus or FACTS_PATH)
    env = ToolEnv(search=SearchEngine(facts, top_k=top_k), calculator=Calculator(), max_turns=max_turns)
    held_out = corpus is None and seed == DEFAULT_SEED
    return Task(
        "search",
        search_rows("train", facts=facts, seed=seed),
        search_rows("eval", facts=facts, seed=seed),
        [search_em, search_format, tool_calls, calls_lookup, calls_given, calls_calc],
        reward_weights=[1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        accuracy=search_em,
        info={
            "max_new_tokens": MAX_NEW_TOKENS,
            "max_turns": max_turns,
            "model": "tiny-tools",
            "held_out_from_tiny_tools": held_out,
        },
        env=env,
    )


__all__ = [
    "ATTRIBUTES",
    "MAX_NEW_TOKENS",
    "calc_problems",
    "calls_calc",
    "calls_given",
    "calls_lookup",
    "extract_answer",
    "generate_facts",
    "load_facts",
    "normalize_answer",
    "search_em",
    "search_format",
    "search_rows",
    "search_task",
    "tool_calls",
]
