"""Simulated consultations: a patient simulator answers the doctor-model's questions, turn by turn.

Baichuan-M2 (Baichuan-M2: Scaling Medical Capability with Large Verifier System, arXiv 2509.02208) trains its policy
in multi-turn consultations against a *Patient Simulator* built from de-identified records and scores whole
consultations with case-specific rubrics (``grpolab.rewards.rubric``). This module is the simulator side, at toy
scale: a case (the schema of ``grpolab.data.clinical.generate_cases``) holds the patient's ``findings``; the patient
knows them and reveals one only when the doctor asks about it.

The doctor's turn format (the contract between the policy, this environment and the rubric verifier):

- a question: ``<ask>cough?</ask>``. ``</ask>`` is a stop string, so the turn ends there and the patient answers;
  the answer is appended as ``<pt>...</pt>`` (environment tokens, masked out of the loss) and counts as a tool call;
- the diagnosis: ``<dx>pneumonia</dx>``, which ends the episode (``</dx>`` is a stop string too, so the episode ends
  even if the model would not write EOS next); a turn that ends with EOS without a diagnosis ends the episode
  without one. Differentials may be written in the diagnosis after the primary one: ``<dx>pneumonia; bronchitis</dx>``.

A whole transcript then reads ``<ask>cough?</ask><pt>yes: productive cough</pt><ask>rash?</ask><pt>no</pt>
<dx>pneumonia</dx>``. ``parse_transcript`` splits it back into questions, answers and the diagnosis.

Two simulators share the ``PatientSimulator`` protocol (``answer(case, question) -> str``):

- ``RulePatient``: keyword matching of the question against the findings (deterministic, no model);
- ``LLMPatient``: any local ``transformers`` causal LM given a persona prompt built from the case.

>>> case = {"findings": ["productive cough", "fever for 3 days"], "diagnosis": "pneumonia"}
>>> patient = RulePatient()
>>> patient.answer(case, "do you cough?"), patient.answer(case, "any rash?"), patient.answer(case, "hm?")
('yes: productive cough', 'no', 'not that I know')
>>> env = ConsultationEnv(patient)
>>> state = env.reset(case)
>>> env.step(state, case, "<ask>fever?</ask>")
Reply(text='<pt>yes: fever for 3 days</pt>', done=False, tool_call=True)
>>> env.step(state, case, "<dx>pneumonia</dx>"), state["revealed"]
(Reply(text='', done=True, tool_call=False), [1])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from grpolab.core.checks import check_int
from grpolab.envs.base import Environment, Reply

#: Tags of the doctor's turns and of the patient's replies.
ASK_OPEN, ASK_CLOSE = "<ask>", "</ask>"
DX_OPEN, DX_CLOSE = "<dx>", "</dx>"
PATIENT_OPEN, PATIENT_CLOSE = "<pt>", "</pt>"

#: Answers of the rule-based patient: to a question about nothing it has, and to a question with no content word.
DENIAL, UNSURE = "no", "not that I know"
#: Prefix of an answer that reveals findings.
AFFIRM = "yes: "

# Words that carry no clinical content: a question made only of these matches no finding.
_STOPWORDS = frozenset(
    """a about above after again all am an and any anything are as at be been before being but by can could did do
    does doing during each else ever feel feeling felt few for from get got had has have having how i if in into is
    it its just lately like me more most much my no nor not now of off on once or other our out over own please
    recent recently same should so some such than that the their them then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would yes you your
    symptom symptoms problem problems tell notice noticed""".split()  # noqa: SIM905 (a word list reads better so)
)
_WORD = re.compile(r"[a-z0-9]+")
_ASK = re.compile(re.escape(ASK_OPEN) + r"(.*?)" + re.escape(ASK_CLOSE), re.S)
_PATIENT = re.compile(re.escape(PATIENT_OPEN) + r"(.*?)(?:" + re.escape(PATIENT_CLOSE) + r"|$)", re.S)
_DX = re.compile(re.escape(DX_OPEN) + r"(.*?)(?:" + re.escape(DX_CLOSE) + r"|$)", re.S)


def _stem(word: str) -> str:
    """A crude suffix stripper so that "coughs"/"coughing"/"cough" match (applied alike to questions and findings)."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def keywords(text: str) -> frozenset[str]:
    """The content words of ``text``: lower-cased alphanumeric words of 3+ characters (or digits), stop words
    removed, crudely stemmed.

    >>> sorted(keywords("Do you have any coughing or fevers?"))
    ['cough', 'fever']
    """
    words = _WORD.findall(text.lower())
    return frozenset(_stem(w) for w in words if w not in _STOPWORDS and (len(w) >= 3 or w.isdigit()))


