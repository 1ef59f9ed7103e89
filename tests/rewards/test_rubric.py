"""Rubric rewards: hand-computed scores of consultation transcripts, the spec invariant (the reward lies in [-1, 1]
and is 1 when every positive item is met and no negative one is), penalties, per-dimension rewards, and an LLM
verifier smoke test on a random tiny model."""

import random

import pytest
import torch

from grpolab.models import TEXT_CHARS, random_tiny_model
from grpolab.rewards.rubric import (
    DIMENSIONS,
    LLMVerifier,
    RubricGenerator,
    RubricItem,
    RubricScorer,
    RuleVerifier,
    diagnosis_accuracy,
    dimension_score,
    rubric_rewards,
    rubric_score,
)

CASE = {
    "id": "c1",
    "prompt": "[c1] Cough and fever.\n",
    "vignette": "A 40 year old man with cough.",
    "findings": ["productive cough", "fever for 3 days", "right chest pain"],
    "key_findings": ["productive cough", "fever for 3 days"],
    "diagnosis": "pneumonia",
    "differentials": ["bronchitis", "pulmonary embolism"],
}
# RubricGenerator() on CASE: asks about cough +2, asks about fever +2, diagnosis +5, bronchitis +1,
# pulmonary embolism +1, more than 3 + 2 = 5 questions -2, states a denied finding -3. Positive total 11.
POSITIVE_TOTAL = 11.0


def score(completions, case=CASE, **kwargs):
    """The rubric reward of each completion on ``case``, called as a trainer calls a TRL reward function."""
    reward = rubric_rewards(dimensions=False, **kwargs)[0]
    columns = {k: [v] * len(completions) for k, v in case.items() if k != "prompt"}
    return reward(prompts=[case["prompt"]] * len(completions), completions=completions, **columns)


def test_generator_writes_the_items_of_the_case():
    items = RubricGenerator()(CASE)
    assert [(i.text, i.weight, i.dimension) for i in items] == [
        ("asks about productive cough", 2.0, "history"),
        ("asks about fever for 3 days", 2.0, "history"),
        ("states the correct diagnosis: pneumonia", 5.0, "diagnosis"),
        ("mentions the differential diagnosis bronchitis", 1.0, "differential"),
        ("mentions the differential diagnosis pulmonary embolism", 1.0, "differential"),
        ("asks more than 5 questions", -2.0, "efficiency"),
        ("states a finding the patient denied", -3.0, "honesty"),
    ]
    assert sum(i.weight for i in items if i.weight > 0) == POSITIVE_TOTAL
    # zero penalty weights drop the penalty items
    lean = RubricGenerator(over_asking_weight=0.0, denied_claim_weight=0.0)(CASE)
    assert all(i.weight > 0 for i in lean) and len(lean) == 5


def test_hand_computed_rubric_rewards():
    perfect = (
        "<ask>cough?</ask><pt>yes: productive cough</pt><ask>fever?</ask><pt>yes: fever for 3 days</pt>"
        "<dx>pneumonia; bronchitis or pulmonary embolism</dx>"
    )
    partial = "<ask>cough?</ask><pt>yes: productive cough</pt><dx>pneumonia</dx>"
    # the patient denied a rash, the doctor asserts one anyway: +5 (diagnosis) - 3 (denied claim)
    lying = "<ask>rash?</ask><pt>no</pt><dx>pneumonia with rash</dx>"
    # six questions (> 5) and no diagnosis: +2 +2 (both key findings) - 2 (over-asking)
    over = "".join(
        f"<ask>{q}</ask><pt>{a}</pt>"
        for q, a in [
            ("cough?", "yes: productive cough"),
            ("fever?", "yes: fever for 3 days"),
            ("rash?", "no"),
            ("pain?", "yes: right chest pain"),
            ("nausea?", "no"),
            ("headache?", "no"),
        ]
    )
    wrong = "<ask>cough?</ask><pt>yes: productive cough</pt><dx>bronchitis; pneumonia</dx>"  # primary is wrong
    parroting = "<ask>x</ask><pt>yes: productive cough, pneumonia, bronchitis</pt>"  # the patient's words don't count
    got = score([perfect, partial, lying, over, wrong, parroting, ""])
    assert got == pytest.approx(
        [
            1.0,  # (2 + 2 + 5 + 1 + 1) / 11: the spec's invariant
            (2 + 5) / POSITIVE_TOTAL,
            (5 - 3) / POSITIVE_TOTAL,
            (2 + 2 - 2) / POSITIVE_TOTAL,
            (2 + 1) / POSITIVE_TOTAL,  # cough asked, bronchitis mentioned; the primary diagnosis is wrong
            0.0,
            0.0,
        ]
    )
    # a chat completion is scored on its assistant message
    assert score([[{"role": "assistant", "content": partial}]]) == pytest.approx([(2 + 5) / POSITIVE_TOTAL])


def test_penalties_can_make_the_reward_negative_and_it_is_clipped_at_minus_one():
    harsh = RubricGenerator(over_asking_weight=-20.0, question_allowance=0)
    asks = "".join(f"<ask>{w}?</ask><pt>no</pt>" for w in ("rash", "nausea", "headache", "itch"))
    # 4 questions > 3 + 0: -20 / 11 < -1, clipped
    assert score([asks], generator=harsh) == [-1.0]
    assert score([asks + "<dx>pneumonia</dx>"]) == pytest.approx([5 / POSITIVE_TOTAL])  # default allowance: 5 ok


