"""Task clinical: the rule base, the seeded case generator, the schema, own case files and their errors."""

import json
import random

import pytest

from grpolab.data import TASKS
from grpolab.data.clinical import (
    BY_NAME,
    CASE_KEYS,
    CONDITIONS,
    INSTRUCTION,
    MAX_ANSWER_CHARS,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    Condition,
    check_cases,
    check_rule_base,
    clinical_task,
    decide,
    generate_cases,
    imperfect_answer,
    make_case,
)
from grpolab.models import TEXT_CHARS
from grpolab.rewards.clinical import REWARDS, parse_answer


def scores(case, text):
    cols = {k: [case[k]] for k in ("findings", "key_findings", "diagnosis", "differentials")}
    return tuple(fn([case["prompt"]], [text], **cols)[0] for fn in REWARDS)


# ------------------------------------------------------------------------------------------------ rule base
def test_rule_base_is_well_formed_and_small():
    check_rule_base()
    assert 8 <= len(CONDITIONS) <= 15
    for c in CONDITIONS:
        assert len(c.key) == 3 and len(c.differentials) == 2
        assert all(d in BY_NAME and d != c.name for d in c.differentials)
    # findings are shared between conditions: the diagnosis rests on combinations
    fever = [c.name for c in CONDITIONS if "fever" in c.key]
    assert len(fever) >= 3


@pytest.mark.parametrize(
    "bad",
    [
        (Condition("a", ("x", "y", "z"), (), ("b",)),),  # a differential outside the base
        (Condition("a", ("x", "y", "z"), (), ()), Condition("a", ("u", "v", "w"), (), ())),  # repeated name
        (Condition("a", ("x", "y"), (), ()),),  # two key findings
        (Condition("a", ("x, y", "z", "w"), (), ()),),  # a separator inside a name
        (Condition("a", ("x", "y", "z"), ("x",), ()),),  # a key finding also optional
    ],
)
def test_check_rule_base_rejects(bad):
    with pytest.raises(ValueError):
        check_rule_base(bad)


def test_decide_by_hand():
    assert decide(["fever", "wet cough", "crackles"]) == "pneumonia"  # 3 pneumonia keys vs 1 for flu
    assert decide(["fever", "dry cough", "body aches", "crackles"]) == "flu"  # flu 3, pneumonia 2
    assert decide(["fever", "wet cough", "dry cough", "body aches"]) == "flu"  # flu 3 (fever, dry, aches)
    assert decide(["headache", "fever"]) == "meningitis"  # meningitis 2; migraine, flu, appendicitis ... 1
    assert decide(["headache", "light sensitivity", "fever"]) is None  # migraine 2, meningitis 2: a tie
    assert decide(["rash"]) is None  # nothing known


# ------------------------------------------------------------------------------------------------ generator
def test_generator_is_deterministic_and_seeded():
    a, b = generate_cases(60, seed=3), generate_cases(60, seed=3)
    assert a == b
    assert generate_cases(30, seed=3) == a[:30]  # a prefix: n does not change earlier cases
    assert [c["vignette"] for c in generate_cases(60, seed=4)] != [c["vignette"] for c in a]
    assert a[0]["id"] == "case-3-0" and len({c["id"] for c in a}) == 60


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_generated_case_follows_the_schema(seed):
    cases = generate_cases(400, seed=seed)
    assert len({c["vignette"] for c in cases}) == 400  # distinct vignettes
    for case in cases:
        for key, kind in (("id", str), ("prompt", str), ("vignette", str), ("diagnosis", str)):
            assert isinstance(case[key], kind) and case[key]
        for key in ("findings", "key_findings", "differentials"):
            assert isinstance(case[key], list) and all(isinstance(x, str) for x in case[key])
        assert set(CASE_KEYS) <= set(case)
        condition = BY_NAME[case["diagnosis"]]
        assert case["prompt"] == f"{case['vignette']}\n{INSTRUCTION}\n"
        # every finding is stated in the vignette, in the listed order
        positions = [case["vignette"].index(f) for f in case["findings"]]
        assert positions == sorted(positions)
        # the key findings: the condition's key findings present, in vignette order; 2 or 3 of them
        assert case["key_findings"] == [f for f in case["findings"] if f in condition.key]
        assert len(case["key_findings"]) in (2, 3)
        assert case["differentials"] == list(condition.differentials)
        assert decide(case["findings"]) == case["diagnosis"]  # solvable by the decision rule alone
        # the gold answer scores 1 on all three rewards, and fits the tiny model
        assert scores(case, case["answer"]) == (1.0, 1.0, 1.0)
        assert len(case["prompt"]) <= MAX_PROMPT_CHARS and len(case["answer"]) <= MAX_ANSWER_CHARS
        assert set(case["prompt"] + case["answer"]) <= set(TEXT_CHARS)
    assert 1 + MAX_PROMPT_CHARS + MAX_NEW_TOKENS <= 256  # BOS + prompt + generation within the positions
    assert MAX_ANSWER_CHARS + 1 <= MAX_NEW_TOKENS  # the longest answer and EOS are never cut