def asks_about(question: str, finding: str) -> bool:
    """Whether ``question`` asks about ``finding``: they share a content word (``keywords``).

    The rule both ``RulePatient`` (which findings a question reveals) and the rubric's "asks about" items use.

    >>> asks_about("cough?", "productive cough"), asks_about("any pain?", "productive cough")
    (True, False)
    """
    return bool(keywords(question) & keywords(finding))


def best_matches(question: str, findings: Sequence[str]) -> list[int]:
    """Indices (in case order) of the findings ``question`` asks about most specifically: those sharing the most
    content words with it (at least one). "chest pain?" picks "chest pain" over "arm pain"; "pain?" picks both.

    >>> findings = ["arm pain", "chest pain", "fever"]
    >>> best_matches("chest pain?", findings), best_matches("pain?", findings), best_matches("rash?", findings)
    ([1], [0, 1], [])
    """
    asked = keywords(question)
    overlap = [len(asked & keywords(f)) for f in findings]
    best = max(overlap, default=0)
    return [i for i, n in enumerate(overlap) if n == best] if best > 0 else []


def mentions(text: str, phrase: str) -> bool:
    """Whether ``text`` mentions ``phrase``: every content word of ``phrase`` occurs in ``text`` (False for a phrase
    without content words).

    >>> mentions("likely community acquired pneumonia", "pneumonia"), mentions("chest pain", "chest infection")
    (True, False)
    """
    wanted = keywords(phrase)
    return bool(wanted) and wanted <= keywords(text)


@dataclass
class Transcript:
    """A consultation transcript split into its parts (``parse_transcript``).

    - ``questions``: the doctor's questions (contents of ``<ask>...</ask>``), in order.
    - ``answers``: the patient's replies (contents of ``<pt>...</pt>``), in order.
    - ``diagnosis``: the content of the last ``<dx>...</dx>`` (an unclosed final ``<dx>`` counts), None without one.
    - ``statements``: the doctor's own text outside questions and patient replies (the diagnosis included): what
      the doctor *asserts*.
    """

    questions: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    diagnosis: str | None = None
    statements: str = ""

    @property
    def primary_diagnosis(self) -> str | None:
        """The first entry of the diagnosis (split at ``;`` or ``,``): the diagnosis the doctor commits to."""
        if self.diagnosis is None:
            return None
        return re.split(r"[;,\n]", self.diagnosis, maxsplit=1)[0].strip()


def parse_transcript(text: str) -> Transcript:
    """Split a consultation transcript (the whole completion) into questions, patient answers and the diagnosis.

    >>> t = parse_transcript("<ask>cough?</ask><pt>yes: dry cough</pt><dx>asthma; bronchitis</dx>")
    >>> t.questions, t.answers, t.diagnosis, t.primary_diagnosis
    (['cough?'], ['yes: dry cough'], 'asthma; bronchitis', 'asthma')
    """
    answers = [m.strip() for m in _PATIENT.findall(text)]
    doctor = _PATIENT.sub(" ", text)  # the patient's words are never the doctor's
    questions = [m.strip() for m in _ASK.findall(doctor)]
    diagnoses = _DX.findall(doctor)
    statements = _ASK.sub(" ", doctor).replace(DX_OPEN, " ").replace(DX_CLOSE, " ")
    diagnosis = diagnoses[-1].strip() if diagnoses else None
    return Transcript(questions=questions, answers=answers, diagnosis=diagnosis, statements=statements)


def is_denial(answer: str) -> bool:
    """Whether a patient answer denies (reveals nothing): it does not start with ``AFFIRM`` ("yes")."""
    return not answer.strip().lower().startswith(AFFIRM.strip().rstrip(":"))


def _findings(case: dict[str, Any]) -> list[str]:
    findings = case.get("findings")
    if not isinstance(findings, (list, tuple)) or not all(isinstance(f, str) for f in findings):
        raise ValueError(
            f"a consultation case needs 'findings': a list of strings (what the patient knows), got {findings!r} "
            f"in the case with columns {sorted(case)}"
        )
    return list(findings)


