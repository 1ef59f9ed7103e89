"""The consultation environment: the rule-based patient, per-episode state, and whole episodes played by a scripted
doctor through the real multi-turn rollout (``grpolab.rollout.multiturn.run_episodes``); an LLM patient smoke test."""

import types

import pytest
import torch

from grpolab.envs.consultation import (
    ConsultationEnv,
    LLMPatient,
    PatientSimulator,
    RulePatient,
    keywords,
    parse_transcript,
    revealed_findings,
)
from grpolab.models import TEXT_CHARS, char_tokenizer, random_tiny_model
from grpolab.rollout.hf import HFEngine
from grpolab.rollout.multiturn import run_episodes

# Two cases of the clinical generator's schema (grpolab.data.clinical.generate_cases).
PNEUMONIA = {
    "id": "c1",
    "prompt": "[c1] Cough and fever.\n",
    "vignette": "A 40 year old man with cough.",
    "findings": ["productive cough", "fever for 3 days", "right chest pain"],
    "key_findings": ["productive cough", "fever for 3 days"],
    "diagnosis": "pneumonia",
    "differentials": ["bronchitis", "pulmonary embolism"],
}
ASTHMA = {
    "id": "c2",
    "prompt": "[c2] Short of breath.\n",
    "vignette": "A 20 year old woman with wheeze.",
    "findings": ["wheeze at night", "cough at night", "pet cat at home"],
    "key_findings": ["wheeze at night", "pet cat at home"],
    "diagnosis": "asthma",
    "differentials": ["bronchitis"],
}


def test_rule_patient_reveals_a_finding_only_when_asked_about_it():
    patient = RulePatient()
    assert isinstance(patient, PatientSimulator)
    assert patient.answer(PNEUMONIA, "do you cough?") == "yes: productive cough"
    assert patient.answer(PNEUMONIA, "any fevers?") == "yes: fever for 3 days"  # "fevers" stems to "fever"
    assert patient.answer(PNEUMONIA, "any pain in the chest?") == "yes: right chest pain"
    assert patient.answer(PNEUMONIA, "rash?") == "no"  # asked about something it does not have
    assert patient.answer(PNEUMONIA, "how are you?") == "not that I know"  # no content word at all
    # a vague question reveals at most max_reveal of its equally good matches, in case order
    vague = "cough or fever?"
    assert patient.answer(PNEUMONIA, vague) == "yes: productive cough, fever for 3 days"
    assert RulePatient(max_reveal=1).answer(PNEUMONIA, vague) == "yes: productive cough"
    # the most specific match wins: "chest pain" shares two words, the others one
    assert patient.answer(PNEUMONIA, "cough, fever or chest pain?") == "yes: right chest pain"
    assert patient.answer(ASTHMA, "cough?") == "yes: cough at night"
    assert patient.answer(ASTHMA, "anything at night?") == "yes: wheeze at night, cough at night"


def test_keywords_and_transcript_parsing():
    assert keywords("Do you have any coughing or fevers?") == {"cough", "fever"}
    text = "<ask>cough?</ask><pt>yes: productive cough</pt><ask>rash?</ask><pt>no</pt><dx>pneumonia; bronchitis</dx>"
    t = parse_transcript(text)
    assert t.questions == ["cough?", "rash?"]
    assert t.answers == ["yes: productive cough", "no"]
    assert t.diagnosis == "pneumonia; bronchitis" and t.primary_diagnosis == "pneumonia"
    # the patient's words and the questions are not the doctor's statements
    assert "productive" not in t.statements and "rash" not in t.statements and "bronchitis" in t.statements
    # an unclosed final diagnosis (the episode ended at EOS) still counts; no diagnosis gives None
    assert parse_transcript("<dx>asthma").diagnosis == "asthma"
    assert parse_transcript("<ask>x</ask>").primary_diagnosis is None
    assert revealed_findings(PNEUMONIA, t.answers) == [0]


def test_env_tracks_asked_revealed_and_denied_and_counts_questions_as_tool_calls():
    env = ConsultationEnv(RulePatient(), max_turns=4)
    state = env.reset(PNEUMONIA)
    assert state == {"asked": [], "answers": [], "revealed": [], "denied": 0, "diagnosis": None}
    r1 = env.step(state, PNEUMONIA, "<ask>fever?</ask>")
    assert (r1.text, r1.done, r1.tool_call) == ("<pt>yes: fever for 3 days</pt>", False, True)
    r2 = env.step(state, PNEUMONIA, "<ask>rash?</ask>")
    assert (r2.text, r2.tool_call) == ("<pt>no</pt>", True)
    r3 = env.step(state, PNEUMONIA, "thinking <ask>cough?</ask>")  # text before the tag is not the question
    assert r3.text == "<pt>yes: productive cough</pt>"
    r4 = env.step(state, PNEUMONIA, "<dx>pneumonia</dx>")
    assert (r4.text, r4.done, r4.tool_call) == ("", True, False)
    assert state["asked"] == ["fever?", "rash?", "cough?"]
    assert state["revealed"] == [1, 0] and state["denied"] == 1 and state["diagnosis"] == "pneumonia"
    assert env.reset(PNEUMONIA) is not state  # every episode gets its own state
    assert env.stop == ("</ask>", "</dx>")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="answer"):
        ConsultationEnv(object())
    with pytest.raises(ValueError, match="max_turns"):
        ConsultationEnv(max_turns=0)
    with pytest.raises(ValueError, match="findings"):
        ConsultationEnv().reset({"prompt": "x"})
    with pytest.raises(ValueError, match="max_reveal"):
        RulePatient(max_reveal=0)


