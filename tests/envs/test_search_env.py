"""ToolEnv's turn logic with a scripted fake policy, and the ``search`` task (rows, split, rewards)."""

import pickle

import pytest

from grpolab.data import TASKS
from grpolab.data.search import (
    MAX_NEW_TOKENS,
    extract_answer,
    generate_facts,
    load_facts,
    normalize_answer,
    search_em,
    search_format,
    search_rows,
    tool_calls,
)
from grpolab.envs import Environment, Reply
from grpolab.envs.search import ToolEnv
from grpolab.envs.tools import Calculator, SearchEngine

CORPUS = [
    {"title": "Velora", "text": "The capital of Velora is Quenth."},
    {"title": "Velora", "text": "The river of Velora is Amsel."},
    {"title": "Tarsh", "text": "The capital of Tarsh is Belm."},
]


def env(**kwargs):
    return ToolEnv(search=SearchEngine(CORPUS, top_k=1), **kwargs)


def play(environment, row, turns):
    """What a multi-turn rollout does with a scripted policy: each scripted turn is one model turn; a turn ending
    with a stop string goes to env.step and its reply is appended; the episode ends at a turn without a stop
    string (EOS), at done, or after max_turns turns. Returns (transcript, tool calls, model turns)."""
    state = environment.reset(row)
    text, calls, used = "", 0, 0
    for turn in turns[: environment.max_turns]:
        used += 1
        text += turn
        if not any(turn.endswith(s) for s in environment.stop):
            break
        reply = environment.step(state, row, turn)
        text += reply.text
        calls += reply.tool_call
        if reply.done:
            break
    return text, calls, used


ROW = {"prompt": "Q: What's the capital of Velora?\n", "answer": "Quenth"}


def test_search_then_answer():
    text, calls, turns = play(env(), ROW, ["<search>capital of Velora</search>", "<answer>Quenth</answer>"])
    assert text == (
        "<search>capital of Velora</search><result>Velora: The capital of Velora is Quenth.</result>"
        "<answer>Quenth</answer>"
    )
    assert (calls, turns) == (1, 2)
    assert search_em([ROW["prompt"]], [text], answer=["Quenth"]) == [1.0]


def test_calc_and_direct_answer():
    text, calls, _ = play(env(), ROW, ["<calc>(2+3)*4</calc>", "<answer>20</answer>"])
    assert text == "<calc>(2+3)*4</calc><result>20</result><answer>20</answer>" and calls == 1
    text, calls, turns = play(env(), ROW, ["<answer>Quenth</answer>"])
    assert (text, calls, turns) == ("<answer>Quenth</answer>", 0, 1)


def test_reply_fields_and_state():
    e = env()
    state = e.reset(ROW)
    assert state == {"calls": 0, "log": []}
    reply = e.step(state, ROW, "I will look it up. <search>river Velora</search>")
    assert reply == Reply(text="<result>Velora: The river of Velora is Amsel.</result>", done=False, tool_call=True)
    e.step(state, ROW, "<calc>1/0</calc>")
    assert state["calls"] == 2
    assert state["log"][1] == ("calc", "1/0", "<result>error: division by zero</result>")
    assert e.reset(ROW) == {"calls": 0, "log": []}  # a fresh state per episode: the env keeps none itself


def test_max_turns_ends_the_episode():
    search = "<search>capital of Velora</search>"
    _, calls, turns = play(env(), ROW, [search] * 5)
    assert (calls, turns) == (3, 3)  # default max_turns 3
    _, calls, turns = play(env(max_turns=2), ROW, [search] * 5 + ["<answer>x</answer>"])
    assert (calls, turns) == (2, 2)
    assert ToolEnv().max_turns == 3 and isinstance(ToolEnv(), Environment)


def test_malformed_calls_cost_a_call_and_explain_themselves():
    e = env()
    state = e.reset(ROW)
    assert e.step(state, ROW, "capital of Velora</search>") == Reply(
        "<result>error: no <search> before the closing tag</result>", tool_call=True
    )
    assert e.step(state, ROW, "<search>  </search>").text == "<result>error: empty search</result>"
    assert e.step(state, ROW, "<search>?!</search>").text == "<result>error: empty query</result>"
    assert e.step(state, ROW, "<calc>import os</calc>").text.startswith("<result>error: cannot parse")
    assert e.step(state, ROW, "<search>zebra</search>").text == "<result>no results</result>"
    assert state["calls"] == 5


def test_an_answer_before_the_call_ends_the_episode():
    reply = env().step({}, ROW, "<answer>Quenth</answer><search>capital of Velora</search>")
    assert reply == Reply(text="", done=True, tool_call=False)
    # an answer-looking string inside the query is just part of the query
    assert env().step({}, ROW, "<search>x <answer>y</answer></search>").tool_call


def test_a_turn_without_a_stop_string_is_not_a_call():
    assert env().step({}, ROW, "<answer>Quenth</answer>") == Reply(text="", done=True)


def test_tools_can_be_disabled():
    assert env().stop == ("</search>", "</calc>")
    assert ToolEnv().stop == ("</calc>",)  # no search engine
    assert env(calculator=None).stop == ("</search>",)
    # a rollout never hands over a turn that ends with a disabled tool's closing tag; if one arrives, it ends
    assert env(calculator=False).step({}, ROW, "<calc>1+1</calc>") == Reply(text="", done=True)
    assert env(calculator=False).observe("calc", "1+1") == "<result>error: unknown tool 'calc'; use <search></result>"