@runtime_checkable
class PatientSimulator(Protocol):
    """A simulated patient: ``answer(case, question) -> str``, the patient's reply (plain text, no tags) to the
    doctor's ``question`` in the consultation of ``case`` (a dict of the case schema: ``findings`` ...).

    Simulators must be stateless across calls (many episodes run at once); what was asked before is in the
    environment's per-episode state."""

    def answer(self, case: dict[str, Any], question: str) -> str: ...


class RulePatient:
    """A deterministic patient: reveals the findings the question asks about most specifically (``best_matches``:
    the most shared content words, at least one), answers ``"no"`` to a question about something it does not have
    and ``"not that I know"`` to a question without any content word.

    - ``max_reveal``: the most findings one answer reveals (default 2; usually 1 to 3), so that a vague question
      ("pain?") does not dump the whole record; the first best matches in case order are revealed.
    """

    def __init__(self, *, max_reveal: int = 2) -> None:
        check_int("max_reveal", max_reveal, minimum=1, where="RulePatient")
        self.max_reveal = max_reveal

    def matches(self, case: dict[str, Any], question: str) -> list[int]:
        """Indices of the findings ``question`` reveals (at most ``max_reveal``, in case order)."""
        return best_matches(question, _findings(case))[: self.max_reveal]

    def answer(self, case: dict[str, Any], question: str) -> str:
        if not keywords(question):
            return UNSURE
        found = self.matches(case, question)
        if not found:
            return DENIAL
        findings = _findings(case)
        return AFFIRM + ", ".join(findings[i] for i in found)

    def __repr__(self) -> str:
        return f"RulePatient(max_reveal={self.max_reveal})"


#: The persona prompt of ``LLMPatient``: {findings} is the case's findings joined with "; ", {vignette} its vignette.
PERSONA = (
    "You are a patient. {vignette}\nWhat you have: {findings}.\n"
    "Answer the doctor briefly. Say yes and the finding if asked about it, otherwise say no.\n"
)


class LLMPatient:
    """A patient played by any local ``transformers`` causal LM given a persona prompt built from the case.

    The prompt is ``persona.format(vignette=..., findings=...)`` then ``"Doctor: <question>\\nPatient:"``; the reply
    is the model's next at most ``max_new_tokens`` tokens, cut at the first newline and stripped (an empty reply
    becomes ``"not that I know"``). The prompt is cut from the left to fit the model's position limit.

    - ``model``: a built-in name or local folder (loaded with ``grpolab.models.load_pretrained``; no downloads), or a
      model object (then ``tokenizer`` is required).
    - ``max_new_tokens``: the reply limit (default 32; usually 16 to 64; characters for the character tokenizer).
    - ``temperature``: 0 (default) decodes greedily, so the same question gets the same answer; > 0 samples.
    - ``persona``: the persona template (default ``PERSONA``).

    The model is used in eval mode under ``torch.no_grad``; it never trains.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        persona: str = PERSONA,
    ) -> None:
        if isinstance(model, str):
            from grpolab.models import load_pretrained

            model, loaded = load_pretrained(model)
            tokenizer = tokenizer or loaded
        if tokenizer is None:
            raise ValueError("LLMPatient: pass the tokenizer with a model object (or give a model folder instead)")
        check_int("max_new_tokens", max_new_tokens, minimum=1, where="LLMPatient")
        if not temperature >= 0:
            raise ValueError(f"LLMPatient: temperature must be >= 0 (0 = greedy), got {temperature}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_new_tokens, self.temperature, self.persona = max_new_tokens, float(temperature), persona

    def prompt(self, case: dict[str, Any], question: str) -> str:
        """The text the model continues: the persona, then the doctor's question."""
        persona = self.persona.format(vignette=case.get("vignette", ""), findings="; ".join(_findings(case)))
        return f"{persona}Doctor: {question}\nPatient:"

    def answer(self, case: dict[str, Any], question: str) -> str:
        import torch

        ids = self.tokenizer(self.prompt(case, question), return_tensors="pt").input_ids  # [1, L]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None:
            ids = ids[:, -max(1, limit - self.max_new_tokens) :]  # [1, L']: keep the question, drop the persona's head
        ids = ids.to(next(self.model.parameters()).device)
        sample = self.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=sample,
                temperature=self.temperature if sample else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )  # [1, L' + n]
        text = self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        reply = text.split("\n", 1)[0].strip()
        return reply or UNSURE

    def __repr__(self) -> str:
        return f"LLMPatient({type(self.model).__name__}, max_new_tokens={self.max_new_tokens})"


