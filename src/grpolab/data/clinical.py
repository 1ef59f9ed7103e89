"""Task ``clinical``: synthetic clinical-reasoning case vignettes, scored on accuracy, faithfulness, comprehensiveness.

The home of Clinical-R1's CRPO (preset ``crpo``; "Clinical-R1: Empowering Large Language Models for Faithful and
Comprehensive Reasoning with Clinical Objective Relative Policy Optimization", arXiv 2512.00601): a case is a
short vignette, and the model answers with the findings it relies on, its differential diagnoses and one final
diagnosis. Three verifiable rewards score the answer (``grpolab.rewards.clinical``).

**The rule base** (:data:`CONDITIONS`) is a small piece of invented, textbook-flavoured knowledge for a toy task,
not medical advice and not real patient data: 14 conditions, each with three key findings (its typical picture),
optional findings and two differential diagnoses (look-alikes, themselves conditions of the base). Findings are
shared between conditions (fever, headache, chest pain ...), so a diagnosis rests on a combination of findings.

**The generator** (:func:`generate_cases`, seeded) writes a case as follows: draw a condition; keep its three key
findings, or, with probability ``atypical`` (0.3), only two of them (an atypical presentation: the "textbook"
sign is missing and citing it would be a hallucination); add each optional finding with probability 0.4 and, with
probability ``distractor`` (0.35), one key finding of a differential (a misleading finding); shuffle. The
**decision rule** makes every case verifiable: the diagnosis is the condition with the most of its key findings
present, and the generator only keeps cases in which the drawn condition wins that count alone (no tie). A
patient's age (per-condition range) and sex are flavour; they decide nothing. Every vignette text is distinct.

**The case schema** (a row of the task and the keys of a case file; stable: a patient-simulator environment builds on
it)::

    {"id": "case-0-17",
     "prompt": "A 34 y/o man with fever, dry cough, headache and body aches.\\nGive findings, ddx and dx.\\n",
     "vignette": "A 34 y/o man with fever, dry cough, headache and body aches.",
     "findings": ["fever", "dry cough", "headache", "body aches"],   # every finding the vignette states
     "key_findings": ["fever", "dry cough", "body aches"],           # those the diagnosis rests on
     "diagnosis": "flu",
     "differentials": ["cold", "pneumonia"],
     "answer": "findings: fever, dry cough, body aches; ddx: cold, pneumonia; dx: flu",  # the gold completion
     "age": 34, "sex": "man"}                                        # generated cases only

``prompt`` is the vignette, a newline, :data:`INSTRUCTION` and a newline. ``answer`` (added when a case file lacks
it) is the reference completion in the format the rewards parse (``grpolab.rewards.clinical``)::

    findings: <key findings, in vignette order>; ddx: <differentials>; dx: <diagnosis>

**Own cases**: ``TASKS["clinical"](cases="my_cases.jsonl")`` reads a ``.jsonl`` / ``.json`` / ``.parquet`` file of
rows with the keys above (``answer``, ``age``, ``sex`` optional; any other keys are kept as columns) and checks
each row (:func:`check_cases`), with a ValueError naming the row and the fix. ``eval_cases`` gives a held-out
file; without it ``eval_fraction`` of the rows is held out.

Lengths: the built-in prompts are at most :data:`MAX_PROMPT_CHARS` characters and the gold answers at most
:data:`MAX_ANSWER_CHARS`, so prompt + answer + BOS + EOS fit in 256 positions of the character tokenizer
(``grpolab.models.char_tokenizer(chars=TEXT_CHARS)``); the task suggests :data:`MAX_NEW_TOKENS` new tokens.

>>> cases = generate_cases(2, seed=0)
>>> sorted(cases[0]) == sorted(CASE_KEYS + ("answer", "age", "sex"))
True
>>> task = clinical_task(n_train=50, n_eval=10)
>>> len(task.train), len(task.eval), task.reward_weights
(50, 10, [1.0, 0.5, 0.5])
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpolab.data.files import load_rows, split_rows
from grpolab.data.task import TASKS, Task
from grpolab.rewards.clinical import REWARDS, dx_accuracy, format_answer, normalise

#: The keys every case has (the schema other components build on); generated cases add ``answer``, ``age``, ``sex``.
CASE_KEYS = ("id", "prompt", "vignette", "findings", "key_findings", "diagnosis", "differentials")
#: The instruction after the vignette.
INSTRUCTION = "Give findings, ddx and dx."
#: Default reward weights by reward name: accuracy first, the two process objectives together weigh as much.
DEFAULT_WEIGHTS: Mapping[str, float] = {"dx_accuracy": 1.0, "faithfulness": 0.5, "comprehensiveness": 0.5}
#: The default split (the one the shipped ``tiny-clinical`` model was warm-started on: train split only).
DEFAULT_N_TRAIN, DEFAULT_N_EVAL, DEFAULT_SEED = 2000, 200, 0
#: Longest built-in prompt and gold answer (characters); checked by the tests over many seeds.
MAX_PROMPT_CHARS, MAX_ANSWER_CHARS = 150, 100
#: Generation limit suggested to the trainer: the longest built-in answer + EOS (96), with slack; with the longest
#: prompt + BOS (151) it stays within the 256 positions of ``tiny-clinical``.
MAX_NEW_TOKENS = 104
#: Characters a finding or condition name may not hold: they separate the fields and items of an answer.
FORBIDDEN = (",", ";", ":")


@dataclass(frozen=True)
class Condition:
    """One condition of the rule base: its name, key findings (all present in a typical case), optional findings,
    differential diagnoses (names of other conditions) and the patient age range of its cases."""

    name: str
    key: tuple[str, ...]
    optional: tuple[str, ...]
    differentials: tuple[str, ...]
    ages: tuple[int, int] = (18, 75)


#: The rule base: invented, simplified textbook-style knowledge for a toy task (no real patient data).
CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "pneumonia", ("fever", "wet cough", "crackles"), ("chest pain", "short breath", "chills"), ("flu", "asthma")
    ),
    Condition(
        "flu", ("fever", "dry cough", "body aches"), ("headache", "sore throat", "chills"), ("cold", "pneumonia")
    ),
    Condition("cold", ("runny nose", "sneezing", "sore throat"), ("dry cough", "headache"), ("flu", "pneumonia")),
    Condition("asthma", ("wheeze", "short breath", "chest tightness"), ("dry cough",), ("pneumonia", "angina")),
    Condition(
        "appendicitis",
        ("right lower pain", "fever", "nausea"),
        ("vomiting", "no appetite"),
        ("gastroenteritis", "kidney stone"),
    ),
    Condition("gastroenteritis", ("diarrhea", "vomiting", "cramps"), ("fever", "nausea"), ("appendicitis", "reflux")),
    Condition(
        "reflux",
        ("heartburn", "sour taste", "pain after meals"),
        ("chest pain", "dry cough"),
        ("angina", "heart attack"),
    ),
    Condition(
        "kidney stone",
        ("flank pain", "blood in urine", "colicky pain"),
        ("nausea", "vomiting"),
        ("uti", "appendicitis"),
    ),
    Condition(
        "uti",
        ("burning urine", "frequent urine", "pelvic pain"),
        ("fever", "blood in urine"),
        ("kidney stone", "appendicitis"),
    ),
    Condition(
        "migraine",
        ("headache", "aura", "light sensitivity"),
        ("nausea", "vomiting"),
        ("tension headache", "meningitis"),
    ),
    Condition(
        "meningitis",
        ("headache", "fever", "stiff neck"),
        ("light sensitivity", "confusion", "vomiting"),
        ("migraine", "flu"),
    ),
    Condition("tension headache", ("headache", "band pain", "stress"), ("fatigue",), ("migraine", "meningitis")),
    Condition(
        "heart attack",
        ("chest pain", "sweating", "arm pain"),
        ("nausea", "short breath"),
        ("angina", "reflux"),
        (45, 85),
    ),
    Condition(
        "angina",
        ("chest pain", "pain on exertion", "relief at rest"),
        ("short breath", "chest tightness"),
        ("heart attack", "reflux"),
        (45, 85),
    ),
)
#: Conditions by name.
BY_NAME: Mapping[str, Condition] = {c.name: c for c in CONDITIONS}


def check_rule_base(conditions: Sequence[Condition] = CONDITIONS) -> None:
    """Raise ValueError unless the rule base is well formed: distinct names, three distinct key findings each,
    differentials that are other conditions of the base, no separator characters (``, ; :``) in any name.

    >>> check_rule_base()
    """
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise ValueError(f"condition names repeat: {names}")
    for c in conditions:
        words = [c.name, *c.key, *c.optional, *c.differentials]
        if any(ch in w for w in words for ch in FORBIDDEN) or any(w != normalise(w) for w in words):
            raise ValueError(f"{c.name}: names must be normalised (lower case) and free of {FORBIDDEN}")
        if len(set(c.key)) != 3 or set(c.key) & set(c.optional):
            raise ValueError(f"{c.name}: needs 3 distinct key findings, none of them optional")
        if c.name in c.differentials or not set(c.differentials) <= set(names):
            raise ValueError(f"{c.name}: differentials {c.differentials} must be other conditions of the base")


def decide(findings: Sequence[str], conditions: Sequence[Condition] = CONDITIONS) -> str | None:
    """The decision rule: the condition with the most of its key findings among ``findings``; None on a tie.

    >>> decide(["fever", "dry cough", "headache", "body aches"]), decide(["headache", "fever"])
    ('flu', 'meningitis')
    >>> decide(["headache", "light sensitivity", "fever"]) is None  # migraine 2, meningitis 2
    True
    """
    present = set(findings)
    counts = sorted(((len(present & set(c.key)), c.name) for c in conditions), reverse=True)
    if counts[0][0] == 0 or counts[0][0] == counts[1][0]:
        return None
    return counts[0][1]


def join_findings(findings: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``.

    >>> join_findings(["fever"]), join_findings(["fever", "chills"]), join_findings(["a", "b", "c"])
    ('fever', 'fever and chills', 'a, b and c')
    """
    if len(findings) == 1:
        return findings[0]
    return f"{', '.join(findings[:-1])} and {findings[-1]}"


