"""The clinical task's three rewards (CRPO, arXiv 2512.00601): parsing, hand-computed scores and invariants."""

import pytest

from grpolab.rewards.clinical import (
    REWARDS,
    ClinicalAnswer,
    comprehensiveness,
    cover,
    dx_accuracy,
    faithfulness,
    format_answer,
    normalise,
    parse_answer,
)
from grpolab.rewards.scoring import score_completions

# A meningitis case: five findings stated, three key ones, two differentials.
CASE = {
    "findings": ["headache", "fever", "stiff neck", "confusion", "light sensitivity"],
    "key_findings": ["headache", "fever", "stiff neck"],
    "diagnosis": "meningitis",
    "differentials": ["migraine", "flu"],
}
GOLD = "findings: headache, fever, stiff neck; ddx: migraine, flu; dx: meningitis"


def score(text, case=CASE):
    """(accuracy, faithfulness, comprehensiveness) of one completion."""
    cols = {k: [v] for k, v in case.items()}
    return tuple(fn([""], [text], **cols)[0] for fn in REWARDS)


# ------------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOLD, ClinicalAnswer(["headache", "fever", "stiff neck"], ["migraine", "flu"], "meningitis")),
        # case, spacing and a trailing full stop are normalised; order of the fields does not matter
        ("DX:  Meningitis. ;findings:Fever,  Headache", ClinicalAnswer(["fever", "headache"], None, "meningitis")),
        # empty list items are dropped, repeated ones count once
        ("findings: fever,, fever ,headache; ddx: ; dx: flu", ClinicalAnswer(["fever", "headache"], [], "flu")),
        # a field given twice is ambiguous: absent (Clinical-R1's code scores two boxed answers as wrong)
        ("findings: fever; dx: flu; dx: cold", ClinicalAnswer(["fever"], None, None)),
        # segments without a known label are ignored; "ddx" is not mistaken for "dx"
        ("thinking: hmm; ddx: flu; note", ClinicalAnswer(None, ["flu"], None)),
        ("", ClinicalAnswer(None, None, None)),
        ("dx:", ClinicalAnswer(None, None, None)),  # an empty diagnosis is no diagnosis
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


def test_format_answer_round_trips_and_chat_completions_are_read():
    text = format_answer(["fever", "stiff neck"], ["migraine"], "meningitis")
    assert text == "findings: fever, stiff neck; ddx: migraine; dx: meningitis"
    assert parse_answer(text) == ClinicalAnswer(["fever", "stiff neck"], ["migraine"], "meningitis")
    chat = [{"role": "assistant", "content": GOLD}]
    assert parse_answer(chat) == parse_answer(GOLD)
    assert normalise(" Stiff   Neck.. ") == "stiff neck"


@pytest.mark.parametrize(
    ("cited", "gold", "expected"),
    [
        (["a", "b", "c"], ["a", "b", "c"], 1.0),
        (["c", "a", "b"], ["a", "b", "c"], 1.0),  # order is irrelevant
        (["a"], ["a", "b", "c"], 1 / 3),
        (["a", "b", "c", "d"], ["a", "b", "c"], 3 / 4),  # padding dilutes: 3 right of 4 cited
        (["x", "y"], ["a", "b"], 0.0),
        ([], ["a"], 0.0),
        (["a"], [], 0.0),
        ([], [], 1.0),  # nothing to cover, nothing cited
    ],
)
def test_cover_by_hand(cited, gold, expected):
    assert cover(cited, gold) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------ scores by hand