def test_generator_covers_every_condition_and_both_presentations():
    cases = generate_cases(1000, seed=0)
    assert {c["diagnosis"] for c in cases} == set(BY_NAME)
    atypical = sum(len(c["key_findings"]) == 2 for c in cases) / len(cases)
    assert 0.15 < atypical < 0.4  # atypical=0.3 before the decision rule's redraws
    assert generate_cases(200, seed=0, atypical=0.0, distractor=0.0)[0]["key_findings"]  # options accepted
    assert all(len(c["key_findings"]) == 3 for c in generate_cases(200, seed=0, atypical=0.0))


@pytest.mark.parametrize(("kwargs", "match"), [({"n": 0}, "positive"), ({"n": 5, "atypical": 1.5}, "probability")])
def test_generator_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_cases(**kwargs)


def test_make_case_by_hand():
    case = make_case("c", BY_NAME["meningitis"], ["stiff neck", "confusion", "headache", "fever"], age=40, sex="woman")
    assert case["vignette"] == "A 40 y/o woman with stiff neck, confusion, headache and fever."
    assert case["key_findings"] == ["stiff neck", "headache", "fever"]
    assert case["answer"] == "findings: stiff neck, headache, fever; ddx: migraine, flu; dx: meningitis"


# ------------------------------------------------------------------------------------------------ imperfect answers
def test_imperfect_answers_err_in_the_measured_ways():
    rng = random.Random(0)
    typical = make_case("t", BY_NAME["flu"], ["fever", "dry cough", "body aches"], age=30, sex="man")
    atypical = make_case("a", BY_NAME["flu"], ["fever", "body aches", "sore throat"], age=30, sex="man")
    assert imperfect_answer(typical, rng, rates={}) == (typical["answer"], [])
    text, kinds = imperfect_answer(typical, rng, rates={"wrong_dx": 1.0})
    assert kinds == ["wrong_dx"] and scores(typical, text)[0] == 0.0
    assert parse_answer(text).dx in BY_NAME["flu"].differentials
    text, kinds = imperfect_answer(atypical, rng, rates={"hallucinate": 1.0})
    # the textbook key finding the atypical case lacks (dry cough) is cited: 2 of 3 cited are real
    assert kinds == ["hallucinate"] and "dry cough" in parse_answer(text).findings
    assert scores(atypical, text)[1] == pytest.approx(2 / 3)
    text, kinds = imperfect_answer(typical, rng, rates={"hallucinate": 1.0})
    assert kinds == []  # a typical case has no missing key finding to hallucinate
    text, kinds = imperfect_answer(typical, rng, rates={"invent": 1.0})
    assert kinds == ["invent"] and scores(typical, text)[1] == pytest.approx(3 / 4)
    text, kinds = imperfect_answer(typical, rng, rates={"miss": 1.0})
    assert kinds == ["miss"] and scores(typical, text) == pytest.approx((1.0, 1.0, 0.5 * 2 / 3 + 0.5))
    text, kinds = imperfect_answer(typical, rng, rates={"ddx": 1.0})
    assert kinds == ["ddx"] and scores(typical, text)[2] == pytest.approx(0.75)  # one of 2 ddx lost
    # drawn afresh: over many draws each kind appears at about its rate
    counts = {"wrong_dx": 0, "miss": 0}
    for _ in range(2000):
        for kind in imperfect_answer(typical, rng, rates={"wrong_dx": 0.3, "miss": 0.2})[1]:
            counts[kind] += 1
    assert abs(counts["wrong_dx"] / 2000 - 0.3) < 0.04 and abs(counts["miss"] / 2000 - 0.2) < 0.04


# ------------------------------------------------------------------------------------------------ the task
def test_builtin_task_split_weights_and_info():
    task = TASKS["clinical"](n_train=300, n_eval=40)
    assert len(task.train) == 300 and len(task.eval) == 40
    assert not {c["vignette"] for c in task.train} & {c["vignette"] for c in task.eval}  # held out
    assert [c["id"] for c in clinical_task(n_train=10, n_eval=20).eval[:20]] == [c["id"] for c in task.eval[:20]]
    assert task.reward_weights == [1.0, 0.5, 0.5]
    assert [f.__name__ for f in task.reward_funcs] == ["dx_accuracy", "faithfulness", "comprehensiveness"]
    assert task.accuracy.__name__ == "dx_accuracy"
    assert task.info["max_new_tokens"] == MAX_NEW_TOKENS and task.info["held_out_from_tiny_clinical"]
    assert not clinical_task(n_train=10, n_eval=300).info["held_out_from_tiny_clinical"]
    assert clinical_task(n_train=10, n_eval=5, weights={"faithfulness": 2}).reward_weights == [1.0, 2.0, 0.5]
    assert clinical_task(n_train=10, n_eval=5, weights=[1, 0, 0]).reward_weights == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": {"format": 1.0}}, "unknown reward names"),
        ({"weights": [1.0, 1.0]}, "list of 3 numbers"),
        ({"weights": [1.0, -1.0, 0.0]}, ">= 0"),
        ({"weights": [0, 0, 0]}, "at least one"),
        ({"n_train": 0}, "n_train"),
        ({"eval_cases": "x.jsonl"}, "own case file"),
    ],
)
def test_builtin_task_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        clinical_task(**kwargs)


