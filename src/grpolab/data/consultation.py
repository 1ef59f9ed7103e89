"""Task ``consultation``: simulated doctor-patient consultations scored by case-specific rubrics (Baichuan-M2's
verifier system at toy scale: arXiv 2509.02208).

Each row is a clinical case (the schema of ``grpolab.data.clinical.generate_cases``: ``id``, ``prompt``,
``vignette``, ``findings``, ``key_findings``, ``diagnosis``, ``differentials``). The policy is the doctor: it asks
``<ask>...</ask>`` questions that a simulated patient answers (``grpolab.envs.consultation.ConsultationEnv``; the
patient reveals a finding only when asked about it) and ends with ``<dx>diagnosis</dx>``. The transcript is scored by

- ``rubric`` (weight 1): ``Σ w·sat / Σ_{w>0} w`` over the case's rubric (``grpolab.rewards.rubric``): key findings
  asked about, the correct diagnosis, differentials mentioned; penalties for over-asking and for asserting a
  finding the patient denied;
- ``diagnosis_accuracy`` (weight 0, the task's accuracy): the primary diagnosis is right;
- ``rubric_<dimension>`` (weight 0, logged only; ``dimensions=False`` drops them): each dimension's share of points.

The clinical generator's prompts state the whole vignette (every finding), which would leave nothing to ask, so by
default (``prompt="complaint"``) each prompt is rewritten to the chief complaint only (``consultation_prompt``: who
the patient is, the case's first finding, the turn protocol); the complaint is recorded in the column ``presented``
and the rubric does not ask for it. ``prompt="case"`` keeps the rows' own prompts.

Cases come from ``grpolab.data.clinical.generate_cases(n, seed=...)`` (imported lazily) or from a case file
(``cases=path.jsonl``, any format ``grpolab.data.files.load_rows`` reads). The patient and the verifier are
rule-based by default; ``patient_model`` / ``verifier_model`` (a local folder or built-in name) switch to the
LLM-backed ones.
"""

from __future__ import annotations

from typing import Any

from grpolab.core.checks import check_choice, check_int, check_number
from grpolab.data.files import load_rows, split_rows
from grpolab.data.task import TASKS, Task
from grpolab.envs.consultation import ConsultationEnv, LLMPatient, RulePatient
from grpolab.rewards.rubric import (
    LLMVerifier,
    RubricGenerator,
    RuleVerifier,
    case_of,
    diagnosis_accuracy,
    rubric_rewards,
)

#: How a consultation prompt tells the doctor-model the turn protocol.
INSTRUCTIONS = "Ask with <ask>...</ask>; end with <dx>diagnosis</dx>.\n"
#: How the task writes the prompts: from the chief complaint only, or the case's own prompt.
PROMPTS = ("complaint", "case")


def consultation_prompt(case: dict[str, Any]) -> str:
    """The opening of a consultation: who the patient is and the chief complaint (the case's FIRST finding, in
    vignette order), then ``INSTRUCTIONS``. The other findings stay with the patient, to be asked about.

    >>> consultation_prompt({"findings": ["fever", "dry cough"], "age": 34, "sex": "man"})
    'A 34 y/o man complains of fever.\\nAsk with <ask>...</ask>; end with <dx>diagnosis</dx>.\\n'
    >>> consultation_prompt({"findings": ["wheeze"]}).split("\\n")[0]
    'A patient complains of wheeze.'
    """
    who = f"A {case['age']} y/o {case['sex']}" if "age" in case and "sex" in case else "A patient"
    return f"{who} complains of {case['findings'][0]}.\n{INSTRUCTIONS}"


def _as_consultation(row: dict[str, Any]) -> dict[str, Any]:
    """The case as a consultation row: the prompt states only the chief complaint (column ``presented``)."""
    return {**row, "prompt": consultation_prompt(row), "presented": [row["findings"][0]]}


def _generated_cases(n: int, seed: int) -> list[dict[str, Any]]:
    try:
        from grpolab.data.clinical import generate_cases
    except ImportError as e:
        raise ValueError(
            "task consultation: the clinical case generator (grpolab.data.clinical.generate_cases) is not available; "
            "pass cases=<file.jsonl> with rows {id, prompt, vignette, findings, key_findings, diagnosis, differentials}"
        ) from e
    return [dict(c) for c in generate_cases(n, seed=seed)]


def _check_cases(rows: list[dict[str, Any]], label: str) -> None:
    for i, row in enumerate(rows):
        if "prompt" not in row:
            raise ValueError(f"task consultation: {label} case {i} has no 'prompt' (columns {sorted(row)})")
        try:
            case = case_of(row)
            if not case["findings"]:
                raise ValueError("'findings' is empty: the patient has nothing to tell")
        except ValueError as e:
            raise ValueError(f"task consultation: {label} case {i} ({row.get('id', 'no id')}): {e}") from e