@pytest.mark.parametrize(
    ("text", "acc", "faith", "comp"),
    [
        (GOLD, 1.0, 1.0, 1.0),
        # an invented finding (crackles): faithfulness 3/4; coverage of the key findings 3/max(3, 4) = 3/4, ddx 1
        # -> comprehensiveness 1/2 * 3/4 + 1/2 * 1 = 7/8
        ("findings: headache, fever, stiff neck, crackles; ddx: migraine, flu; dx: meningitis", 1.0, 0.75, 0.875),
        # one key finding and one differential missed: 1/2 * 2/3 + 1/2 * 1/2 = 7/12
        ("findings: headache, fever; ddx: flu; dx: meningitis", 1.0, 1.0, 7 / 12),
        # a real but non-key finding (confusion) is faithful and dilutes coverage: 1/2 * 3/4 + 1/2 = 7/8
        ("findings: headache, fever, stiff neck, confusion; ddx: migraine, flu; dx: meningitis", 1.0, 1.0, 0.875),
        # the dx alone: accuracy 1, nothing cited (faithfulness 0), no coverage
        ("dx: meningitis", 1.0, 0.0, 0.0),
        # a look-alike diagnosis with the gold reasoning: only accuracy is lost
        ("findings: headache, fever, stiff neck; ddx: migraine, flu; dx: migraine", 0.0, 1.0, 1.0),
        # the dx listed among its own differentials: ddx coverage 2/3 -> 1/2 + 1/2 * 2/3 = 5/6
        ("findings: headache, fever, stiff neck; ddx: migraine, flu, meningitis; dx: meningitis", 1.0, 1.0, 5 / 6),
        # listing every condition does not pay: 2 right of 14 cited
        (
            "findings: headache, fever, stiff neck; ddx: migraine, flu, cold, asthma, uti, reflux, angina, "
            "heart attack, kidney stone, appendicitis, gastroenteritis, pneumonia, tension headache, "
            "sinusitis; dx: meningitis",
            1.0,
            1.0,
            0.5 + 0.5 * 2 / 14,
        ),
        ("I think it is meningitis", 0.0, 0.0, 0.0),  # unparsable: 0 everywhere
        ("findings: fever; dx: meningitis, migraine", 0.0, 1.0, 0.5 * 1 / 3),  # a hedged dx is wrong
    ],
)
def test_scores_by_hand(text, acc, faith, comp):
    assert score(text) == pytest.approx((acc, faith, comp))


# ------------------------------------------------------------------------------------------------ invariants
def test_inventing_a_finding_lowers_faithfulness():
    base = "findings: headache, fever; ddx: migraine, flu; dx: meningitis"
    for invented in ("crackles", "aura", "rash"):
        more = base.replace("fever;", f"fever, {invented};")
        assert score(more)[1] < score(base)[1] == 1.0
    # citing a second invented finding lowers it further: 2/3 -> 2/4
    assert score("findings: headache, fever, aura, rash; dx: meningitis")[1] == pytest.approx(0.5)


def test_all_key_findings_and_differentials_give_comprehensiveness_one():
    for order in (["stiff neck", "fever", "headache"], ["headache", "stiff neck", "fever"]):
        text = format_answer(order, ["flu", "migraine"], "wrong guess")
        assert score(text)[2] == 1.0
        assert score(text)[0] == 0.0  # comprehensiveness does not depend on the diagnosis


def test_a_correct_dx_alone_gives_accuracy_one_but_low_comprehensiveness():
    acc, faith, comp = score("dx: meningitis")
    assert acc == 1.0 and comp == 0.0 and faith == 0.0
    assert score(GOLD)[2] > comp


def test_each_reward_is_monotone_in_its_own_error_kind():
    """Fixing one error kind never lowers the other rewards (the objectives are separable)."""
    wrong = "findings: headache, aura; ddx: flu; dx: migraine"
    fixed_dx = wrong.replace("dx: migraine", "dx: meningitis")
    fixed_faith = wrong.replace(", aura", "")
    a, f, c = score(wrong)
    assert score(fixed_dx) == pytest.approx((1.0, f, c))
    assert score(fixed_faith)[0] == a and score(fixed_faith)[1] > f


def test_batch_with_scoring_and_column_errors():
    cols = {k: [v, v] for k, v in CASE.items()}
    scores = score_completions(list(REWARDS), [1.0, 0.5, 0.5], ["", ""], [GOLD, "dx: meningitis"], cols)
    assert scores.names == ["dx_accuracy", "faithfulness", "comprehensiveness"]
    assert scores.reward.tolist() == pytest.approx([2.0, 1.0])  # 1 + 0.5 + 0.5; 1 + 0 + 0
    assert scores.metrics["reward/faithfulness"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'diagnosis' column"):
        dx_accuracy([""], [GOLD])
    with pytest.raises(ValueError, match="1 completions but 2"):
        faithfulness([""], [GOLD], findings=[["a"], ["b"]])
    with pytest.raises(ValueError, match="'differentials' column"):
        comprehensiveness([""], [GOLD], key_findings=[["a"]])