class ScriptedDoctor(torch.nn.Module):
    """A fake policy for ``run_episodes``: each prompt has a script of turns; the k-th turn is written after k
    patient replies. A turn that does not end with a stop string ends with EOS."""

    def __init__(self, tokenizer, scripts):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device for run_episodes
        self.tokenizer, self.scripts = tokenizer, scripts
        self.config = types.SimpleNamespace(max_position_embeddings=256)

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id, **_):
        turns = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            text = self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            script = next(s for prompt, s in self.scripts.items() if text.startswith(prompt))
            turn = script[text.count("</pt>")]
            new = self.tokenizer(turn, add_special_tokens=False).input_ids
            if not turn.endswith(("</ask>", "</dx>")):
                new = [*new, eos_token_id]
            turns.append(new[:max_new_tokens])
        width = max(len(t) for t in turns)
        out = torch.full((len(turns), width), pad_token_id, dtype=torch.long)  # [M, W] right-padded
        for m, t in enumerate(turns):
            out[m, : len(t)] = torch.tensor(t)
        return torch.cat([input_ids, out], dim=1)  # [M, Lp + W]


def test_scripted_doctor_episodes_through_the_multiturn_rollout():
    tok = char_tokenizer(chars=TEXT_CHARS, model_max_length=256)
    engine = HFEngine(tok, max_new_tokens=24, temperature=0.0)
    diligent = ["<ask>cough?</ask>", "<ask>rash?</ask>", "<dx>pneumonia</dx>"]
    chatty = ["<ask>wheeze?</ask>", "<ask>cat?</ask>", "<ask>fever?</ask>", "<ask>cough?</ask>"]
    unsure = ["<ask>fever?</ask>", "not sure"]
    third = {**PNEUMONIA, "prompt": "[c3] Cough.\n"}
    model = ScriptedDoctor(tok, {"[c1]": diligent, "[c2]": chatty, "[c3]": unsure})
    env = ConsultationEnv(RulePatient(), max_turns=3)
    gen, extras = run_episodes(engine, model, env, [PNEUMONIA, ASTHMA, third], num_generations=1)
    assert gen.texts == [
        "<ask>cough?</ask><pt>yes: productive cough</pt><ask>rash?</ask><pt>no</pt><dx>pneumonia</dx>",
        "<ask>wheeze?</ask><pt>yes: wheeze at night</pt><ask>cat?</ask><pt>yes: pet cat at home</pt>"
        "<ask>fever?</ask><pt>no</pt>",  # max_turns 3: the 4th question is never asked
        "<ask>fever?</ask><pt>yes: fever for 3 days</pt>not sure",
    ]
    assert extras["tool_calls"].tolist() == [2, 3, 1]  # questions asked
    assert extras["turns"].tolist() == [3, 3, 2]
    assert gen.truncated.tolist() == [False, True, False]  # still asking when the turns ran out
    # environment tokens are exactly the patient's replies (one character = one token)
    for n, text in enumerate(gen.texts):
        env_chars = "".join(c for c, e in zip(text, extras["env_mask"][n].tolist(), strict=False) if e)
        assert env_chars == "".join(f"<pt>{a}</pt>" for a in parse_transcript(text).answers)


def test_llm_patient_with_a_random_tiny_text_model(tmp_path):
    model, tok = random_tiny_model(chars=TEXT_CHARS, max_positions=256)
    patient = LLMPatient(model, tok, max_new_tokens=8)
    assert isinstance(patient, PatientSimulator)
    assert patient.prompt(PNEUMONIA, "cough?").endswith("Doctor: cough?\nPatient:")
    assert "productive cough; fever for 3 days" in patient.prompt(PNEUMONIA, "cough?")
    answer = patient.answer(PNEUMONIA, "cough?")
    assert isinstance(answer, str) and answer and "\n" not in answer
    assert len(answer) <= 8 or answer == "not that I know"  # an empty reply reads as unsure
    assert patient.answer(PNEUMONIA, "cough?") == answer  # greedy: deterministic
    # a persona longer than the position limit is cut from the left instead of failing
    long_case = {**PNEUMONIA, "findings": [f"finding number {i}" for i in range(40)]}
    assert isinstance(patient.answer(long_case, "cough?"), str)
    # through the environment, and loaded from a local folder
    reply = ConsultationEnv(patient).step(ConsultationEnv(patient).reset(PNEUMONIA), PNEUMONIA, "<ask>cough?</ask>")
    assert reply.text == f"<pt>{answer}</pt>" and reply.tool_call
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert LLMPatient(str(tmp_path), max_new_tokens=8).answer(PNEUMONIA, "cough?") == answer
    with pytest.raises(ValueError, match="tokenizer"):
        LLMPatient(model)