def test_observation_length_is_capped():
    long_doc = [{"title": "Long", "text": "word " * 100}]
    e = ToolEnv(search=SearchEngine(long_doc, snippet_chars=400), max_observation_tokens=40)
    text = e.step({}, ROW, "<search>word</search>").text
    assert len(text) <= 40 and text.startswith("<result>Long: word") and text.endswith("...</result>")
    assert e.observe("calc", "2*21") == "<result>42</result>"
    with pytest.raises(ValueError, match="max_observation_tokens"):
        ToolEnv(max_observation_tokens=8)
    with pytest.raises(ValueError, match="max_turns"):
        ToolEnv(max_turns=0)


def test_env_pickles():
    e = pickle.loads(pickle.dumps(env()))
    assert e.step(e.reset(ROW), ROW, "<search>capital Tarsh</search>").text == (
        "<result>Tarsh: The capital of Tarsh is Belm.</result>"
    )


# ---------------------------------------------------------------------------------------------- the task
def test_shipped_corpus_is_the_generator_output():
    facts = load_facts()
    assert facts == generate_facts()  # scripts/warmstart_tools.py --write-corpus rewrites it identically
    assert len(facts) == 320 and len({f["value"].lower() for f in facts}) == 320
    assert sum(f["held_out"] for f in facts) == 64


def test_task_rows_and_split():
    task = TASKS["search"]()
    assert task.info["max_new_tokens"] == MAX_NEW_TOKENS and task.info["held_out_from_tiny_tools"]
    assert isinstance(task.env, ToolEnv) and task.env.max_turns == 3 and task.env.search.top_k == 1
    kinds = [r["kind"] for r in task.train]
    assert (kinds.count("lookup"), kinds.count("given"), kinds.count("calc")) == (256, 256, 256)
    kinds = [r["kind"] for r in task.eval]
    assert (kinds.count("lookup"), kinds.count("given"), kinds.count("calc")) == (64, 32, 32)
    assert {"lookup", "given", "calc"} <= {r["kind"] for r in task.eval[:16]}  # interleaved
    held = {normalize_answer(f["value"]) for f in load_facts() if f["held_out"]}
    assert not held & {normalize_answer(r["answer"]) for r in task.train}
    assert {normalize_answer(r["answer"]) for r in task.eval if r["kind"] != "calc"} <= held
    assert not {r["prompt"] for r in task.train} & {r["prompt"] for r in task.eval}
    for r in task.train + task.eval:
        assert len(r["prompt"]) <= 90 and r["min_calls"] == (0 if r["kind"] == "given" else 1)
    row = next(r for r in task.eval if r["kind"] == "calc")
    assert row["answer"] == Calculator()(row["query"]) and row["prompt"] == f"Q: What's {row['query']}?\n"


def test_every_gold_episode_fits_and_is_right():
    task = TASKS["search"]()
    for r in task.train[:200]:
        tag = "calc" if r["kind"] == "calc" else "search"
        calls = [f"<{tag}>{r['query']}</{tag}>"] * r["min_calls"]
        turns = [*calls, f"<answer>{r['answer']}</answer>"]
        assert max(len(t) for t in turns) < MAX_NEW_TOKENS
        text, n, _ = play(task.env, r, turns)
        assert n == r["min_calls"] and search_em([r["prompt"]], [text], answer=[r["answer"]]) == [1.0], text
        assert search_format([r["prompt"]], [text]) == [1.0] and tool_calls([""], [text]) == [float(n)]
        assert len(r["prompt"]) + len(text) + 2 < 256


def test_search_em_normalisation_and_extraction():
    completions = [
        "<answer>  the Quenth. </answer>",
        "<answer>Belm</answer><answer>Quenth</answer>",  # the last answer counts
        "<answer>Quenth</answer>",
        "Quenth",  # no tags
        [{"role": "assistant", "content": "<answer>QUENTH</answer>"}],
        "<answer>-5</answer>",
    ]
    answers = ["Quenth", "Quenth", "Belm", "Quenth", "Quenth", "5"]
    assert search_em([""] * 6, completions, answer=answers) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert extract_answer("<answer>a\nb</answer>") == "a\nb"


def test_format_and_tool_call_metrics():
    texts = [
        "<search>q</search><result>r</result><answer>a</answer>",
        "<answer>a</answer>",
        "<calc>1+1</calc><result>2</result>\n<search>q</search><result>x\ny</result><answer>2</answer>",
        "<search>q</search><result>r</result>",  # no answer
        "<answer>a</answer> and more",
        "<search>q</search><answer>a</answer>",  # a call without its result
    ]
    assert search_format([""] * 6, texts) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert tool_calls([""] * 6, texts) == [1.0, 0.0, 2.0, 1.0, 0.0, 1.0]
    # closing tags inside a result (an echo of the model's text) are not calls
    assert tool_calls([""], ["<search>q</search><result>a </search> b</result><answer>a</answer>"]) == [1.0]


def test_search_rows_bad_split():
    with pytest.raises(ValueError, match="unknown split"):
        search_rows("test")


def test_per_kind_call_metrics():
    from grpolab.data.search import calls_calc, calls_given, calls_lookup

    texts = ["<search>q</search><result>r</result><answer>a</answer>", "<answer>a</answer>", "<calc>1</calc>"]
    kinds = ["given", "lookup", "calc"]
    assert calls_given([""] * 3, texts, kind=kinds) == [1.0, None, None]
    assert calls_lookup([""] * 3, texts, kind=kinds) == [None, 0.0, None]
    assert calls_calc([""] * 3, texts, kind=kinds) == [None, None, 1.0]
