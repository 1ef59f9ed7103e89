"""The built-in tools: the ast-walking Calculator (incl. hostile input) and the SQLite FTS5 SearchEngine."""

import json
import pickle
import threading
import time

import pytest

from grpolab.envs.tools import FACTS_PATH, Calculator, CalculatorError, SearchEngine, snippet


# ------------------------------------------------------------------------------------------------- calculator
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2+3", "5"),
        (" 2 + 3 * 4 ", "14"),
        ("(2+3)*4", "20"),
        ("7/2", "3.5"),
        ("6/3", "2"),  # integral results without ".0"
        ("1/3", "0.333333"),  # six decimals
        ("-2/3", "-0.666667"),
        ("7//2", "3"),
        ("-7 % 3", "2"),
        ("2**10", "1024"),
        ("2**-1", "0.5"),
        ("--5", "5"),
        ("1.5e3 + 1", "1501"),
        ("99*99-1", "9800"),
        ("0.1+0.2", "0.3"),
    ],
)
def test_calculator_values(expression, expected):
    assert Calculator()(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1/0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("2 +", "cannot parse"),
        ("2 ^ 3", "write 2**3"),
        ("__import__('os').system('echo hi')", "function calls are not allowed"),
        ("open('/etc/passwd').read()", "not allowed"),
        ("x + 1", "names are not allowed"),
        ("(1).__class__", "attributes are not allowed"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1,000", "tuples are not allowed"),
        ("1 < 2", "comparisons are not allowed"),
        ("[1, 2][0]", "not allowed"),
        ("lambda: 1", "lambdas are not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("2j", "only numbers"),
        ("(-8) ** 0.5", "not a real number"),
        ("1e308 * 10", "larger than"),
        ("1e999", "not a finite number"),
    ],
)
def test_calculator_errors_are_text(expression, message):
    out = Calculator()(expression)
    assert out.startswith("error: ") and message in out, out


def test_calculator_hostile_input_is_refused_fast():
    calc = Calculator()
    start = time.perf_counter()
    assert "exponent" in calc("9**9**9")  # 9**387420489 would take minutes and gigabytes
    assert "larger than" in calc("10**15 * 10**15")
    assert "larger than" in calc("*".join(["999999999"] * 20))  # every intermediate result is bounded
    assert "longer than 200" in calc("1+" * 200 + "1")
    assert calc("(" * 150 + "1" + ")" * 150).startswith("error")  # deep nesting: refused, never a crash
    assert calc("-" * 190 + "1") == "1"  # 190 unary minus signs: fine
    assert time.perf_counter() - start < 1.0


def test_calculator_evaluate_raises_and_rejects_non_text():
    with pytest.raises(CalculatorError, match="division by zero"):
        Calculator().evaluate("1/0")
    assert Calculator()(None) == "error: expected text, got NoneType"
    assert Calculator().evaluate("2*3") == 6


def test_calculator_limits_and_bad_options():
    assert Calculator(max_exponent=2)("2**3").startswith("error: exponent 3")
    assert Calculator(max_abs=100)("50*3") == "error: result larger than 100"
    assert Calculator(decimals=2)("1/3") == "0.33"
    with pytest.raises(ValueError, match="max_chars"):
        Calculator(max_chars=0)
    with pytest.raises(ValueError, match="max_abs"):
        Calculator(max_abs=-1.0)


# ---------------------------------------------------------------------------------------------- search engine
CORPUS = [
    {"title": "Velora", "text": "The capital of Velora is Quenth."},
    {"title": "Velora", "text": "The river of Velora is Amsel."},
    {"title": "Tarsh", "text": "The capital of Tarsh is Belm."},
    {"title": "Tarsh", "text": "Tarsh has many rivers and lakes; its longest river is the Oro."},
    {"title": "Quenth", "text": "Quenth is a city of bridges."},
]


def test_search_ranks_documents_matching_more_and_rarer_words_first():
    engine = SearchEngine(CORPUS, top_k=5)
    assert [h.text for h in engine.search("capital of Velora")][:2] == [CORPUS[0]["text"], CORPUS[1]["text"]]
    hits = engine.search("capital Tarsh")
    assert hits[0].text == CORPUS[2]["text"] and {h.title for h in hits[1:3]} == {"Velora", "Tarsh"}
    assert hits == sorted(hits, key=lambda h: h.score)  # bm25: lower is better
    # stemming: "rivers" finds "river"; case does not matter
    assert engine.search("RIVERS velora")[0].text == CORPUS[1]["text"]
    # the title column is searched too: "Quenth" is the title of doc 4 and a word of doc 0
    assert {h.title for h in engine.search("Quenth")} == {"Quenth", "Velora"}


def test_search_text_format_top_k_and_snippets():
    engine = SearchEngine(CORPUS, top_k=2, snippet_chars=20)
    assert engine("capital of Velora") == "Velora: The capital of...\nVelora: The river of..."
    assert SearchEngine(CORPUS, top_k=1)("capital of Velora") == "Velora: The capital of Velora is Quenth."
    assert engine("zebra unicorn") == "no results"
    assert engine.search("capital", k=1)[0].title in {"Velora", "Tarsh"}


@pytest.mark.parametrize(
    "query",
    [
        'capital AND "Velora',  # unbalanced quote
        "capital NEAR(",
        "Velora*",
        "title:Velora",
        "(capital OR",
        "NOT Velora",
        "^capital",
        "capital - Velora + {x}",
        "AND OR NOT",
        "'; DROP TABLE docs; --",
        "\x00capital",
    ],
)
def test_fts5_syntax_never_raises(query):
    engine = SearchEngine(CORPUS, top_k=3)
    out = engine(query)
    assert isinstance(out, str) and not out.startswith("error")
    assert engine("capital of Velora").startswith("Velora: The capital")  # the table is still there


@pytest.mark.parametrize("query", ["", "   ", "?!*()", '"""'])
def test_empty_queries(query):
    assert SearchEngine(CORPUS)(query) == "error: empty query"
    assert SearchEngine(CORPUS).search(query) == []


def test_fts_query_quotes_every_word():
    assert SearchEngine.fts_query('a "b" c*') == '"a" OR "b" OR "c"'
    assert SearchEngine.fts_query("one two three", max_words=2) == '"one" OR "two"'


def test_search_engine_pickles_and_is_thread_safe():
    engine = pickle.loads(pickle.dumps(SearchEngine(CORPUS, top_k=1)))
    assert engine("river Velora") == "Velora: The river of Velora is Amsel."
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine("capital Tarsh"))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == ["Tarsh: The capital of Tarsh is Belm."] * 8


def test_bad_documents_and_options():
    with pytest.raises(ValueError, match="document 1 must be a mapping with 'title' and 'text'"):
        SearchEngine([CORPUS[0], {"text": "no title"}])
    with pytest.raises(ValueError, match="top_k"):
        SearchEngine(CORPUS, top_k=0)


def test_shipped_corpus_loads_and_answers():
    lines = FACTS_PATH.read_text().splitlines()
    assert 200 <= len(lines) <= 1000
    facts = [json.loads(line) for line in lines]
    engine = SearchEngine.from_jsonl(top_k=1)
    # every fact is the top hit of its own question's query: the search task is answerable
    for f in facts[:: len(facts) // 20]:
        assert engine(f"{f['attribute']} of {f['entity']}") == f"{f['entity']}: {f['text']}"


def test_snippet():
    assert snippet("short", 10) == "short"
    assert snippet("The capital of Velora is Quenth.", 20) == "The capital of..."
    assert snippet("Supercalifragilistic", 8) == "Super..."
