"""Verifiable rewards of the ``clinical`` task: diagnostic accuracy, faithfulness, comprehensiveness (CRPO).

Clinical-R1 ("Clinical-R1: Empowering Large Language Models for Faithful and Comprehensive Reasoning with
Clinical Objective Relative Policy Optimization", Gu et al., arXiv 2512.00601) trains with "rule-based, verifiable
rewards" for three objectives, accuracy, medical faithfulness and cognitive comprehensiveness, combined into one
GRPO reward.
The paper's formulas for the last two were not available (``shared/specs/part_b_sampling_rewards_other.md`` §6;
the released code scores accuracy, format and English only), so the checkers below are this library's, written
for the structured completions of the synthetic ``clinical`` task (``grpolab.data.clinical``).

**The completion format** (one line; the labels are lower case; whitespace around items is ignored)::

    findings: <finding>, <finding>, ...; ddx: <condition>, <condition>, ...; dx: <condition>

- ``findings``: the findings of the vignette the diagnosis rests on (the "reasoning": what the model cites);
- ``ddx``: the differential diagnoses considered and set aside;
- ``dx``: the final diagnosis, exactly one.

:func:`parse_answer` splits the text on ``;`` into ``label: value`` fields; a field given twice counts as absent
(an ambiguous answer, as Clinical-R1's code scores a completion with two ``\\boxed{}`` answers as wrong), segments
without a known label are ignored. List items are split on ``,``; every item and the diagnosis are compared after
:func:`normalise` (lower case, runs of whitespace collapsed, surrounding spaces and a trailing full stop removed);
repeated items count once.

**The three rewards** (TRL plain-callable convention, each its own function so each is logged as
``reward/<name>``; they read the task's columns ``diagnosis``, ``findings``, ``key_findings``, ``differentials``):

- :func:`dx_accuracy` = 1 when the ``dx`` field equals the gold diagnosis, else 0 (also the task's accuracy).
- :func:`faithfulness` = |cited ∩ findings| / |cited|: the fraction of cited findings that the vignette states;
  0 when nothing is cited. Inventing a finding (citing one the case does not have: a hallucinated "textbook"
  sign) lowers it. Why 0 for an empty citation: an empty list is vacuously "faithful", and scoring it 1 would pay
  the policy to stop reasoning; the objective is reasoning grounded in the case, and no citation grounds nothing.
- :func:`comprehensiveness` = ½ · cover(cited, key_findings) + ½ · cover(ddx, differentials) with
  cover(A, G) = |A ∩ G| / max(|G|, |A|) (1 when both are empty): the share of the key findings and of the
  differentials the answer covers. The ``max`` is a guard against padding: items beyond the gold count dilute the
  score, so listing every finding of the vignette or every known condition does not pay; exactly the key findings
  and exactly the differentials score 1. Real but non-key findings are not unfaithful (faithfulness stays 1), they
  only dilute the coverage.

An unparsable completion scores 0 on all three. ``rewards`` returns the three functions in that order; the task's
weights (``grpolab.data.clinical.DEFAULT_WEIGHTS``) combine them.

>>> gold = dict(diagnosis=["flu"], findings=[["fever", "dry cough", "body aches", "headache"]],
...             key_findings=[["fever", "dry cough", "body aches"]], differentials=[["cold", "pneumonia"]])
>>> text = "findings: fever, dry cough, body aches; ddx: cold, pneumonia; dx: flu"
>>> [f([""], [text], **gold) for f in (dx_accuracy, faithfulness, comprehensiveness)]
[[1.0], [1.0], [1.0]]
>>> text = "findings: fever, crackles; ddx: cold; dx: flu"  # crackles invented; key findings and a ddx missed
>>> [f([""], [text], **gold) for f in (dx_accuracy, faithfulness, comprehensiveness)]  # comp: ½·⅓ + ½·½
[[1.0], [0.5], [0.41666666666666663]]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grpolab.rewards.verifiers import completion_text

#: The labels of the completion format, in their order.
LABELS = ("findings", "ddx", "dx")
#: Separator between fields and between list items.
FIELD_SEP, ITEM_SEP = ";", ","

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """A finding or condition name as compared: lower case, whitespace runs collapsed to one space, surrounding
    spaces and trailing full stops removed.

    >>> normalise("  Dry   Cough. "), normalise("flu")
    ('dry cough', 'flu')
    """
    return _SPACES.sub(" ", str(text)).strip().rstrip(".").strip().lower()


def split_items(text: str) -> list[str]:
    """The normalised, non-empty items of a comma-separated list, each once, in order of first appearance.

    >>> split_items("fever, Dry cough,, fever ")
    ['fever', 'dry cough']
    """
    out: list[str] = []
    for item in text.split(ITEM_SEP):
        item = normalise(item)
        if item and item not in out:
            out.append(item)
    return out


@dataclass(frozen=True)
class ClinicalAnswer:
    """The parsed fields of a completion; a field that is absent (or given twice) is None."""

    findings: list[str] | None
    ddx: list[str] | None
    dx: str | None


def parse_answer(completion: Any) -> ClinicalAnswer:
    """Parse ``"findings: a, b; ddx: x, y; dx: z"`` (see the module docstring for the rules).

    >>> parse_answer("findings: fever, crackles; ddx: flu; dx: Pneumonia.")
    ClinicalAnswer(findings=['fever', 'crackles'], ddx=['flu'], dx='pneumonia')
    >>> parse_answer("dx: flu; dx: cold")  # two diagnoses: ambiguous, so absent
    ClinicalAnswer(findings=None, ddx=None, dx=None)
    >>> parse_answer("it is the flu")
    ClinicalAnswer(findings=None, ddx=None, dx=None)
    """
    fields: dict[str, list[str]] = {}
    for segment in completion_text(completion).split(FIELD_SEP):
        label, sep, value = segment.partition(":")
        label = normalise(label)
        if sep and label in LABELS:
            fields.setdefault(label, []).append(value)
    once = {label: values[0] for label, values in fields.items() if len(values) == 1}
    dx = normalise(once["dx"]) if "dx" in once else None
    return ClinicalAnswer(
        findings=split_items(once["findings"]) if "findings" in once else None,
        ddx=split_items(once["ddx"]) if "ddx" in once else None,
        dx=dx or None,
    )


def format_answer(findings: Sequence[str], ddx: Sequence[str], dx: str) -> str:
    """The completion text of an answer, the format :func:`parse_answer` reads.

    >>> format_answer(["fever", "dry cough"], ["cold", "pneumonia"], "flu")
    'findings: fever, dry cough; ddx: cold, pneumonia; dx: flu'
    """
    return f"findings: {', '.join(findings)}; ddx: {', '.join(ddx)}; dx: {dx}"


def cover(cited: Sequence[str], gold: Sequence[str]) -> float:
    """|cited ∩ gold| / max(|gold|, |cited|) over normalised, de-duplicated items; 1.0 when both are empty.

    Coverage of ``gold`` with a guard against padding: citing more items than ``gold`` has dilutes the score.

    >>> cover(["a", "b"], ["a", "b", "c"]), cover(["a", "b", "c", "x"], ["a", "b", "c"]), cover([], [])
    (0.6666666666666666, 0.75, 1.0)
    """
    cited_set = {normalise(c) for c in cited} - {""}
    gold_set = {normalise(g) for g in gold} - {""}
    if not cited_set and not gold_set:
        return 1.0
    return len(cited_set & gold_set) / max(len(gold_set), len(cited_set))


def _check_columns(completions: Sequence[Any], **columns: Sequence[Any]) -> None:
    for name, values in columns.items():
        if values is None:
            raise ValueError(
                f"the clinical rewards need the {name!r} column (rows of TASKS['clinical'] or a case file with the "
                "clinical schema)"
            )
        if len(values) != len(completions):
            raise ValueError(
                f"{len(completions)} completions but {len(values)} {name!r} values; pass one per completion"
            )


def dx_accuracy(prompts: list, completions: list, diagnosis: list | None = None, **kwargs: Any) -> list[float]:
    """1.0 when the completion's ``dx`` field equals the gold ``diagnosis`` (both :func:`normalise`-d), else 0.0.

    A missing ``dx`` field, two ``dx`` fields or a hedged ``dx: flu, cold`` are wrong (0.0).

    >>> dx_accuracy(["", "", ""], ["findings: ; ddx: ; dx: Flu", "dx: flu, cold", "flu"], diagnosis=["flu"] * 3)
    [1.0, 0.0, 0.0]
    """
    _check_columns(completions, diagnosis=diagnosis)
    return [
        1.0 if parse_answer(c).dx == normalise(gold) else 0.0 for c, gold in zip(completions, diagnosis, strict=True)
    ]


def faithfulness(prompts: list, completions: list, findings: list | None = None, **kwargs: Any) -> list[float]:
    """The fraction of the cited findings that the case's ``findings`` list holds; 0.0 when nothing is cited.

    Every cited finding must be stated in the vignette (the case's ``findings`` column); a cited finding the case
    does not have is invented. Repeated citations count once. See the module docstring for why an empty citation
    scores 0.

    >>> case = [["fever", "wet cough", "crackles"]]
    >>> faithfulness([""], ["findings: fever, wet cough; dx: pneumonia"], findings=case)
    [1.0]
    >>> faithfulness([""], ["findings: fever, wet cough, chest pain; dx: pneumonia"], findings=case)
    [0.6666666666666666]
    >>> faithfulness([""], ["dx: pneumonia"], findings=case)
    [0.0]
    """
    _check_columns(completions, findings=findings)
    out = []
    for c, real in zip(completions, findings, strict=True):
        cited = parse_answer(c).findings or []
        stated = {normalise(f) for f in real}
        out.append(sum(f in stated for f in cited) / len(cited) if cited else 0.0)
    return out


def comprehensiveness(
    prompts: list,
    completions: list,
    key_findings: list | None = None,
    differentials: list | None = None,
    **kwargs: Any,
) -> list[float]:
    """½ · cover(cited findings, key findings) + ½ · cover(ddx, differentials) (see :func:`cover`).

    1.0 for exactly the key findings and exactly the differentials (any order); a correct ``dx`` with nothing
    cited and no ddx scores 0.0 (when the case has differentials).

    >>> kf, dd = [["fever", "stiff neck", "headache"]], [["migraine", "flu"]]
    >>> comprehensiveness([""], ["findings: headache, fever, stiff neck; ddx: flu, migraine; dx: meningitis"],
    ...                   key_findings=kf, differentials=dd)
    [1.0]
    >>> comprehensiveness([""], ["findings: headache; ddx: migraine; dx: meningitis"], key_findings=kf,
    ...                   differentials=dd)  # 1/2 * 1/3 + 1/2 * 1/2
    [0.41666666666666663]
    """
    _check_columns(completions, key_findings=key_findings, differentials=differentials)
    out = []
    for c, key, ddx in zip(completions, key_findings, differentials, strict=True):
        answer = parse_answer(c)
        out.append(0.5 * cover(answer.findings or [], key) + 0.5 * cover(answer.ddx or [], ddx))
    return out


#: The three reward functions in the order of the task's weights: accuracy, faithfulness, comprehensiveness.
REWARDS = (dx_accuracy, faithfulness, comprehensiveness)

__all__ = [
    "LABELS",
    "REWARDS",
    "ClinicalAnswer",
    "comprehensiveness",
    "cover",
    "dx_accuracy",
    "faithfulness",
    "format_answer",
    "normalise",
    "parse_answer",
    "split_items",
]
