"""Verifiers: rule-based reward functions in TRL's plain-callable convention (see ``grpolab.data.task``).

``VERIFIERS`` holds FACTORIES: ``VERIFIERS[name](*, answer_column="answer", **options)`` returns a reward
function ``fn(prompts, completions, **columns) -> list[float | None]`` that reads the reference answers from
``columns[answer_column]``. The returned function is a picklable object (so it can be sent to a process pool)
whose ``__name__`` is the verifier's name (``"numeric"``), or ``"numeric_<column>"`` when it reads another
column; trainers use that name in their logs (``reward/numeric``).

- ``exact``: 1.0 when the completion equals the reference (after stripping whitespace), else 0.0.
- ``numeric``: the last number in the completion equals the reference number within a tolerance
  (GSM8K's "#### 72" references work).
- ``math``: math-verify's symbolic comparison (``\\boxed{1/2}`` equals ``0.5``); needs ``pip install grpolab[data]``.

Completions may be strings or chat messages; ``completion_text`` turns either into the text that is scored.

``build_rewards(spec)`` turns a task's ``reward`` option (names and ``{name: {options}}`` mappings) into reward
functions; the ``arith`` and ``file`` tasks use it. Factories may also return a list of functions (the reward-model
heads of ``grpolab.rewards.reward_model``, ``VERIFIERS["reward_model_heads"]``), which it splices in.

>>> fn = VERIFIERS["numeric"]()
>>> fn(prompts=["2+2?", "3*4?"], completions=["It is 4.", [{"role": "assistant", "content": "12!"}]], answer=[4, "13"])
[1.0, 0.0]
>>> fn.__name__
'numeric'
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from grpolab.core.checks import is_number
from grpolab.core.registry import Registry

#: Verifier factories by name: ``VERIFIERS[name](*, answer_column="answer", **options) -> reward function``.
VERIFIERS = Registry("verifier")


def completion_text(completion: Any) -> str:
    """The text of one completion: the string itself, or the content of the last assistant message.

    TRL passes a string per completion for string prompts and ``[{"role": "assistant", "content": text}]`` for
    chat prompts. A single message dict is accepted too. Content given as a list of parts
    (``[{"type": "text", "text": ...}]``) is joined.

    >>> completion_text("  42 ")
    '  42 '
    >>> completion_text([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "42"}])
    '42'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion)
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, dict) and m.get("role") == "assistant"]
        if not messages:
            roles = [m.get("role") if isinstance(m, dict) else type(m).__name__ for m in completion]
            raise ValueError(f"completion has no assistant message (roles: {roles}); expected a string or chat")
        return _content_text(messages[-1])
    raise TypeError(f"a completion must be a string or chat messages, got {type(completion).__name__}")


def _content_text(message: dict) -> str:
    if "content" not in message:
        raise ValueError(f"chat message without 'content': keys {sorted(message)}")
    content = message["content"]
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    raise TypeError(f"message content must be a string or a list of parts, got {type(content).__name__}")


class VerifierReward:
    """A reward function in TRL's convention built from a per-sample ``score(text, reference, **options)``.

    Callable as ``fn(prompts, completions, **columns) -> list[float | None]``; extra columns (and TRL's extra
    keywords such as ``completion_ids`` or ``trainer_state``) are ignored. A top-level class rather than a
    closure so that it pickles (process pools).
    """

    def __init__(self, name: str, score: Callable[..., float | None], answer_column: str, options: dict) -> None:
        self.__name__ = name if answer_column == "answer" else f"{name}_{answer_column}"
        self.__qualname__ = self.__name__
        self.answer_column = answer_column
        self.options = options
        self._score = score

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        if self.answer_column not in columns:
            raise ValueError(
                f"reward {self.__name__!r} reads the reference from column {self.answer_column!r}, which is not "
                f"among the columns {sorted(columns)}; pass answer_column=<the column holding the answers>"
            )
        references = columns[self.answer_column]
        if len(references) != len(completions):
            raise ValueError(
                f"reward {self.__name__!r}: {len(completions)} completions but {len(references)} references"
            )
        pairs = zip(completions, references, strict=True)
        return [self._score(completion_text(c), ref, **self.options) for c, ref in pairs]

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"VerifierReward({self.__name__!r}, answer_column={self.answer_column!r}{options})"