@TASKS.register("consultation")
def consultation_task(
    *,
    cases: Any = None,
    eval_cases: Any = None,
    n_train: int = 2000,
    n_eval: int = 200,
    eval_fraction: float = 0.1,
    seed: int = 0,
    max_turns: int = 6,
    max_reveal: int = 2,
    patient_model: str | None = None,
    patient_max_new_tokens: int = 32,
    verifier_model: str | None = None,
    yes: str = "yes",
    no: str = "no",
    key_finding_weight: float = 2.0,
    diagnosis_weight: float = 5.0,
    differential_weight: float = 1.0,
    question_allowance: int = 2,
    over_asking_weight: float = -2.0,
    denied_claim_weight: float = -3.0,
    dimensions: bool = True,
    prompt: str = "complaint",
) -> Task:
    """The consultation task (see the module docstring).

    Args:
        cases: a case file (.jsonl / .json / .parquet) or a list of case dicts; None generates ``n_eval + n_train``
            cases with ``grpolab.data.clinical.generate_cases`` (the first ``n_eval`` are held out, as the ``clinical``
            task does, so with its defaults they are held out from ``tiny-clinical``'s warm-start data too).
        eval_cases: a held-out case file; None holds out ``eval_fraction`` of ``cases``.
        n_train, n_eval: generated cases per split (defaults 2000 / 200, the ``clinical`` task's); ignored with
            ``cases``.
        eval_fraction: share of ``cases`` held out when ``eval_cases`` is None (default 0.1; usually 0.05 to 0.2).
        seed: the generator's seed and the split's (default 0).
        max_turns: doctor turns per consultation (default 6; usually 4 to 12).
        max_reveal: findings one answer of the rule-based patient reveals at most (default 2).
        patient_model: a local model folder or built-in name: the patient becomes an ``LLMPatient`` of that model
            (default None: ``RulePatient``).
        patient_max_new_tokens: the LLM patient's reply limit (default 32).
        verifier_model: a local model folder or built-in name: the rubric is checked by an ``LLMVerifier`` of that
            model (default None: ``RuleVerifier``).
        yes, no: the LLM verifier's answer tokens (defaults "yes" / "no").
        key_finding_weight, diagnosis_weight, differential_weight, question_allowance, over_asking_weight,
            denied_claim_weight: the ``RubricGenerator``'s weights (see there).
        dimensions: also log one reward per rubric dimension, with weight 0 (default True).
        prompt: "complaint" (default) replaces each case's prompt by ``consultation_prompt`` (who the patient is,
            the chief complaint, the turn protocol) and records the complaint in the column ``presented`` (no "asks
            about" rubric item for it): the clinical generator's prompts state every finding, which would leave
            nothing to ask. "case" keeps the rows' own prompts (they should explain the turn protocol).
    """
    check_int("max_turns", max_turns, minimum=1, where="task consultation")
    check_choice("task consultation", "prompt", prompt, PROMPTS)
    check_number("eval_fraction", eval_fraction, minimum=0.0, maximum=0.99, where="task consultation")
    if cases is None:
        check_int("n_train", n_train, minimum=1, where="task consultation")
        check_int("n_eval", n_eval, minimum=0, where="task consultation")
        rows = _generated_cases(n_eval + n_train, seed)
        train, held = rows[n_eval:], rows[:n_eval]  # the clinical task's split: its eval cases are held out here too
        source = f"grpolab.data.clinical.generate_cases({n_eval + n_train}, seed={seed})"
    else:
        rows = load_rows(cases)
        if eval_cases is not None:
            train, held = rows, load_rows(eval_cases)
        else:
            train, held = split_rows(rows, eval_fraction=eval_fraction, seed=seed)
        source = str(cases) if isinstance(cases, str) else type(cases).__name__
    _check_cases(train, "train")
    _check_cases(held, "eval")
    if prompt == "complaint":
        train, held = [_as_consultation(r) for r in train], [_as_consultation(r) for r in held]

    if patient_model is None:
        patient = RulePatient(max_reveal=max_reveal)
    else:
        patient = LLMPatient(patient_model, max_new_tokens=patient_max_new_tokens)
    verifier = RuleVerifier() if verifier_model is None else LLMVerifier(verifier_model, yes=yes, no=no)
    generator = RubricGenerator(
        key_finding_weight=key_finding_weight,
        diagnosis_weight=diagnosis_weight,
        differential_weight=differential_weight,
        question_allowance=question_allowance,
        over_asking_weight=over_asking_weight,
        denied_claim_weight=denied_claim_weight,
    )
    rubric, *per_dimension = rubric_rewards(generator=generator, verifier=verifier, dimensions=dimensions)
    funcs = [rubric, diagnosis_accuracy, *per_dimension]
    info = {
        "cases": source,
        "patient": repr(patient),
        "verifier": repr(verifier),
        "rubric": repr(generator),
        "max_turns": max_turns,
        "prompt": prompt,
    }
    return Task(
        name="consultation",
        train=train,
        eval=held,
        reward_funcs=funcs,
        reward_weights=[1.0] + [0.0] * (len(funcs) - 1),
        accuracy=diagnosis_accuracy,
        info=info,
        env=ConsultationEnv(patient, max_turns=max_turns),
    )
