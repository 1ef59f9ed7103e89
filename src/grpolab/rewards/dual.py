"""The dual reward of Temporal-RLT: a discrete correctness signal plus a continuous closeness signal.

Paper: "Reinforcement Learning Tuning for VideoLLMs: Reward Design and Data Efficiency" (Li, Han, Liao, Luo, Gao,
Yan, Liu; arXiv 2506.01908). The paper supervises semantic reasoning with a *discrete* reward (a multiple-choice
answer is right or wrong) and temporal reasoning with a *continuous* one (the temporal IoU of a predicted interval
``[start, end]`` with the annotated one), on top of GRPO. This module registers the verifier ``VERIFIERS["dual"]``
that scores one completion against one reference as

    reward = discrete_weight · discrete + continuous_weight · continuous

where the reference decides what the two parts are (``mode="auto"``). What is scored is the completion's ANSWER:
the content of its first ``<answer>...</answer>`` pair when it has one (as the authors' reward functions read it,
Temporal-R1 ``tvg.py`` / ``r1v.py``: ``re.search(r"<answer>(.*?)</answer>", ...)``; here across lines), else the
whole completion. The same answer text feeds all three kinds:

- an interval reference (``[3, 7]``, ``"[3.0, 7.5]"``, ``"3-7"``, ``"3,7"``, ``"3 to 7"``, ``"[3s, 7s]"``): continuous
  = temporal IoU of the LAST interval in the answer with the reference (the paper's grounding reward; the answer may
  be written in any form ``parse_interval`` reads, the authors' ``{"start_time": "3.0", "end_time": "7.0"}``
  included); discrete = 1 when both end points equal the reference's (within the tolerances), so on real timestamps
  the reward is essentially the paper's IoU-only grounding reward;
- a number (``68``, ``"-22"``, GSM8K's ``"... #### 72"``): discrete = the last number of the answer equals the
  reference (as the ``numeric`` verifier); continuous = ``closeness`` = 1 − min(1, |pred − ref| / (scale · max(1,
  |ref|))), a graded score in [0, 1] for near misses. This scalar case is grpolab's extension so that the dual
  reward applies to numeric tasks such as the built-in ``arith`` (the paper has no scalar answers);
- any other text (a multiple-choice letter ``"B"``): discrete = the stripped answer equals the stripped reference,
  exactly (case and spelling included). This is a stricter stand-in for the authors' VideoQA accuracy, which grades
  the answer with mathruler's ``grade_answer`` (normalised comparison; Temporal-R1 ``r1v_accuracy_reward``); there
  is no continuous part (it contributes 0).

A completion in which no interval / number can be read scores 0.0 (both parts: a malformed answer is the policy's
mistake, not a data error). A reference that cannot be read in the mode asked for raises ``ValueError`` (a data
error, reported by ``score_completions``).

Registered from this module: importing ``grpolab.rewards`` imports every module of the package, this one included,
so ``VERIFIERS["dual"]`` exists wherever verifiers are looked up.

>>> fn = VERIFIERS["dual"]()
>>> fn(prompts=["q", "q", "q"], completions=["It spans [1, 5].", "69", "68"], answer=["[3, 7]", "68", "68"])
[0.3333333333333333, 0.9852941176470589, 2.0]
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from grpolab.core.checks import check_choice, is_number
from grpolab.rewards.verifiers import VERIFIERS, VerifierReward, last_number, reference_number, strip_gsm8k

#: How the reference is read: "auto" decides from the reference itself (interval, then number, then text).
MODES = ("auto", "interval", "scalar", "text")

# A time stamp: a decimal number. Time stamps are non-negative, so "-" can separate the two end points ("3-7"); an
# explicit sign is still read (hyphen-minus, plus, U+2212 minus) so that a negative stamp ("[-1, 5]", "3 to -2") is
# recognised as malformed instead of losing its minus sign.
_SIGN = "[-+\u2212]"
_TIME = rf"{_SIGN}?(?:\d+(?:\.\d+)?|\.\d+)"
# An optional seconds unit after a stamp: "3.2s", "3.2 sec", "3.2 seconds".
_UNIT = r"(?:\s*(?:s|secs?|seconds?)\b)?"
# Between the end points: a comma, semicolon, hyphen / en dash / em dash, or the word "to" (spaces allowed).
_SEP = r"\s*(?:,|;|-|\u2013|\u2014|\bto\b)\s*"
# Not glued to a preceding word character, decimal point, sign or dash ("v2-3", "1.5-2" and "x-1, 5" must not read
# "2-3" / "5-2" / "1, 5"), and the end not followed by more digits ("3-7.5" is 3 to 7.5; a sentence's full stop
# after the end point is fine).
_INTERVAL_RE = re.compile(
    rf"(?<![\w.+\-\u2212\u2013\u2014])(?P<start>{_TIME}){_UNIT}{_SEP}(?P<end>{_TIME})(?!\.?\d){_UNIT}"
)
# A reference that IS an interval: optional brackets around two time stamps, nothing else.
_WHOLE_INTERVAL_RE = re.compile(rf"\s*[\[(]?\s*(?P<start>{_TIME}){_UNIT}{_SEP}(?P<end>{_TIME}){_UNIT}\s*[\])]?\s*")
# The authors' grounding answer (Temporal-R1 tvg.py): a JSON object {"start_time": "3.0", "end_time": "7.0"}. Any
# brace block without nested braces that names both keys is read; values may be quoted or bare, with a unit.
_BLOCK_RE = re.compile(r"\{[^{}]*\}")
_KEY_RE = re.compile(rf"""["']?(?P<key>start_time|end_time)["']?\s*:\s*["']?\s*(?P<value>{_TIME})?""")
# The answer of a completion: the content of the first <answer>...</answer> pair (the authors' extraction).
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_WHOLE_NUMBER_RE = re.compile(r"\s*[-+]?(?:\d+(?:\.\d+)?|\.\d+)\s*")


def temporal_iou(pred: tuple[float, float], ref: tuple[float, float]) -> float:
    """Temporal IoU of two intervals ``(start, end)`` (start <= end): |pred ∩ ref| / |pred ∪ ref|, in [0, 1].

    The paper's continuous grounding reward (Temporal-RLT, arXiv 2506.01908, dual reward). The union is
    |pred| + |ref| − |pred ∩ ref|; disjoint intervals give 0 (the authors' released code divides by the hull
    max(end) − min(start) instead, which equals the union whenever the intervals overlap, and gives 0 as well
    otherwise). Two zero-length intervals score 1 when they are the same point, else 0.

    >>> temporal_iou((1.0, 5.0), (3.0, 7.0))  # intersection 2, union 4 + 4 − 2 = 6
    0.3333333333333333
    >>> temporal_iou((0.0, 1.0), (2.0, 3.0)), temporal_iou((2.0, 4.0), (2.0, 4.0))
    (0.0, 1.0)
    """
    (ps, pe), (rs, re_) = pred, ref
    if ps > pe or rs > re_:
        raise ValueError(f"temporal_iou: intervals need start <= end, got {pred} and {ref}")
    inter = max(0.0, min(pe, re_) - max(ps, rs))
    union = (pe - ps) + (re_ - rs) - inter
    if union <= 0.0:  # both intervals are single points
        return 1.0 if (ps, pe) == (rs, re_) else 0.0
    return inter / union


def closeness(pred: float, ref: float, *, scale: float = 1.0) -> float:
    """Continuous closeness of a scalar answer: 1 − min(1, |pred − ref| / (scale · max(1, |ref|))), in [0, 1].

    grpolab's continuous counterpart of temporal IoU for numeric answers (not in the paper, which has no scalar
    answers): 1 for the exact answer, falling linearly with the error relative to the reference's magnitude
    (floored at 1, so small references are not over-penalised), 0 from an error of ``scale · max(1, |ref|)`` on.

    Args:
        scale: error, in units of max(1, |ref|), at which the score reaches 0 (default 1.0: an answer off by
            the reference's own size scores 0; usually 0.1 to 1). Must be > 0.

    >>> closeness(69.0, 68.0)  # 1 − 1/68
    0.9852941176470589
    >>> closeness(0.0, 68.0), closeness(5.0, 0.0, scale=10.0)
    (0.0, 0.5)
    """
    if not scale > 0:
        raise ValueError(f"closeness: scale must be > 0, got {scale}")
    if not (math.isfinite(pred) and math.isfinite(ref)):
        return 0.0
    return 1.0 - min(1.0, abs(pred - ref) / (scale * max(1.0, abs(ref))))


def _stamp(text: str) -> float:
    """A time stamp matched by ``_TIME`` as a float (U+2212 minus read as "-")."""
    return float(text.replace("\u2212", "-"))


def _checked(start: float, end: float) -> tuple[float, float] | None:
    """The interval, or None when a stamp is negative or it runs backwards (malformed)."""
    return (start, end) if 0.0 <= start <= end else None


def _json_interval(block: str) -> tuple[float, float] | bool | None:
    """A brace block as an interval: False when it does not name both keys (not a time object), None when it does
    but a value is not a non-negative number or the interval runs backwards (malformed), else (start, end)."""
    values: dict[str, str | None] = {}
    for m in _KEY_RE.finditer(block):
        values.setdefault(m.group("key"), m.group("value"))  # the first occurrence of each key counts
    if len(values) < 2:
        return False
    if values["start_time"] is None or values["end_time"] is None:
        return None
    return _checked(_stamp(values["start_time"]), _stamp(values["end_time"]))


def answer_text(text: str) -> str:
    """The answer of a completion: the content of its first ``<answer>...</answer>`` pair, else the whole text.

    The authors' reward functions (Temporal-R1 ``tvg.py`` / ``r1v.py``) read the answer the same way (first pair,
    ``re.search``); here the content may span lines. An unclosed ``<answer>`` counts as no pair.

    >>> answer_text("<think>maybe A</think><answer> B </answer>"), answer_text("B")
    (' B ', 'B')
    """
    m = _ANSWER_RE.search(text)
    return m.group(1) if m is not None else text


def parse_interval(text: str) -> tuple[float, float] | None:
    """The LAST interval written in ``text`` as ``(start, end)``, or None when there is none or it is malformed.

    Accepted forms (time stamps are decimal numbers, optionally followed by a seconds unit ``s`` / ``sec`` /
    ``seconds``):

    - ``[s, e]``, ``(s, e)``, ``s-e`` (hyphen, en or em dash), ``s,e``, ``s; e`` and ``s to e``, with or without
      units: ``"3.0s to 7.5s"``, ``"[3.2s, 7.5s]"``, ``"3 sec - 7 sec"``;
    - the authors' grounding answer (Temporal-R1 ``tvg.py``), a JSON object naming ``start_time`` and ``end_time``:
      ``{"start_time": "3.0", "end_time": "7.0"}`` (values quoted or bare, keys in any order, other keys ignored).

    In this reading ``1,234`` is the interval (1, 234), never a thousands-separated number. Time stamps are
    non-negative: when the last interval has a negative stamp (``[-1, 5]``, ``3 to -2``) or runs backwards (start >
    end), it is malformed and the result is None (an earlier interval is not used instead).

    >>> parse_interval("The event is at [3.2, 7.5] seconds"), parse_interval("from 1 to 4, then 6-9")
    ((3.2, 7.5), (6.0, 9.0))
    >>> parse_interval('{"start_time": "3.0", "end_time": "7.0"}'), parse_interval("3.0s to 7.5s")
    ((3.0, 7.0), (3.0, 7.5))
    >>> parse_interval("no times here"), parse_interval("[9, 2]"), parse_interval("[-1, 5]")
    (None, None, None)
    """
    # candidates: (position, interval or None for malformed); JSON time objects first, then the plain forms outside
    # them (a JSON object's values must not be read a second time as a plain interval)
    candidates: list[tuple[int, tuple[float, float] | None]] = []
    spans: list[tuple[int, int]] = []
    for block in _BLOCK_RE.finditer(text):
        parsed = _json_interval(block.group(0))
        if parsed is not False:
            candidates.append((block.start(), parsed))
            spans.append(block.span())
    for m in _INTERVAL_RE.finditer(text):
        if any(lo <= m.start() < hi for lo, hi in spans):
            continue
        candidates.append((m.start(), _checked(_stamp(m.group("start")), _stamp(m.group("end")))))
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0])[1]


def reference_kind(reference: Any, mode: str = "auto") -> tuple[str, Any]:
    """How a reference is scored: ``("interval", (s, e))``, ``("scalar", x)`` or ``("text", str)``.

    ``mode="auto"``: a pair of numbers or a string that is exactly an interval (two time stamps in one of
    ``parse_interval``'s plain forms, optionally bracketed) is an interval, and raises ``ValueError`` when a stamp is
    negative or start > end (a data error); a number, or a string that is exactly a number (after GSM8K's "####"
    cut), is a scalar; anything else is text. Other modes force the reading and raise ``ValueError`` when the
    reference does not fit it.

    >>> reference_kind([3, 7]), reference_kind("-22"), reference_kind("B"), reference_kind("3-7")
    (('interval', (3.0, 7.0)), ('scalar', -22.0), ('text', 'B'), ('interval', (3.0, 7.0)))
    """
    check_choice("dual verifier", "mode", mode, MODES)
    if mode in ("auto", "interval"):
        interval = _reference_interval(reference)
        if interval is not None:
            return "interval", interval
        if mode == "interval":
            raise ValueError(f"dual verifier: the reference {reference!r} is not an interval [start, end]")
    if mode in ("auto", "scalar"):
        if is_number(reference, finite=False):
            return "scalar", float(reference)
        text = strip_gsm8k(str(reference))
        if _WHOLE_NUMBER_RE.fullmatch(text):
            return "scalar", float(text)
        if mode == "scalar":  # the numeric verifier's reading: the last number after the "####" cut
            return "scalar", reference_number(reference, where="dual verifier")
    return "text", str(reference).strip()


def _reference_interval(reference: Any) -> tuple[float, float] | None:
    if isinstance(reference, Sequence) and not isinstance(reference, str):
        if len(reference) != 2 or not all(is_number(x, finite=False) for x in reference):
            raise ValueError(f"dual verifier: an interval reference needs two numbers [start, end], got {reference!r}")
        start, end = float(reference[0]), float(reference[1])
    else:
        m = _WHOLE_INTERVAL_RE.fullmatch(str(reference))
        if m is None:
            return None
        start, end = _stamp(m.group("start")), _stamp(m.group("end"))
    if start < 0 or end < 0:
        raise ValueError(f"dual verifier: the reference interval {reference!r} has a negative time stamp")
    if not start <= end:
        raise ValueError(f"dual verifier: the reference interval {reference!r} has start > end")
    return start, end


def dual_parts(
    text: str, reference: Any, *, mode: str = "auto", scale: float = 1.0, rel_tol: float = 1e-6, abs_tol: float = 1e-9
) -> tuple[float, float]:
    """``(discrete, continuous)`` of one completion text against one reference (see the module docstring).

    Every kind reads the completion's answer, ``answer_text(text)`` (the first ``<answer>...</answer>`` content when
    the tag pair is present, else the whole text). Interval: (end points equal, temporal IoU of the answer's last
    interval); scalar: (the answer's last number equals, ``closeness``); text: (stripped answer equals the stripped
    reference exactly, 0.0). An answer with no readable interval / number gives (0.0, 0.0).

    >>> dual_parts("[1, 5]", "[3, 7]"), dual_parts("70", 68), dual_parts(" B ", "B"), dual_parts("soon", "[3, 7]")
    ((0.0, 0.3333333333333333), (0.0, 0.9705882352941176), (1.0, 0.0), (0.0, 0.0))
    >>> dual_parts("<think>A or B</think><answer>B</answer>", "B"), dual_parts("<answer>3 to 7</answer> 9", 7)
    ((1.0, 0.0), (1.0, 1.0))
    """
    kind, ref = reference_kind(reference, mode)
    text = answer_text(text)
    if kind == "interval":
        pred = parse_interval(text)
        if pred is None:
            return 0.0, 0.0
        same = all(math.isclose(p, r, rel_tol=rel_tol, abs_tol=abs_tol) for p, r in zip(pred, ref, strict=True))
        return float(same), temporal_iou(pred, ref)
    if kind == "scalar":
        value = last_number(text)
        if value is None or not math.isfinite(value):  # no number, or a fraction with a zero denominator
            return 0.0, 0.0
        return float(math.isclose(value, ref, rel_tol=rel_tol, abs_tol=abs_tol)), closeness(value, ref, scale=scale)
    return float(text.strip() == ref), 0.0


def _score_dual(
    text: str,
    reference: Any,
    *,
    mode: str,
    discrete_weight: float,
    continuous_weight: float,
    scale: float,
    rel_tol: float,
    abs_tol: float,
) -> float:
    discrete, continuous = dual_parts(text, reference, mode=mode, scale=scale, rel_tol=rel_tol, abs_tol=abs_tol)
    return discrete_weight * discrete + continuous_weight * continuous


@VERIFIERS.register("dual")
def dual(
    *,
    answer_column: str = "answer",
    mode: str = "auto",
    discrete_weight: float = 1.0,
    continuous_weight: float = 1.0,
    scale: float = 1.0,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
) -> VerifierReward:
    """Temporal-RLT's dual reward (arXiv 2506.01908): ``discrete_weight · discrete + continuous_weight · continuous``.

    Discrete: the answer is right (end points / number / text equal the reference). Continuous: temporal IoU for
    interval references, ``closeness`` for numbers, nothing for text (see the module docstring). The reward is in
    [0, discrete_weight + continuous_weight]; it is not a 0/1 accuracy, so a task that lists it first should put a
    0/1 verifier before it for the accuracy metric (``reward: [numeric, dual], reward_weights: [0, 1]``).

    Args:
        answer_column: the column holding the reference answers (default "answer").
        mode: "auto" (default: the reference decides), "interval", "scalar" or "text" (force one reading; use
            "scalar" for references written with thousands separators, which "auto" reads as intervals "1,234").
        discrete_weight: weight of the discrete part (default 1.0; the paper adds the semantic and temporal rewards,
            the weights are an assumption, not stated in the available text; usually 0.5 to 1). Must be >= 0.
        continuous_weight: weight of the continuous part (default 1.0; usually 0.5 to 1). Must be >= 0; the two
            weights may not both be 0.
        scale: closeness's error scale for numbers, in units of max(1, |ref|) (default 1.0; usually 0.1 to 1).
        rel_tol, abs_tol: tolerances of the discrete equality (``math.isclose``; defaults 1e-6 and 1e-9).

    >>> dual(discrete_weight=0.5)(prompts=["q"], completions=["[2, 4]"], answer=[[2, 4]])
    [1.5]
    """
    check_choice("dual verifier", "mode", mode, MODES)
    weights = (discrete_weight, continuous_weight)
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(w > 0 for w in weights):
        raise ValueError(
            f"dual verifier: discrete_weight and continuous_weight must be finite and >= 0, not both 0; got {weights}"
        )
    if not scale > 0:
        raise ValueError(f"dual verifier: scale must be > 0, got {scale}")
    if not (rel_tol >= 0 and abs_tol >= 0):
        raise ValueError(f"dual verifier: tolerances must be >= 0, got rel_tol={rel_tol}, abs_tol={abs_tol}")
    options = {
        "mode": mode,
        "discrete_weight": float(discrete_weight),
        "continuous_weight": float(continuous_weight),
        "scale": float(scale),
        "rel_tol": float(rel_tol),
        "abs_tol": float(abs_tol),
    }
    return VerifierReward("dual", _score_dual, answer_column, options)