def strip_gsm8k(reference: str) -> str:
    """GSM8K's answer field ends with "#### <final answer>": keep what follows the last "####" (a reference without
    "####" is returned as it is).

    >>> strip_gsm8k("48 / 2 = 24 clips ... #### 72"), strip_gsm8k("72")
    (' 72', '72')
    """
    return reference.rsplit("####", 1)[1] if "####" in reference else reference


# ---------------------------------------------------------------- exact


def _score_exact(text: str, reference: Any, *, strip: bool) -> float:
    reference = str(reference)
    if strip:
        text, reference = text.strip(), reference.strip()
    return 1.0 if text == reference else 0.0


@VERIFIERS.register("exact")
def exact(*, answer_column: str = "answer", strip: bool = True) -> VerifierReward:
    """1.0 when the completion equals the reference, else 0.0 (references that are not strings are ``str()``-ed).

    Args:
        answer_column: the column holding the reference answers (default "answer").
        strip: compare after stripping leading/trailing whitespace from both sides (default True).

    >>> exact()(prompts=["q"], completions=[" Paris\\n"], answer=["Paris"])
    [1.0]
    """
    return VerifierReward("exact", _score_exact, answer_column, {"strip": bool(strip)})


# ---------------------------------------------------------------- numeric

# A number: optional sign (only when not glued to a preceding word, digit or ")" so "3-5" is 3 and 5),
# digits with optional thousands separators (1,234,567) or plain digits, optional decimals; or ".5".
_NUMBER = r"(?:(?<![\w).])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?:(?<![\w).])-)?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
# A simple fraction a/b of two such numbers (spaces allowed around the slash).
_FRACTION_RE = re.compile(rf"(?P<num>{_NUMBER})\s*/\s*(?P<den>{_NUMBER})|(?P<single>{_NUMBER})")


def _to_float(token: str) -> float:
    return float(token.replace(",", ""))


def last_number(text: str, *, fractions: bool = True) -> float | None:
    """The last number in ``text`` as a float, or None when there is none.

    Understands negatives, decimals, thousands separators (``1,234`` → 1234) and, with ``fractions``, a simple
    fraction ``a/b`` (→ a / b; a zero denominator gives NaN, which equals nothing). Scientific notation
    (``1e3``) is not read as one number.

    >>> last_number("Costs $1,234.50, not -3.")
    -3.0
    >>> last_number("half is 1/2"), last_number("x = .5"), last_number("none")
    (0.5, 0.5, None)
    """
    if fractions:
        matches = list(_FRACTION_RE.finditer(text))
        if not matches:
            return None
        m = matches[-1]
        if m.group("single") is not None:
            return _to_float(m.group("single"))
        den = _to_float(m.group("den"))
        return _to_float(m.group("num")) / den if den != 0 else math.nan
    tokens = _NUMBER_RE.findall(text)
    return _to_float(tokens[-1]) if tokens else None


def reference_number(reference: Any, *, fractions: bool = True, where: str = "numeric verifier") -> float:
    """The number a reference answer holds: a number as it is, else the last number (``last_number``) of its text
    after GSM8K's "####" cut (``strip_gsm8k``). A reference with no number (or a zero-denominator fraction) raises
    ``ValueError`` (a data error), prefixed with ``where`` (the verifier reading it).

    >>> reference_number(3), reference_number("so #### 1,000"), reference_number("1/4")
    (3.0, 1000.0, 0.25)
    """
    if is_number(reference, finite=False):
        return float(reference)
    value = last_number(strip_gsm8k(str(reference)), fractions=fractions)
    if value is None or math.isnan(value):
        raise ValueError(f"{where}: the reference {reference!r} holds no number")
    return value