def format_vignette(age: int, sex: str, findings: Sequence[str]) -> str:
    """The vignette sentence.

    >>> format_vignette(34, "man", ["fever", "dry cough", "body aches"])
    'A 34 y/o man with fever, dry cough and body aches.'
    """
    return f"A {age} y/o {sex} with {join_findings(findings)}."


def format_prompt(vignette: str) -> str:
    """The prompt of a case: the vignette, then the instruction, each on its own line.

    >>> format_prompt("A 34 y/o man with fever.")
    'A 34 y/o man with fever.\\nGive findings, ddx and dx.\\n'
    """
    return f"{vignette}\n{INSTRUCTION}\n"


def make_case(
    case_id: str,
    condition: Condition,
    findings: Sequence[str],
    *,
    age: int,
    sex: str,
) -> dict[str, Any]:
    """A case row of ``condition`` presenting ``findings`` (in vignette order), with its prompt and gold answer.

    >>> case = make_case("c1", BY_NAME["flu"], ["fever", "dry cough", "headache", "body aches"], age=34, sex="man")
    >>> case["key_findings"], case["answer"]
    (['fever', 'dry cough', 'body aches'], 'findings: fever, dry cough, body aches; ddx: cold, pneumonia; dx: flu')
    """
    vignette = format_vignette(age, sex, findings)
    key = [f for f in findings if f in condition.key]  # in vignette order: the gold answer copies them in turn
    return {
        "id": case_id,
        "prompt": format_prompt(vignette),
        "vignette": vignette,
        "findings": list(findings),
        "key_findings": key,
        "diagnosis": condition.name,
        "differentials": list(condition.differentials),
        "answer": format_answer(key, condition.differentials, condition.name),
        "age": age,
        "sex": sex,
    }