class ConsultationEnv(Environment):
    """A consultation: the doctor-model asks (``<ask>...</ask>``), the simulated patient answers (``<pt>...</pt>``),
    until the doctor states a diagnosis (``<dx>...</dx>``), writes EOS, or the turns run out.

    - ``patient``: a ``PatientSimulator`` (default ``RulePatient()``).
    - ``max_turns``: the most doctor turns per episode (default 6: up to 5 questions and a diagnosis; usually 4 to
      12). Every question counts as a tool call (``Reply.tool_call``), so ``extras["tool_calls"]`` is the number of
      questions asked.
    - ``max_observation_tokens``: replies longer than this are cut (default 64).

    Per-episode state (``reset``): ``{"asked": [questions], "answers": [replies], "revealed": [finding indices, in
    the order first revealed], "denied": number of denials, "diagnosis": str | None}``. A finding counts as
    revealed when its text occurs in a reply (this works for any simulator).
    """

    stop = (ASK_CLOSE, DX_CLOSE)

    def __init__(
        self, patient: PatientSimulator | None = None, *, max_turns: int = 6, max_observation_tokens: int = 64
    ) -> None:
        patient = RulePatient() if patient is None else patient
        if not isinstance(patient, PatientSimulator):
            raise ValueError(
                f"ConsultationEnv: patient must have answer(case, question) -> str, got {type(patient).__name__}"
            )
        check_int("max_turns", max_turns, minimum=1, where="ConsultationEnv")
        check_int("max_observation_tokens", max_observation_tokens, minimum=1, where="ConsultationEnv")
        self.patient, self.max_turns, self.max_observation_tokens = patient, max_turns, max_observation_tokens

    def reset(self, row: dict[str, Any]) -> dict[str, Any]:
        _findings(row)  # a row that is not a consultation case fails at the start of its episode
        return {"asked": [], "answers": [], "revealed": [], "denied": 0, "diagnosis": None}

    def step(self, state: dict[str, Any], row: dict[str, Any], turn: str) -> Reply:
        stripped = turn.rstrip()
        if stripped.endswith(DX_CLOSE):  # the diagnosis ends the consultation; nothing to answer
            state["diagnosis"] = parse_transcript(stripped).diagnosis
            return Reply(text="", done=True)
        question = _last_question(stripped)
        answer = str(self.patient.answer(row, question)).replace(PATIENT_CLOSE, "").strip()
        state["asked"].append(question)
        state["answers"].append(answer)
        lowered = answer.lower()
        for i, finding in enumerate(_findings(row)):
            if finding.lower() in lowered and i not in state["revealed"]:
                state["revealed"].append(i)
        state["denied"] += int(is_denial(answer))
        return Reply(text=f"{PATIENT_OPEN}{answer}{PATIENT_CLOSE}", tool_call=True)

    def __repr__(self) -> str:
        return f"ConsultationEnv({self.patient!r}, max_turns={self.max_turns})"


def _last_question(turn: str) -> str:
    """The question of a turn ending with ``</ask>``: the text after the last ``<ask>`` (or the whole turn when the
    model forgot the opening tag)."""
    body = turn[: -len(ASK_CLOSE)] if turn.endswith(ASK_CLOSE) else turn
    return body.rsplit(ASK_OPEN, 1)[-1].strip()


def revealed_findings(case: dict[str, Any], answers: Sequence[str]) -> list[int]:
    """Indices of the case's findings whose text occurs in any of the patient's ``answers`` (order of the case).

    >>> revealed_findings({"findings": ["dry cough", "fever"]}, ["yes: fever", "no"])
    [1]
    """
    joined = " | ".join(a.lower() for a in answers)
    return [i for i, f in enumerate(_findings(case)) if f.lower() in joined]


__all__ = [
    "ASK_CLOSE",
    "ASK_OPEN",
    "DX_CLOSE",
    "DX_OPEN",
    "PATIENT_CLOSE",
    "PATIENT_OPEN",
    "PERSONA",
    "ConsultationEnv",
    "LLMPatient",
    "PatientSimulator",
    "RulePatient",
    "Transcript",
    "asks_about",
    "best_matches",
    "is_denial",
    "keywords",
    "mentions",
    "parse_transcript",
    "revealed_findings",
]
