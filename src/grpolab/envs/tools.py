"""Built-in tools of the tool-use environments: a safe ``Calculator`` and a ``SearchEngine`` over SQLite FTS5.

Both are plain Python objects with a text interface (``tool(text) -> str``), so an environment can hand the
model's call to them and append what they return as the observation. Neither raises on bad input from the model:
a malformed expression or query comes back as ``"error: <what is wrong>"`` text, which the model sees and can
learn from (a crashing tool would end the whole rollout).

>>> calc = Calculator()
>>> calc("2 + 3*4"), calc("7/2"), calc("1/0")
('14', '3.5', 'error: division by zero')
>>> engine = SearchEngine([{"title": "Velora", "text": "The capital of Velora is Quenth."},
...                        {"title": "Tarsh", "text": "The capital of Tarsh is Belm."}], top_k=1)
>>> engine("capital of Velora")
'Velora: The capital of Velora is Quenth.'
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpolab.core.checks import check_int, check_number

#: The corpus shipped with the package: invented facts about invented entities (``envs/corpus/facts.jsonl``).
FACTS_PATH = Path(__file__).resolve().parent / "corpus" / "facts.jsonl"


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate; the message is the observation text."""


# The operators the calculator allows; anything else in the syntax tree is refused by name.
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_REFUSED = {
    ast.BitXor: "'^' is not a power here: write 2**3",
    ast.Call: "function calls are not allowed",
    ast.Name: "names are not allowed, only numbers",
    ast.Attribute: "attributes are not allowed",
    ast.Tuple: "tuples are not allowed (write 1000, not 1,000)",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "boolean operators are not allowed",
    ast.Subscript: "indexing is not allowed",
    ast.Lambda: "lambdas are not allowed",
}