def test_rubric_score_invariant_on_random_rubrics():
    rng = random.Random(0)
    for _ in range(300):
        k = rng.randint(1, 8)
        weights = [rng.choice([-1, 1]) * rng.uniform(0.1, 10) for _ in range(k)]
        if not any(w > 0 for w in weights):
            weights[0] = abs(weights[0])
        sat = [rng.random() if rng.random() < 0.3 else float(rng.random() < 0.5) for _ in range(k)]
        r = rubric_score(weights, sat)
        positive = sum(w for w in weights if w > 0)
        assert -1.0 <= r <= 1.0
        unclipped = sum(w * s for w, s in zip(weights, sat, strict=True)) / positive  # the formula, written out
        assert r == pytest.approx(min(1.0, max(-1.0, unclipped)))
        assert rubric_score(weights, [1.0 if w > 0 else 0.0 for w in weights]) == pytest.approx(1.0)
        assert rubric_score(weights, [0.0] * k) == 0.0


def test_per_dimension_rewards_and_shared_verification():
    calls = []

    class CountingVerifier(RuleVerifier):
        def verify(self, case, transcript, items):
            calls.append(transcript)
            return super().verify(case, transcript, items)

    funcs = rubric_rewards(verifier=CountingVerifier())
    assert [f.__name__ for f in funcs] == ["rubric", *(f"rubric_{d}" for d in DIMENSIONS)]
    completions = [
        "<ask>cough?</ask><pt>yes: productive cough</pt><dx>pneumonia</dx>",
        "<ask>rash?</ask><pt>no</pt><dx>pneumonia with rash</dx>",
    ]
    columns = {k: [v, v] for k, v in CASE.items() if k != "prompt"}
    values = [v for f in funcs for v in f(prompts=["p", "p"], completions=completions, **columns)]
    per_function = [
        [7 / 11, 2 / 11],  # rubric
        [0.5, 0.0],  # history: 2 of 4 points, none
        [1.0, 1.0],  # diagnosis
        [0.0, 0.0],  # differential
        [0.0, 0.0],  # efficiency: no over-asking penalty
        [0.0, -1.0],  # honesty: the one penalty incurred
    ]
    expected = [v for pair in per_function for v in pair]
    assert values == pytest.approx(expected)
    assert len(calls) == 2  # six reward functions, each transcript verified once
    assert dimension_score([], []) is None


def test_diagnosis_accuracy():
    got = diagnosis_accuracy(
        ["p"] * 4,
        ["<dx>Pneumonia</dx>", "<dx>bronchitis; pneumonia</dx>", "<ask>dx?</ask>", "<dx>lobar pneumonia"],
        diagnosis=["pneumonia"] * 4,
    )
    assert got == [1.0, 0.0, 0.0, 1.0]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="check must be one of"):
        RubricItem("x", 1.0, "vibes")
    with pytest.raises(ValueError, match="non-zero"):
        RubricItem("x", 0.0, "mentions", "y")
    with pytest.raises(ValueError, match="positive weight"):
        rubric_score([-1.0], [1.0])
    with pytest.raises(ValueError, match="over_asking_weight"):
        RubricGenerator(over_asking_weight=1.0)
    with pytest.raises(ValueError, match="missing"):
        rubric_rewards()[0](prompts=["p"], completions=["x"], diagnosis=["pneumonia"])
    with pytest.raises(ValueError, match="list of strings"):
        RubricScorer().judge({**CASE, "findings": "cough"}, "x")


def test_llm_verifier_with_a_random_tiny_text_model():
    model, tok = random_tiny_model(chars=TEXT_CHARS, max_positions=256)
    verifier = LLMVerifier(model, tok, batch_size=3)
    assert (verifier.yes_id, verifier.no_id) == (tok.convert_tokens_to_ids("y"), tok.convert_tokens_to_ids("n"))
    items = RubricGenerator()(CASE)
    transcript = "<ask>cough?</ask><pt>yes: productive cough</pt><dx>pneumonia</dx>"
    verdicts = verifier.verify(CASE, transcript, items)
    assert len(verdicts) == len(items) and set(verdicts) <= {0.0, 1.0}
    # each verdict is the comparison of the two next-token logits of its question alone (no padding)
    for item, verdict in zip(items, verdicts, strict=True):
        prompt = verifier.template.format(transcript=transcript, criterion=item.text)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tok(prompt).input_ids[-256:]])).logits[0, -1]  # [V]
        assert verdict == float(logits[verifier.yes_id] > logits[verifier.no_id])
    soft = LLMVerifier(model, tok, soft=True).verify(CASE, transcript, items)
    assert all(0.0 < p < 1.0 for p in soft) and [float(p > 0.5) for p in soft] == verdicts
    reward = score([transcript], verifier=verifier)[0]
    assert -1.0 <= reward <= 1.0
    with pytest.raises(ValueError, match="same token"):
        LLMVerifier(model, tok, yes="yes", no="yeah")
