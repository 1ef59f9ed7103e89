"""Rubric rewards: case-specific weighted criteria checked on a whole consultation transcript.

Baichuan-M2 (Baichuan-M2: Scaling Medical Capability with Large Verifier System, arXiv 2509.02208) scores a
consultation with a *Clinical Rubrics Generator* that writes prompt-specific, weighted, multi-dimensional rubric
items and a verifier that checks each item; negative-weight items are penalties. The reward is the normalised
weighted sum (HealthBench's form)::

    R = Σ_k w_k · sat_k / Σ_{k: w_k > 0} w_k          sat_k ∈ {0, 1} (or a probability), clipped to [−1, 1]

It equals 1 when every positive item is met and no negative one is, 0 when nothing is met, and is negative when
penalties outweigh what was met. The upper bound 1 holds by construction; the lower bound −1 holds whenever the
penalties' total |weight| is at most the positive total (true of ``RubricGenerator``'s defaults) and is enforced by
clipping otherwise (an assumption: the paper's normalisation of penalty-heavy rubrics was not read).

Parts (all pluggable):

- ``RubricItem``: ``text`` (the criterion in words; what the LLM verifier is asked), ``weight`` (negative =
  penalty), ``check`` (the rule's kind, one of ``CHECKS``) with its ``target``, and a ``dimension`` for logging.
- ``RubricGenerator``: rule-based items per case (schema of ``grpolab.data.clinical``: ``findings``,
  ``key_findings``, ``diagnosis``, ``differentials``).
- ``RuleVerifier``: deterministic checks of the transcript (``grpolab.envs.consultation.parse_transcript``).
- ``LLMVerifier``: any local ``transformers`` causal LM asked one yes/no question per item, judged by comparing
  the next-token logits of configurable yes / no tokens.
- ``rubric_rewards``: TRL-convention reward functions (``fn(prompts, completions, **columns)``): the rubric reward
  and, optionally, one per dimension (log them with weight 0: ``reward/rubric_history`` ...).

>>> case = {"findings": ["productive cough", "fever", "night sweats"], "key_findings": ["productive cough", "fever"],
...         "diagnosis": "pneumonia", "differentials": ["bronchitis"]}
>>> [(i.check, i.weight) for i in RubricGenerator()(case)]  # doctest: +NORMALIZE_WHITESPACE
[('asks_about', 2.0), ('asks_about', 2.0), ('diagnosis', 5.0), ('mentions', 1.0), ('max_questions', -2.0),
 ('denied_claim', -3.0)]
>>> reward = rubric_rewards(dimensions=False)[0]
>>> reward(prompts=["p"], completions=["<ask>cough?</ask><pt>yes: productive cough</pt><dx>pneumonia</dx>"],
...        **{k: [v] for k, v in case.items()})  # (2 + 5) / (2 + 2 + 5 + 1)
[0.7]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from grpolab.core.checks import check_int, check_number
from grpolab.envs.consultation import asks_about, best_matches, is_denial, keywords, mentions, parse_transcript
from grpolab.rewards.judges import yes_no_margins, yes_no_token_ids
from grpolab.rewards.verifiers import completion_text

#: The rule kinds an item can have: what ``RuleVerifier`` checks for each.
#: - ``asks_about`` (target: a finding): some question asks about it most specifically among the case's findings
#:   (``best_matches``: the rule by which ``RulePatient`` reveals it; a target outside the findings: any shared word);
#: - ``diagnosis`` (target: the diagnosis): the primary diagnosis (first entry of ``<dx>``) mentions every content
#:   word of the target;
#: - ``mentions`` (target: a phrase, e.g. a differential): the doctor's own statements mention it;
#: - ``max_questions`` (target: N): more than N questions were asked (a penalty item);
#: - ``denied_claim`` (target: None): the doctor's statements assert something the patient denied — every content
#:   word of a question the patient answered with a denial occurs in the statements (a penalty item).
CHECKS = ("asks_about", "diagnosis", "mentions", "max_questions", "denied_claim")
#: The case columns the rubric reads.
CASE_COLUMNS = ("findings", "key_findings", "diagnosis", "differentials")
#: An optional column: the findings the prompt already states (the chief complaint; no "asks about" item for them).
PRESENTED = "presented"


@dataclass(frozen=True)
class RubricItem:
    """One criterion: ``text`` in words, ``weight`` (negative = penalty; non-zero), the rule ``check`` (one of
    ``CHECKS``) with its ``target``, and the ``dimension`` it is logged under."""

    text: str
    weight: float
    check: str
    target: Any = None
    dimension: str = "other"

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"rubric item {self.text!r}: check must be one of {list(CHECKS)}, got {self.check!r}")
        check_number("weight", self.weight, where=f"rubric item {self.text!r}")
        if self.weight == 0:
            raise ValueError(f"rubric item {self.text!r}: weight must be non-zero (negative for a penalty)")


def rubric_score(weights: Sequence[float], satisfied: Sequence[float]) -> float:
    """The rubric reward ``clip(Σ_k w_k·sat_k / Σ_{w_k>0} w_k, −1, 1)`` (Baichuan-M2's normalised weighted sum,
    arXiv 2509.02208; HealthBench's score before its [0, 1] clip).

    ``satisfied`` holds 0/1 (or probabilities in [0, 1]) per item. Raises ``ValueError`` without a positive weight
    (the normaliser would be 0).

    >>> rubric_score([2, 5, -3], [1, 1, 0]), rubric_score([2, 5, -3], [1, 0, 1]), rubric_score([2, -9], [0, 1])
    (1.0, -0.14285714285714285, -1.0)
    """
    if len(weights) != len(satisfied):
        raise ValueError(f"rubric_score: {len(weights)} weights for {len(satisfied)} satisfied flags")
    positive = sum(w for w in weights if w > 0)
    if positive <= 0:
        raise ValueError(f"rubric_score: the rubric needs at least one positive weight, got {list(weights)}")
    for s in satisfied:
        if not 0.0 <= float(s) <= 1.0:
            raise ValueError(f"rubric_score: satisfied values must lie in [0, 1], got {list(satisfied)}")
    raw = sum(float(w) * float(s) for w, s in zip(weights, satisfied, strict=True)) / positive
    return min(1.0, max(-1.0, raw))


def dimension_score(weights: Sequence[float], satisfied: Sequence[float]) -> float | None:
    """One dimension's score ``Σ_k w_k·sat_k / Σ_k |w_k|`` in [−1, 1] (None for a dimension without items): the
    share of its points earned, negative for penalty dimensions (−1 when every penalty was incurred).

    >>> dimension_score([2, 2], [1, 0]), dimension_score([-3], [1]), dimension_score([], [])
    (0.5, -1.0, None)
    """
    total = sum(abs(float(w)) for w in weights)
    if not weights or total == 0:
        return None
    return sum(float(w) * float(s) for w, s in zip(weights, satisfied, strict=True)) / total


def case_of(row: dict[str, Any]) -> dict[str, Any]:
    """The rubric columns of a case row (``CASE_COLUMNS`` and ``presented``, default []), validated: lists of
    strings and a diagnosis string."""
    missing = [c for c in CASE_COLUMNS if c not in row]
    if missing:
        raise ValueError(
            f"a rubric needs the case columns {list(CASE_COLUMNS)}; missing {missing} (columns: {sorted(row)})"
        )
    case = {c: row[c] for c in CASE_COLUMNS}
    case[PRESENTED] = row.get(PRESENTED) or []
    for c in ("findings", "key_findings", "differentials", PRESENTED):
        if not isinstance(case[c], (list, tuple)) or not all(isinstance(x, str) for x in case[c]):
            raise ValueError(f"case column {c!r} must be a list of strings, got {case[c]!r}")
        case[c] = list(case[c])
    if not isinstance(case["diagnosis"], str) or not keywords(case["diagnosis"]):
        raise ValueError(f"case column 'diagnosis' must be a non-empty string, got {case['diagnosis']!r}")
    return case


class RubricGenerator:
    """Rule-based rubric items per case (a stand-in for Baichuan-M2's LLM Clinical Rubrics Generator).

    Items, in order (weights are ours: the paper's were not read; HealthBench uses points from −10 to 10):

    - "asks about <key finding>" per key finding the prompt does not already state (column ``presented``, the
      chief complaint), ``+key_finding_weight`` (dimension ``history``);
    - "states the correct diagnosis: <diagnosis>", ``+diagnosis_weight`` (``diagnosis``);
    - "mentions the differential diagnosis <d>" per differential, ``+differential_weight`` (``differential``);
    - "asks more than N questions" with N = len(findings) + ``question_allowance``, ``over_asking_weight`` < 0
      (``efficiency``): asking beyond what the patient could tell wastes the consultation;
    - "states a finding the patient denied", ``denied_claim_weight`` < 0 (``honesty``).

    Args:
        key_finding_weight: points per key finding asked about (default 2; usually 1 to 5).
        diagnosis_weight: points for the correct primary diagnosis (default 5; usually 3 to 10).
        differential_weight: points per differential mentioned (default 1; usually 0.5 to 2).
        question_allowance: questions allowed beyond the number of findings (default 2; usually 0 to 4).
        over_asking_weight: penalty for asking too many questions (default −2; ≤ 0, 0 drops the item).
        denied_claim_weight: penalty for asserting a denied finding (default −3; ≤ 0, 0 drops the item).
    """

    def __init__(
        self,
        *,
        key_finding_weight: float = 2.0,
        diagnosis_weight: float = 5.0,
        differential_weight: float = 1.0,
        question_allowance: int = 2,
        over_asking_weight: float = -2.0,
        denied_claim_weight: float = -3.0,
    ) -> None:
        for name, value in (
            ("key_finding_weight", key_finding_weight),
            ("diagnosis_weight", diagnosis_weight),
            ("differential_weight", differential_weight),
        ):
            check_number(name, value, minimum=0.0, where="RubricGenerator")
        if diagnosis_weight <= 0:
            raise ValueError(
                f"RubricGenerator: diagnosis_weight must be > 0 (the rubric's anchor), got {diagnosis_weight}"
            )
        for name, value in (("over_asking_weight", over_asking_weight), ("denied_claim_weight", denied_claim_weight)):
            check_number(name, value, maximum=0.0, where="RubricGenerator", hint="a penalty: <= 0")
        check_int("question_allowance", question_allowance, minimum=0, where="RubricGenerator")
        self.key_finding_weight, self.diagnosis_weight = float(key_finding_weight), float(diagnosis_weight)
        self.differential_weight, self.question_allowance = float(differential_weight), question_allowance
        self.over_asking_weight, self.denied_claim_weight = float(over_asking_weight), float(denied_claim_weight)

    def __call__(self, case: dict[str, Any]) -> list[RubricItem]:
        case = case_of(case)
        items = []
        if self.key_finding_weight > 0:
            items += [
                RubricItem(f"asks about {f}", self.key_finding_weight, "asks_about", f, "history")
                for f in case["key_findings"]
                if f not in case[PRESENTED]
            ]
        dx = case["diagnosis"]
        items.append(
            RubricItem(f"states the correct diagnosis: {dx}", self.diagnosis_weight, "diagnosis", dx, "diagnosis")
        )
        if self.differential_weight > 0:
            items += [
                RubricItem(
                    f"mentions the differential diagnosis {d}", self.differential_weight, "mentions", d, "differential"
                )
                for d in case["differentials"]
            ]
        limit = len(case["findings"]) + self.question_allowance
        if self.over_asking_weight < 0:
            items.append(
                RubricItem(
                    f"asks more than {limit} questions", self.over_asking_weight, "max_questions", limit, "efficiency"
                )
            )
        if self.denied_claim_weight < 0:
            items.append(
                RubricItem(
                    "states a finding the patient denied", self.denied_claim_weight, "denied_claim", None, "honesty"
                )
            )
        return items

    def __repr__(self) -> str:
        return (
            f"RubricGenerator(key_finding_weight={self.key_finding_weight}, diagnosis_weight={self.diagnosis_weight}, "
            f"differential_weight={self.differential_weight}, question_allowance={self.question_allowance}, "
            f"over_asking_weight={self.over_asking_weight}, denied_claim_weight={self.denied_claim_weight})"
        )


@runtime_checkable
class Verifier(Protocol):
    """Checks rubric items on a transcript: ``verify(case, transcript, items) -> list[float]``, one value in [0, 1]
    per item (1 = met; an LLM verifier may return probabilities)."""

    def verify(self, case: dict[str, Any], transcript: str, items: Sequence[RubricItem]) -> list[float]: ...


class RuleVerifier:
    """Deterministic checks of each item's rule (``CHECKS``) over the parsed transcript
    (``grpolab.envs.consultation.parse_transcript``: questions, patient answers, diagnosis, the doctor's own
    statements; the patient's words never count as the doctor's)."""

    def verify(self, case: dict[str, Any], transcript: str, items: Sequence[RubricItem]) -> list[float]:
        t = parse_transcript(transcript)
        denied = [q for q, a in zip(t.questions, t.answers, strict=False) if is_denial(a) and keywords(q)]
        out = []
        for item in items:
            if item.check == "asks_about":
                met = any(_asks_about(q, item.target, case["findings"]) for q in t.questions)
            elif item.check == "diagnosis":
                met = t.primary_diagnosis is not None and mentions(t.primary_diagnosis, item.target)
            elif item.check == "mentions":
                met = mentions(t.statements, item.target)
            elif item.check == "max_questions":
                met = len(t.questions) > int(item.target)
            else:  # denied_claim
                said = keywords(t.statements)
                met = any(keywords(q) <= said for q in denied)
            out.append(1.0 if met else 0.0)
        return out

    def __repr__(self) -> str:
        return "RuleVerifier()"


def _asks_about(question: str, finding: str, findings: Sequence[str]) -> bool:
    if finding in findings:  # the patient's rule: the finding is among the question's most specific matches
        return findings.index(finding) in best_matches(question, findings)
    return asks_about(question, finding)


#: The question ``LLMVerifier`` asks per item: {transcript} is the completion, {criterion} the item's text.
VERIFIER_TEMPLATE = (
    "A doctor consults a patient. Transcript:\n{transcript}\n"
    "Criterion: the doctor {criterion}.\nIs the criterion met? Answer yes or no.\nAnswer: "
)


class LLMVerifier:
    """Rubric items checked by any local ``transformers`` causal LM: one yes/no question per item
    (``template.format(transcript=..., criterion=item.text)``); the item is met when the next-token logit of the
    ``yes`` token exceeds that of the ``no`` token (``soft=True``: its probability ``σ(l_yes − l_no)`` instead).

    Args:
        model: a built-in name or local folder (``grpolab.models.load_pretrained``; no downloads) or a model object
            (then ``tokenizer`` is required).
        yes, no: the answer strings whose FIRST token is compared (default "yes" / "no"; for BPE tokenizers that mark
            spaces, e.g. " yes"). Their first tokens must differ.
        template: the question (default ``VERIFIER_TEMPLATE``), with ``{transcript}`` and ``{criterion}``.
        soft: return probabilities instead of 0/1 (default False).
        batch_size: questions per forward pass (default 16).

    Prompts longer than the model's position limit are cut from the left (the criterion stays). Runs in eval mode
    under ``torch.no_grad``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        yes: str = "yes",
        no: str = "no",
        template: str = VERIFIER_TEMPLATE,
        soft: bool = False,
        batch_size: int = 16,
    ) -> None:
        if isinstance(model, str):
            from grpolab.models import load_pretrained

            model, loaded = load_pretrained(model)
            tokenizer = tokenizer or loaded
        if tokenizer is None:
            raise ValueError("LLMVerifier: pass the tokenizer with a model object (or give a model folder instead)")
        check_int("batch_size", batch_size, minimum=1, where="LLMVerifier")
        if "{transcript}" not in template or "{criterion}" not in template:
            raise ValueError("LLMVerifier: the template needs the fields {transcript} and {criterion}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.yes_id, self.no_id = yes_no_token_ids(tokenizer, yes, no, owner="LLMVerifier")
        self.template, self.soft, self.batch_size = template, bool(soft), batch_size

    def verify(self, case: dict[str, Any], transcript: str, items: Sequence[RubricItem]) -> list[float]:
        if not items:
            return []
        prompts = [self.template.format(transcript=transcript, criterion=item.text) for item in items]
        margin = yes_no_margins(
            self.model, self.tokenizer, prompts, self.yes_id, self.no_id, batch_size=self.batch_size
        )  # [K]
        values = margin.sigmoid() if self.soft else (margin > 0).float()  # [K]
        return [float(v) for v in values]

    def __repr__(self) -> str:
        return f"LLMVerifier({type(self.model).__name__}, yes_id={self.yes_id}, no_id={self.no_id}, soft={self.soft})"


class RubricScorer:
    """A generator and a verifier, with the verdicts of recent (case, transcript) pairs cached so that the total
    reward and the per-dimension rewards of one batch verify each transcript once."""

    def __init__(self, generator: Callable[[dict], list[RubricItem]] | None = None, verifier: Verifier | None = None):
        self.generator = RubricGenerator() if generator is None else generator
        self.verifier = RuleVerifier() if verifier is None else verifier
        if not isinstance(self.verifier, Verifier):
            raise ValueError(f"verifier must have verify(case, transcript, items), got {type(self.verifier).__name__}")
        self._cache: dict[str, tuple[list[RubricItem], list[float]]] = {}

    def judge(self, row: dict[str, Any], transcript: str) -> tuple[list[RubricItem], list[float]]:
        """The rubric of ``row``'s case and each item's verdict on ``transcript``."""
        case = case_of(row)
        key = json.dumps([case, transcript], sort_keys=True)
        if key not in self._cache:
            if len(self._cache) > 4096:  # bounded: a batch's functions run back to back
                self._cache.clear()
            items = list(self.generator(case))
            verdicts = [float(v) for v in self.verifier.verify(case, transcript, items)]
            if len(verdicts) != len(items):
                raise ValueError(f"{self.verifier!r} returned {len(verdicts)} verdicts for {len(items)} rubric items")
            self._cache[key] = (items, verdicts)
        return self._cache[key]


class RubricReward:
    """TRL-convention reward function ``fn(prompts, completions, **columns) -> list[float | None]`` over the case
    columns (``CASE_COLUMNS``, and ``presented`` when there).

    With ``dimension=None`` (named ``rubric``) it returns ``rubric_score``; with a dimension (named
    ``rubric_<dimension>``) the ``dimension_score`` of that dimension's items (None where the case has none).
    """

    def __init__(self, scorer: RubricScorer, dimension: str | None = None) -> None:
        self.scorer, self.dimension = scorer, dimension
        self.__name__ = "rubric" if dimension is None else f"rubric_{dimension}"
        self.__qualname__ = self.__name__

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        missing = [c for c in CASE_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"reward {self.__name__!r} reads the case columns {list(CASE_COLUMNS)}; missing {missing}")
        out: list[float | None] = []
        for b, completion in enumerate(completions):
            row = {c: columns[c][b] for c in (*CASE_COLUMNS, PRESENTED) if c in columns}
            items, verdicts = self.scorer.judge(row, completion_text(completion))
            if self.dimension is None:
                out.append(rubric_score([i.weight for i in items], verdicts))
            else:
                chosen = [(i.weight, v) for i, v in zip(items, verdicts, strict=True) if i.dimension == self.dimension]
                out.append(dimension_score([w for w, _ in chosen], [v for _, v in chosen]))
        return out

    def __repr__(self) -> str:
        return f"RubricReward({self.__name__!r}, {self.scorer.generator!r}, {self.scorer.verifier!r})"


#: The dimensions ``RubricGenerator`` writes, in order.
DIMENSIONS = ("history", "diagnosis", "differential", "efficiency", "honesty")


def rubric_rewards(
    *,
    generator: Callable[[dict], list[RubricItem]] | None = None,
    verifier: Verifier | None = None,
    dimensions: bool | Sequence[str] = True,
) -> list[RubricReward]:
    """The rubric reward (first) and, with ``dimensions``, one reward per dimension (``True``: ``DIMENSIONS``), all
    sharing one ``RubricScorer`` (each transcript is verified once). Give the dimension rewards weight 0 in a task
    to log them (``reward/rubric_history`` ...) without changing the reward.

    - ``generator``: ``case -> list[RubricItem]`` (default ``RubricGenerator()``).
    - ``verifier``: a ``Verifier`` (default ``RuleVerifier()``; ``LLMVerifier(model_folder)`` for an LLM judge).
    """
    scorer = RubricScorer(generator, verifier)
    names = DIMENSIONS if dimensions is True else (() if dimensions is False else tuple(dimensions))
    return [RubricReward(scorer), *(RubricReward(scorer, d) for d in names)]


def diagnosis_accuracy(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
    """1.0 when the transcript's primary diagnosis (first entry of its last ``<dx>...</dx>``) mentions every content
    word of the case's ``diagnosis`` column, else 0.0 (also without a diagnosis). The consultation task's accuracy.

    >>> diagnosis_accuracy(["p", "p"], ["<dx>acute appendicitis</dx>", "<dx>gastritis; appendicitis</dx>"],
    ...                    diagnosis=["appendicitis", "appendicitis"])
    [1.0, 0.0]
    """
    if "diagnosis" not in columns:
        raise ValueError(f"diagnosis_accuracy reads the 'diagnosis' column; columns are {sorted(columns)}")
    gold = columns["diagnosis"]
    if len(gold) != len(completions):
        raise ValueError(f"diagnosis_accuracy: {len(completions)} completions but {len(gold)} diagnoses")
    out = []
    for completion, dx in zip(completions, gold, strict=True):
        primary = parse_transcript(completion_text(completion)).primary_diagnosis
        out.append(1.0 if primary is not None and mentions(primary, str(dx)) else 0.0)
    return out


__all__ = [
    "CASE_COLUMNS",
    "CHECKS",
    "DIMENSIONS",
    "PRESENTED",
    "VERIFIER_TEMPLATE",
    "LLMVerifier",
    "RubricGenerator",
    "RubricItem",
    "RubricReward",
    "RubricScorer",
    "RuleVerifier",
    "Verifier",
    "case_of",
    "diagnosis_accuracy",
    "dimension_score",
    "rubric_rewards",
    "rubric_score",
]