class Calculator:
    """Safe arithmetic: the expression is parsed with ``ast`` and walked node by node (never ``eval``).

    Allowed: int and float literals, ``+ - * / // % **``, unary ``+ -`` and parentheses. Everything else (names,
    calls, attributes, strings, comparisons ...) is refused with an error text. Limits keep hostile input cheap:
    at most ``max_chars`` characters, exponents of at most ``max_exponent`` in magnitude, and every intermediate
    result within ``max_abs`` (so ``9**9**9`` or a chain of huge products stops at once instead of eating the CPU).

    Args:
        max_chars: longest expression accepted (default 200; usually 50 to 500).
        max_abs: largest magnitude of any intermediate or final result (default 1e15).
        max_exponent: largest ``|b|`` in ``a ** b`` (default 64).
        decimals: decimals a non-integer result is rounded to (default 6); trailing zeros are dropped.

    Results are written without a trailing ``.0`` when integral (``6/3`` gives ``"2"``), otherwise rounded to
    ``decimals`` places (``1/3`` gives ``"0.333333"``).

    >>> Calculator()("2**10 - (3 - 5) * 4")
    '1032'
    >>> Calculator()("__import__('os')")
    'error: function calls are not allowed'
    """

    def __init__(
        self, *, max_chars: int = 200, max_abs: float = 1e15, max_exponent: int = 64, decimals: int = 6
    ) -> None:
        check_int("max_chars", max_chars, minimum=1, where="Calculator")
        check_number("max_abs", max_abs, above=0, where="Calculator")
        check_int("max_exponent", max_exponent, minimum=0, where="Calculator")
        check_int("decimals", decimals, minimum=0, where="Calculator")
        self.max_chars, self.max_abs, self.max_exponent, self.decimals = max_chars, max_abs, max_exponent, decimals

    def __call__(self, expression: str) -> str:
        """The result of ``expression`` as text, or ``"error: ..."`` (never raises on model input)."""
        try:
            return self.format(self.evaluate(expression))
        except CalculatorError as e:
            return f"error: {e}"

    def evaluate(self, expression: str) -> int | float:
        """The value of ``expression``; raises ``CalculatorError`` with a readable reason on bad input."""
        if not isinstance(expression, str):
            raise CalculatorError(f"expected text, got {type(expression).__name__}")
        text = expression.strip()
        if not text:
            raise CalculatorError("empty expression")
        if len(text) > self.max_chars:
            raise CalculatorError(f"expression longer than {self.max_chars} characters")
        try:
            tree = ast.parse(text, mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise CalculatorError(f"cannot parse {text!r}") from None
        try:
            return self._walk(tree.body)
        except RecursionError:
            raise CalculatorError("expression nested too deeply") from None

    def format(self, value: int | float) -> str:
        """``value`` as the observation writes it: integral values without ``.0``, others rounded."""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, float):
            text = f"{round(value, self.decimals):.{self.decimals}f}".rstrip("0").rstrip(".")
            return "0" if text in ("", "-0") else text
        return str(value)

    def _walk(self, node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise CalculatorError(f"only numbers are allowed, got {node.value!r}")
            return self._checked(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self._checked(_UNARY[type(node.op)](self._walk(node.operand)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._walk(node.left), self._walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > self.max_exponent:
                raise CalculatorError(f"exponent {self.format(right)} is larger than {self.max_exponent}")
            if isinstance(node.op, ast.Pow) and left == 0 and right < 0:
                raise CalculatorError("division by zero")
            try:
                value = _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
            except OverflowError:
                raise CalculatorError(f"result larger than {self.max_abs:g}") from None
            if isinstance(value, complex):  # (-8) ** 0.5
                raise CalculatorError("the result is not a real number")
            return self._checked(value)
        op = getattr(node, "op", None)
        reason = _REFUSED.get(type(op)) or _REFUSED.get(type(node))
        raise CalculatorError(reason or f"{type(op or node).__name__} is not allowed")

    def _checked(self, value: int | float) -> int | float:
        if isinstance(value, float) and not math.isfinite(value):
            raise CalculatorError("the result is not a finite number")
        if abs(value) > self.max_abs:
            raise CalculatorError(f"result larger than {self.max_abs:g}")
        return value


@dataclass(frozen=True)
class Hit:
    """One search result: the document's ``title`` and ``text`` and its bm25 ``score`` (lower is better)."""

    title: str
    text: str
    score: float


#: Words of a query: runs of letters, digits and underscores (FTS5 operators and punctuation are dropped).
_WORD = re.compile(r"\w+", re.UNICODE)


class SearchEngine:
    """Full-text search over short documents with SQLite FTS5 (stdlib ``sqlite3``), ranked by bm25.

    The documents (dicts with ``title`` and ``text``) go into an in-memory FTS5 table with the ``porter
    unicode61`` tokenizer (case-folding, diacritics removed, English stemming: ``rivers`` finds ``river``). A query
    is *sanitised* before it reaches FTS5: its words (runs of letters/digits) are each double-quoted and joined
    with ``OR``, so FTS5 syntax in the model's text (``AND``, ``NEAR``, ``"``, ``*``, ``:``, parentheses) can never
    raise a syntax error, and a query with one wrong word still finds the documents its other words match; bm25
    ranks documents that match more (and rarer) words first, like a dense retriever always returning its top k.

    Args:
        docs: the corpus: an iterable of mappings with ``title`` and ``text`` (other keys ignored).
        top_k: results returned per query (default 3, the Search-R1 / LLDS retrieval depth; usually 1 to 5).
        snippet_chars: each result's text is cut to this many characters on a word boundary, with ``...``
            (default 120; usually 40 to 200).
        title_weight: bm25 weight of the title column relative to the text (default 1.0: equal weights).
        max_query_words: words of a query kept (default 16); the rest are dropped.

    ``engine(query)`` returns the hits as text, one per line: ``"<title>: <snippet>"``; ``"no results"`` when
    nothing matches, ``"error: empty query"`` when the query has no word. ``engine.search(query)`` returns the
    ``Hit`` objects. The engine is safe to call from several threads (one connection behind a lock) and pickles
    (the database is rebuilt from the documents).
    """

    def __init__(
        self,
        docs: Iterable[Mapping[str, Any]],
        *,
        top_k: int = 3,
        snippet_chars: int = 120,
        title_weight: float = 1.0,
        max_query_words: int = 16,
    ) -> None:
        check_int("top_k", top_k, minimum=1, where="SearchEngine")
        check_int("snippet_chars", snippet_chars, minimum=4, where="SearchEngine")
        check_number("title_weight", title_weight, minimum=0, where="SearchEngine")
        check_int("max_query_words", max_query_words, minimum=1, where="SearchEngine")
        self.docs = [{"title": str(d["title"]), "text": str(d["text"])} for d in _checked_docs(docs)]
        self.top_k, self.snippet_chars = top_k, snippet_chars
        self.title_weight, self.max_query_words = title_weight, max_query_words
        self._connect()

    @classmethod
    def from_jsonl(cls, path: str | Path = FACTS_PATH, **options: Any) -> SearchEngine:
        """An engine over a JSON-lines file of documents (default: the shipped ``facts.jsonl``)."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls([json.loads(line) for line in lines if line.strip()], **options)

    def _connect(self) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, text, tokenize='porter unicode61')")
        self._db.executemany(
            "INSERT INTO docs(title, text) VALUES (?, ?)", [(d["title"], d["text"]) for d in self.docs]
        )
        self._db.commit()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_db", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._connect()

    @staticmethod
    def fts_query(query: str, *, max_words: int = 16) -> str:
        """The FTS5 MATCH expression of a free-text query: its words, each quoted, joined by OR ("" for none).

        >>> SearchEngine.fts_query('capital AND "Velora* (NEAR')
        '"capital" OR "AND" OR "Velora" OR "NEAR"'
        """
        words = _WORD.findall(query)[:max_words]
        return " OR ".join(f'"{w}"' for w in words)

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """The top ``k`` (default ``top_k``) documents for ``query``, best first (ties: corpus order)."""
        k = self.top_k if k is None else k
        match = self.fts_query(str(query), max_words=self.max_query_words)
        if not match:
            return []
        sql = "SELECT title, text, bm25(docs, ?, 1.0) AS s FROM docs WHERE docs MATCH ? ORDER BY s, rowid LIMIT ?"
        with self._lock:
            try:
                rows = self._db.execute(sql, (self.title_weight, match, k)).fetchall()
            except sqlite3.Error:  # sanitised queries should never get here; a tool must not crash the rollout
                return []
        return [Hit(title, text, score) for title, text, score in rows]

    def __call__(self, query: str) -> str:
        """The hits of ``query`` as text (``"<title>: <snippet>"`` per line), or ``"no results"`` / an error."""
        if not _WORD.search(str(query)):
            return "error: empty query"
        hits = self.search(query)
        if not hits:
            return "no results"
        return "\n".join(f"{h.title}: {snippet(h.text, self.snippet_chars)}" for h in hits)


def snippet(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters on a word boundary, ending with ``...`` when cut.

    >>> snippet("The capital of Velora is Quenth.", 20)
    'The capital of...'
    """
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 3)]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "..."


def _checked_docs(docs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out = list(docs)
    for i, d in enumerate(out):
        if not isinstance(d, Mapping) or "title" not in d or "text" not in d:
            raise ValueError(f"SearchEngine: document {i} must be a mapping with 'title' and 'text', got {d!r:.80}")
    return out


__all__ = ["FACTS_PATH", "Calculator", "CalculatorError", "Hit", "SearchEngine", "snippet"]