def _score_numeric(text: str, reference: Any, *, rel_tol: float, abs_tol: float, fractions: bool) -> float:
    target = reference_number(reference, fractions=fractions)
    value = last_number(text, fractions=fractions)
    if value is None:
        return 0.0
    return 1.0 if math.isclose(value, target, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0


@VERIFIERS.register("numeric")
def numeric(
    *, answer_column: str = "answer", rel_tol: float = 1e-6, abs_tol: float = 1e-9, fractions: bool = True
) -> VerifierReward:
    """1.0 when the LAST number in the completion equals the reference number, else 0.0 (also 0.0 with no number).

    The usual GSM8K-style verifier (the final number counts, earlier working does not). The reference may be a
    number or a string; a string reference is read with the same parser after dropping everything up to the last
    "####" (GSM8K's answer field "... #### 72" → 72). A reference with no number raises ``ValueError`` (a data
    error, reported by ``score_completions``).

    Args:
        answer_column: the column holding the reference answers (default "answer").
        rel_tol: relative tolerance of ``math.isclose`` (default 1e-6; usually 1e-9 to 1e-4).
        abs_tol: absolute tolerance of ``math.isclose`` (default 1e-9; raise it, e.g. to 0.01, for rounded money).
        fractions: read ``a/b`` as a fraction (default True); otherwise "1/2" reads as its last number, 2.

    >>> numeric()(prompts=["q", "q"], completions=["so 3/4", "#### 1,000"], answer=["#### 0.75", "1000"])
    [1.0, 1.0]
    """
    if not (rel_tol >= 0 and abs_tol >= 0):
        raise ValueError(f"numeric verifier: tolerances must be >= 0, got rel_tol={rel_tol}, abs_tol={abs_tol}")
    options = {"rel_tol": float(rel_tol), "abs_tol": float(abs_tol), "fractions": bool(fractions)}
    return VerifierReward("numeric", _score_numeric, answer_column, options)


# ---------------------------------------------------------------- math


def _math_verify():
    try:
        import math_verify
    except ImportError as e:  # an optional extra
        raise ImportError(
            "the 'math' verifier needs math-verify: pip install 'grpolab[data]' (or pip install math-verify)"
        ) from e
    return math_verify


def _score_math(text: str, reference: Any, *, timeout_seconds: int | None) -> float | None:
    mv = _math_verify()
    # math-verify bounds its time with signal.alarm, which only works in the main thread (it raises ValueError in
    # any other). Outside the main thread, switch its timeouts off (its documented way): the call is then unbounded,
    # so callers that score in threads must bound the time themselves (or score in the main thread / a process pool).
    timeout = timeout_seconds if threading.current_thread() is threading.main_thread() else None
    gold = mv.parse(strip_gsm8k(str(reference)), parsing_timeout=timeout)
    if not gold:  # an unparsable reference: the verifier does not apply (TRL's accuracy_reward does the same)
        return None
    answer = mv.parse(text, parsing_timeout=timeout)
    return 1.0 if mv.verify(gold, answer, timeout_seconds=timeout) else 0.0


@VERIFIERS.register("math")
def math_equal(*, answer_column: str = "answer", timeout_seconds: int | None = 5) -> VerifierReward:
    """1.0 when math-verify finds the completion's answer equal to the reference, else 0.0 (``verify(parse(gold),
    parse(answer))``, Hugging Face's Math-Verify; ``\\boxed{1/2}`` equals ``0.5``, ``\\frac{1}{2}`` and ``1/2``).

    Returns None (does not apply) for a reference math-verify cannot parse, as TRL's ``accuracy_reward`` does;
    ``score_completions`` counts such samples. GSM8K's "... #### 72" references are cut to "72" first.

    Threads: math-verify's timeouts use ``signal.alarm``, which works only in the main thread. In the main thread
    parsing and comparison are bounded by ``timeout_seconds`` each; in any other thread the timeouts are switched
    off (``parsing_timeout=None``, ``timeout_seconds=None``) and the caller must bound the time itself.

    Args:
        answer_column: the column holding the reference answers (default "answer").
        timeout_seconds: per-parse and per-comparison time limit in the main thread (default 5, math-verify's
            default; None switches it off everywhere). A timed-out comparison scores 0.0.

    Raises ``ImportError`` naming the extra (``pip install grpolab[data]``) when math-verify is not installed.
    """
    _math_verify()  # fail when the task is built, not at the first reward call
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise ValueError(f"math verifier: timeout_seconds must be a positive integer or None, got {timeout_seconds}")
    return VerifierReward("math", _score_math, answer_column, {"timeout_seconds": timeout_seconds})


# ---------------------------------------------------------------- reward specs of tasks

#: A task's ``reward`` option: a name, a ``{name: {options}}`` mapping, or a list of these.
RewardSpec = str | dict[str, Any] | list[str | dict[str, Any]]


def build_rewards(
    spec: Any, *, answer_column: str = "answer", builtins: dict[str, Callable[..., Any]] | None = None
) -> list[Callable[..., Any]]:
    """The reward functions of a task's ``reward`` option, in order.

    ``spec`` is a verifier name (``"numeric"``), a mapping ``{name: {option: value}}`` (``{numeric: {abs_tol:
    0.01}}``, ``{reward_model: {path: rms/rm_0}}``; ``{name: null}`` means no options; a mapping with several names
    gives one entry each, in order), or a list of names and mappings. Each entry is built as
    ``VERIFIERS[name](answer_column=answer_column, **options)``; a factory that returns a LIST of functions
    (``reward_model_heads``: one per head of a multi-head reward model) is spliced in, so the task's
    ``reward_weights`` must then count each of them. ``builtins`` maps names to ready functions that take no options
    and win over ``VERIFIERS`` (the ``arith`` task's ``"exact"`` is its own ``arith_exact_reward``).

    Raises ``ValueError`` for an unknown name (listing the known ones), options that are not a mapping, an option
    the verifier does not take (listing those it takes), and an empty spec.

    >>> [f.__name__ for f in build_rewards(["exact", {"numeric": {"abs_tol": 0.5}}])]
    ['exact', 'numeric']
    >>> build_rewards({"numeric": {"abs_tol": 0.5}})[0].options["abs_tol"]
    0.5
    """
    builtins = builtins or {}
    entries = spec if isinstance(spec, (list, tuple)) else [spec]
    funcs: list[Callable[..., Any]] = []
    for entry in entries:
        if isinstance(entry, str):
            pairs = [(entry, {})]
        elif isinstance(entry, dict) and entry:
            pairs = list(entry.items())
        else:
            raise ValueError(
                f"reward: each entry must be a verifier name or a {{name: {{options}}}} mapping, got {entry!r}; e.g. "
                "[exact, {numeric: {abs_tol: 0.01}}, {reward_model: {path: my_rm}}]"
            )
        for name, options in pairs:
            options = {} if options is None else options
            if not isinstance(name, str) or not isinstance(options, dict):
                raise ValueError(f"reward: {name!r}'s options must be a mapping {{option: value}}, got {options!r}")
            if name in builtins:
                if options:
                    raise ValueError(f"reward: {name!r} takes no options here, got {sorted(options)}")
                funcs.append(builtins[name])
                continue
            made = _make_verifier(name, answer_column, options)
            funcs.extend(made if isinstance(made, list) else [made])
    if not funcs:
        raise ValueError("reward: no reward function given; name at least one verifier (e.g. exact)")
    return funcs


def _make_verifier(name: str, answer_column: str, options: dict[str, Any]) -> Any:
    import inspect

    factory = VERIFIERS[name]  # an unknown name raises UnknownNameError (a ValueError) listing the known ones
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(options) - set(parameters) - {"answer_column"}) if not takes_any else []
    if unknown:
        accepted = sorted(n for n, p in parameters.items() if n != "answer_column" and p.kind == p.KEYWORD_ONLY)
        raise ValueError(f"reward: verifier {name!r} has no option {unknown}; it takes {accepted}")
    required = [
        p.name
        for p in parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.default is inspect.Parameter.empty and p.name not in options
    ]
    if required:
        raise ValueError(
            f"reward: verifier {name!r} needs the option(s) {required}, e.g. {{{name}: {{{required[0]}: ...}}}}"
        )
    options = {"answer_column": answer_column, **options}  # an entry may read another column than the task's
    return factory(**options)