# ------------------------------------------------------------------------------------------------ own case files
def own_case(i, **changes):
    case = {
        "id": f"my-{i}",
        "prompt": f"Case {i}: cough and fever.\nGive findings, ddx and dx.\n",
        "vignette": f"Case {i}: cough and fever.",
        "findings": ["cough", "fever"],
        "key_findings": ["cough"],
        "diagnosis": "bronchitis",
        "differentials": ["pneumonia"],
    }
    case.update(changes)
    return case


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_own_case_file_loads_splits_and_scores(tmp_path):
    path = write_jsonl(tmp_path / "cases.jsonl", [own_case(i) for i in range(10)])
    task = clinical_task(cases=path, eval_fraction=0.2, seed=1)
    assert len(task.train) == 8 and len(task.eval) == 2
    row = task.train[0]
    assert row["answer"] == "findings: cough; ddx: pneumonia; dx: bronchitis"  # filled in
    assert scores(row, row["answer"]) == (1.0, 1.0, 1.0)
    assert task.info["max_new_tokens"] == len(row["answer"]) + 8
    held = write_jsonl(tmp_path / "held.jsonl", [own_case(i) for i in range(10, 13)])
    task = clinical_task(cases=path, eval_cases=held)
    assert len(task.train) == 10 and [r["id"] for r in task.eval] == ["my-10", "my-11", "my-12"]
    # a given answer and extra columns are kept; the same cases as a list of dicts work too
    rows = check_cases([own_case(0, answer="findings: cough; ddx: ; dx: bronchitis", source="ward 3")])
    assert rows[0]["answer"] == "findings: cough; ddx: ; dx: bronchitis" and rows[0]["source"] == "ward 3"
    assert len(clinical_task(cases=[own_case(i) for i in range(4)], eval_fraction=0.25).eval) == 1


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({k: v for k, v in own_case(0).items() if k != "key_findings"}, r"lacks \['key_findings'\]"),
        (own_case(0, id=""), "'id' must be a non-empty string"),
        (own_case(0, diagnosis=""), "'diagnosis' must be a non-empty string"),
        (own_case(0, vignette=3), "'vignette' must be a non-empty string"),
        (own_case(0, findings="cough, fever"), "'findings' must be a non-empty list"),
        (own_case(0, key_findings=[]), "'key_findings' must be a non-empty list"),
        (own_case(0, differentials=[""]), "'differentials' must be a list of non-empty strings"),
        (own_case(0, key_findings=["rash"]), r"key findings \['rash'\] are not among the findings"),
        (own_case(0, findings=["cough; wet", "fever"], key_findings=["fever"]), "separate the fields"),
        (own_case(0, differentials=["Bronchitis"]), "listed among its differentials"),
        (own_case(0, findings=["cough", "Cough"]), "repeats an item"),
        (own_case(0, answer=["x"]), "'answer'"),
    ],
)
def test_own_case_errors_name_the_row(tmp_path, row, match):
    path = write_jsonl(tmp_path / "bad.jsonl", [own_case(1), row])
    with pytest.raises(ValueError, match=match) as err:
        clinical_task(cases=path)
    assert "row 1" in str(err.value)


def test_own_case_file_level_errors(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [own_case(0), own_case(0)])
    with pytest.raises(ValueError, match="repeats an earlier row"):
        clinical_task(cases=path)
    path = write_jsonl(tmp_path / "keys.jsonl", [own_case(0), own_case(1, note="x")])
    with pytest.raises(ValueError, match="same keys"):
        clinical_task(cases=path, eval_fraction=0.0)
    no_prompt = {k: v for k, v in own_case(0).items() if k != "prompt"}
    with pytest.raises(ValueError, match="no prompt column"):  # load_rows checks the prompt first
        clinical_task(cases=write_jsonl(tmp_path / "np.jsonl", [no_prompt]))
    with pytest.raises(FileNotFoundError):
        clinical_task(cases=str(tmp_path / "missing.jsonl"))