def _draw_findings(condition: Condition, rng: random.Random, *, atypical: float, distractor: float) -> list[str]:
    key = list(condition.key)
    if rng.random() < atypical:  # an atypical presentation: one key finding is missing
        key.pop(rng.randrange(len(key)))
    extra = [f for f in condition.optional if rng.random() < 0.4]
    if rng.random() < distractor:  # a key finding of a look-alike: the case must be told apart from it
        other = BY_NAME[rng.choice(condition.differentials)]
        extra.append(rng.choice(other.key))
    findings = list(dict.fromkeys([*key, *extra]))  # a distractor may repeat a key finding (fever): keep one
    rng.shuffle(findings)
    return findings


def generate_cases(
    n: int, *, seed: int = DEFAULT_SEED, atypical: float = 0.3, distractor: float = 0.35
) -> list[dict[str, Any]]:
    """``n`` case rows (the schema of the module docstring) with distinct vignettes, drawn with ``random.Random(seed)``.

    - ``n``: number of cases (>= 1).
    - ``seed``: the generator's seed; the same seed gives the same cases on every machine. Default 0.
    - ``atypical``: probability that one of the three key findings is missing; default 0.3, usually 0 to 0.5.
    - ``distractor``: probability of adding one key finding of a differential; default 0.35, usually 0 to 0.5.

    Conditions are drawn uniformly. A draw whose diagnosis the decision rule (:func:`decide`) does not single out,
    or whose vignette repeats an earlier one, is redrawn, so every case is solvable from its findings alone.

    >>> [c["diagnosis"] for c in generate_cases(4, seed=1)] == [c["diagnosis"] for c in generate_cases(4, seed=1)]
    True
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"generate_cases: n must be a positive integer, got {n!r}")
    for name, p in (("atypical", atypical), ("distractor", distractor)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"generate_cases: {name} is a probability in [0, 1], got {p!r}")
    rng = random.Random(seed)
    cases: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(cases) < n:
        condition = rng.choice(CONDITIONS)
        findings = _draw_findings(condition, rng, atypical=atypical, distractor=distractor)
        age, sex = rng.randint(*condition.ages), rng.choice(("man", "woman"))
        if decide(findings) != condition.name:
            continue
        vignette = format_vignette(age, sex, findings)
        if vignette in seen:
            continue
        seen.add(vignette)
        cases.append(make_case(f"case-{seed}-{len(cases)}", condition, findings, age=age, sex=sex))
    return cases


#: Default rates of the imperfect answers of the warm-start data (``imperfect_answer``).
ERROR_RATES: Mapping[str, float] = {"wrong_dx": 0.3, "hallucinate": 0.5, "invent": 0.2, "miss": 0.25, "ddx": 0.25}


def imperfect_answer(
    case: Mapping[str, Any], rng: random.Random, *, rates: Mapping[str, float] = ERROR_RATES
) -> tuple[str, list[str]]:
    """A completion of a built-in ``case`` with clinically plausible mistakes, each drawn independently, and the
    kinds drawn; the warm-start data of ``tiny-clinical`` (``scripts/warmstart_clinical.py``), so that the shipped
    model errs in the ways the three rewards measure, while the right answer stays the most likely one.

    - ``wrong_dx``: the diagnosis is one of its differentials (a look-alike), with that condition's differentials.
    - ``hallucinate``: (atypical cases only) the missing textbook key finding is cited although the vignette lacks
      it: an invented finding (lowers faithfulness).
    - ``invent``: a key finding of a differential that the vignette lacks is cited (lowers faithfulness).
    - ``miss``: one cited key finding is left out (lowers comprehensiveness).
    - ``ddx``: one differential is replaced by another condition or dropped (lowers comprehensiveness).

    ``rates`` maps each kind to its probability (default :data:`ERROR_RATES`; missing kinds are 0). With no kind
    drawn the answer is the gold one.

    >>> case = make_case("c", BY_NAME["flu"], ["fever", "dry cough", "body aches"], age=30, sex="man")
    >>> imperfect_answer(case, random.Random(0), rates={})
    ('findings: fever, dry cough, body aches; ddx: cold, pneumonia; dx: flu', [])
    >>> imperfect_answer(case, random.Random(0), rates={"wrong_dx": 1.0})
    ('findings: fever, dry cough, body aches; ddx: flu, asthma; dx: pneumonia', ['wrong_dx'])
    """
    condition = BY_NAME[case["diagnosis"]]
    findings = list(case["findings"])
    cited = list(case["key_findings"])
    dx, ddx = condition.name, list(condition.differentials)
    kinds: list[str] = []

    def drawn(kind: str) -> bool:
        return rng.random() < rates.get(kind, 0.0)

    if drawn("wrong_dx"):
        kinds.append("wrong_dx")
        dx = rng.choice(condition.differentials)
        ddx = list(BY_NAME[dx].differentials)
    absent_keys = [k for k in condition.key if k not in findings]
    if absent_keys and drawn("hallucinate"):  # the "textbook" sign an atypical case lacks
        kinds.append("hallucinate")
        cited.insert(rng.randrange(len(cited) + 1), rng.choice(absent_keys))
    if len(case["key_findings"]) >= 2 and drawn("miss"):
        kinds.append("miss")
        cited.remove(rng.choice(case["key_findings"]))
    look_alike = [k for d in condition.differentials for k in BY_NAME[d].key if k not in findings and k not in cited]
    if look_alike and drawn("invent"):
        kinds.append("invent")
        cited.insert(rng.randrange(len(cited) + 1), rng.choice(look_alike))
    if drawn("ddx"):
        kinds.append("ddx")
        i = rng.randrange(len(ddx))
        others = [c.name for c in CONDITIONS if c.name != dx and c.name not in ddx]
        if rng.random() < 0.5:
            ddx.pop(i)
        else:
            ddx[i] = rng.choice(others)
    return format_answer(cited, ddx, dx), kinds


# ------------------------------------------------------------------------------------------------ own case files
def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and normalise(v) for v in value)


def check_cases(rows: Sequence[dict[str, Any]], *, source: str = "cases") -> list[dict[str, Any]]:
    """Check case rows against the schema and return them with ``answer`` filled in where absent.

    Raises ValueError naming the row (index and id) and the fix when: a key of :data:`CASE_KEYS` is missing; ``id``
    is not a non-empty string or repeats; ``vignette`` or ``diagnosis`` is not a non-empty string; ``findings`` or
    ``key_findings`` is not a non-empty list of non-empty strings; ``differentials`` is not a list of strings; a
    name holds ``,`` ``;`` or ``:`` (they separate the answer's fields and items); a key finding is not among the
    findings; the diagnosis is among its differentials; findings repeat; ``answer`` is present but not a string.

    >>> check_cases([{"id": "a", "prompt": "p", "vignette": "v", "findings": ["x"], "key_findings": ["x"],
    ...               "diagnosis": "d", "differentials": []}])[0]["answer"]
    'findings: x; ddx: ; dx: d'
    """
    out: list[dict[str, Any]] = []
    ids: set[str] = set()
    for i, row in enumerate(rows):
        where = f"{source}: row {i}" + (f" (id {row.get('id')!r})" if isinstance(row, dict) and "id" in row else "")
        if not isinstance(row, dict):
            raise ValueError(f"{where} is a {type(row).__name__}; a case is an object with keys {list(CASE_KEYS)}")
        missing = [k for k in CASE_KEYS if k not in row]
        if missing:
            raise ValueError(f"{where} lacks {missing}; a case has the keys {list(CASE_KEYS)} (see docs/clinical.md)")
        if not isinstance(row["id"], str) or not row["id"]:
            raise ValueError(f"{where}: 'id' must be a non-empty string, got {row['id']!r}")
        if row["id"] in ids:
            raise ValueError(f"{where}: id {row['id']!r} repeats an earlier row; give every case its own id")
        ids.add(row["id"])
        for key in ("vignette", "diagnosis"):
            if not isinstance(row[key], str) or not normalise(row[key]):
                raise ValueError(f"{where}: {key!r} must be a non-empty string, got {row[key]!r}")
        for key in ("findings", "key_findings"):
            if not _is_name_list(row[key]) or not row[key]:
                raise ValueError(f"{where}: {key!r} must be a non-empty list of non-empty strings, got {row[key]!r}")
        if not _is_name_list(row["differentials"]):
            raise ValueError(
                f"{where}: 'differentials' must be a list of non-empty strings, got {row['differentials']!r}"
            )
        names = [*row["findings"], *row["key_findings"], *row["differentials"], row["diagnosis"]]
        bad = [n for n in names if any(ch in n for ch in FORBIDDEN)]
        if bad:
            raise ValueError(
                f"{where}: {bad} hold one of {list(FORBIDDEN)}, which separate the fields and items of an answer "
                "('findings: a, b; ddx: x; dx: z'); rename them"
            )
        findings = [normalise(f) for f in row["findings"]]
        if len(set(findings)) != len(findings):
            raise ValueError(f"{where}: 'findings' repeats an item: {row['findings']}")
        absent = [k for k in row["key_findings"] if normalise(k) not in findings]
        if absent:
            raise ValueError(
                f"{where}: key findings {absent} are not among the findings {row['findings']}; every key finding "
                "must be a finding the vignette states"
            )
        if normalise(row["diagnosis"]) in {normalise(d) for d in row["differentials"]}:
            raise ValueError(
                f"{where}: the diagnosis {row['diagnosis']!r} is listed among its differentials; differentials are "
                "the alternatives set aside"
            )
        if "answer" in row and not isinstance(row["answer"], str):
            raise ValueError(f"{where}: 'answer' (the gold completion) must be a string, got {row['answer']!r}")
        case = dict(row)
        case.setdefault("answer", format_answer(row["key_findings"], row["differentials"], row["diagnosis"]))
        out.append(case)
    return out


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def load_cases(source: Any) -> list[dict[str, Any]]:
    """Case rows from a file (``.jsonl``, ``.json``, ``.parquet``) or a list of dicts, checked (:func:`check_cases`).

    Files are read with ``grpolab.data.files.load_rows`` (so the ``prompt`` column is checked there too).
    """
    return check_cases(load_rows(source), source=_describe(source))


def _weights(weights: Any) -> list[float]:
    names = [fn.__name__ for fn in REWARDS]
    if weights is None:
        values = dict(DEFAULT_WEIGHTS)
    elif isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"clinical: unknown reward names {unknown} in weights; the rewards are {names}")
        values = {**DEFAULT_WEIGHTS, **weights}
    elif isinstance(weights, Sequence) and not isinstance(weights, str) and len(weights) == len(names):
        values = dict(zip(names, weights, strict=True))
    else:
        raise ValueError(
            f"clinical: weights must be a mapping {{reward name: weight}} or a list of {len(names)} numbers "
            f"({', '.join(names)}), got {weights!r}"
        )
    for name, w in values.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            raise ValueError(f"clinical: the weight of {name} must be a number >= 0, got {w!r}")
    if not any(values.values()):
        raise ValueError("clinical: at least one reward weight must be > 0")
    return [float(values[n]) for n in names]


@TASKS.register("clinical")
def clinical_task(
    *,
    cases: Any = None,
    eval_cases: Any = None,
    n_train: int = DEFAULT_N_TRAIN,
    n_eval: int = DEFAULT_N_EVAL,
    eval_fraction: float = 0.1,
    seed: int = DEFAULT_SEED,
    weights: Any = None,
) -> Task:
    """The ``clinical`` task: case vignettes answered as ``findings: ...; ddx: ...; dx: ...``.

    - ``cases``: None (default) for the built-in generated cases, or a case file (``.jsonl`` / ``.json`` /
      ``.parquet``) or a list of case dicts with the schema of the module docstring.
    - ``eval_cases``: a held-out case file (own cases only); None holds out ``eval_fraction`` of ``cases``.
    - ``n_train``, ``n_eval``: sizes of the built-in train and eval splits; defaults 2,000 and 200 (the shipped
      ``tiny-clinical`` model's split), usually 500 to 10,000 and 100 to 500. The eval cases are the first
      ``n_eval`` of ``generate_cases(n_eval + n_train, seed=seed)``, the train cases the rest: their vignettes are
      distinct texts (finding combinations do repeat: the task tests applying a small rule base). With ``seed=0``
      and ``n_eval <= 200`` the eval cases are held out from ``tiny-clinical``'s warm-start data.
    - ``eval_fraction``: fraction of own ``cases`` held out when ``eval_cases`` is None; default 0.1.
    - ``seed``: seed of the generator (built-in cases) or of the held-out split (own cases); default 0.
    - ``weights``: the reward weights, a mapping ``{"dx_accuracy": .., "faithfulness": .., "comprehensiveness":
      ..}`` (missing names keep their default) or a list of three numbers in that order; default
      :data:`DEFAULT_WEIGHTS` (1, 0.5, 0.5). CRPO's combination (the ``crpo`` preset's notes say why these).

    The accuracy (``eval/pass@1``) is :func:`grpolab.rewards.clinical.dx_accuracy`.
    """
    reward_weights = _weights(weights)
    if cases is None:
        if eval_cases is not None:
            raise ValueError("clinical: eval_cases goes with an own case file (cases=...); the built-in split is fixed")
        for name, value in (("n_train", n_train), ("n_eval", n_eval)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"clinical: {name} must be a positive integer, got {value!r}")
        rows = generate_cases(n_eval + n_train, seed=seed)
        train, held = rows[n_eval:], rows[:n_eval]
        info: dict[str, Any] = {
            "source": "generated",
            "n_train": n_train,
            "n_eval": n_eval,
            "held_out_from_tiny_clinical": seed == DEFAULT_SEED and n_eval <= DEFAULT_N_EVAL,
            "max_new_tokens": MAX_NEW_TOKENS,
        }
    else:
        train = load_cases(cases)
        if eval_cases is not None:
            held = load_cases(eval_cases)
        else:
            train, held = split_rows(train, eval_fraction=eval_fraction, seed=seed)
        keys = set(train[0])
        for label, split in (("train", train), ("eval", held)):
            for row in split:
                if set(row) != keys:  # the trainer builds reward columns from the first row's keys
                    raise ValueError(
                        f"clinical: {label} case {row['id']!r} has keys {sorted(row)} but the first case has "
                        f"{sorted(keys)}; give every case the same keys"
                    )
        longest = max(len(r["answer"]) for r in [*train, *held])
        info = {
            "source": _describe(cases),
            "eval_source": _describe(eval_cases)
            if eval_cases is not None
            else f"held out {eval_fraction} (seed {seed})",
            "max_new_tokens": longest + 8,  # characters bound tokens for the character tokenizer and real ones alike
        }
    info |= {"seed": seed, "weights": dict(zip([f.__name__ for f in REWARDS], reward_weights, strict=True))}
    info["sft_completion"] = "{answer}"
    return Task(
        name="clinical",
        train=train,
        eval=held,
        reward_funcs=list(REWARDS),
        reward_weights=reward_weights,
        accuracy=dx_accuracy,
        info=info,
    )


check_rule_base()

__all__ = [
    "BY_NAME",
    "CASE_KEYS",
    "CONDITIONS",
    "DEFAULT_WEIGHTS",
    "INSTRUCTION",
    "MAX_NEW_TOKENS",
    "Condition",
    "check_cases",
    "check_rule_base",
    "clinical_task",
    "decide",
    "generate_cases",
    "load_cases",
    "make_case",
]
