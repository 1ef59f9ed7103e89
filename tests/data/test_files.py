"""Tasks from files: jsonl/json/parquet/Dataset round trips, prompt checks, held-out split."""

import json
import sys

import pytest

from grpolab.data.files import _plain, file_task, load_rows, split_rows
from grpolab.data.task import TASKS, Task

ROWS = [
    {"question": "2+2?", "answer": "4"},
    {"question": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "3*4?"}], "answer": "12"},
    {"question": "10-7?", "answer": "3"},
]
EXPECTED = [{"answer": r["answer"], "prompt": r["question"]} for r in ROWS]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")  # a trailing blank line is skipped
    return path


def test_jsonl_json_round_trip(tmp_path):
    assert load_rows(write_jsonl(tmp_path / "d.jsonl", ROWS), prompt_column="question") == EXPECTED
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    assert load_rows(str(tmp_path / "d.json"), prompt_column="question") == EXPECTED


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"prompt": "2+2?", "answer": "4"}, {"prompt": "10-7?", "answer": "3"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert load_rows(tmp_path / "d.parquet") == rows
    chat = [{"prompt": [{"role": "user", "content": "3*4?"}], "answer": "12"}]
    pq.write_table(pa.Table.from_pylist(chat), tmp_path / "chat.parquet")
    assert load_rows(tmp_path / "chat.parquet") == chat  # nested values come back as plain lists and dicts


def test_dataset_input():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"question": "2+2?", "answer": "4"}, {"question": "10-7?", "answer": "3"}])
    expected = [{"answer": "4", "prompt": "2+2?"}, {"answer": "3", "prompt": "10-7?"}]
    assert load_rows(ds, prompt_column="question") == expected


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        (42, "row 1: the prompt is 42 \\(int\\)"),
        ("", "row 1: the prompt is an empty string"),
        ([], "row 1: the prompt is \\[\\]"),
        (["hi"], "row 1: prompt message 0 is 'hi'"),
        ([{"role": "user"}], "row 1: prompt message 0"),
        (None, "row 1: the prompt is None"),
    ],
)
def test_bad_prompt_types_name_the_row(prompt, match):
    with pytest.raises(ValueError, match=match):
        load_rows([{"prompt": "fine", "answer": "1"}, {"prompt": prompt, "answer": "2"}])


def test_missing_prompt_column_lists_the_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    expected = r"row 0 has no prompt column 'prompt'; its columns are \['answer', 'question'\]"
    with pytest.raises(ValueError, match=expected):
        load_rows(path)


def test_prompt_column_clash():
    with pytest.raises(ValueError, match="both 'question' and 'prompt'"):
        load_rows([{"question": "a", "prompt": "b"}], prompt_column="question")


def test_bad_files(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{not json}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_rows(tmp_path / "bad.jsonl")
    (tmp_path / "obj.json").write_text('{"prompt": "a"}')
    with pytest.raises(ValueError, match="list of objects"):
        load_rows(tmp_path / "obj.json")
    (tmp_path / "d.csv").write_text("prompt\na\n")
    with pytest.raises(ValueError, match=r"unknown file type '\.csv'"):
        load_rows(tmp_path / "d.csv")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no rows"):
        load_rows(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError):
        load_rows(tmp_path / "missing.jsonl")
    with pytest.raises(TypeError, match="cannot read rows from a int"):
        load_rows(3)


def test_split_is_seeded_disjoint_and_complete():
    rows = [{"prompt": str(i)} for i in range(50)]
    train, held = split_rows(rows, eval_fraction=0.2, seed=3)
    assert len(train) == 40 and len(held) == 10
    ids_train, ids_held = [r["prompt"] for r in train], [r["prompt"] for r in held]
    assert not set(ids_train) & set(ids_held)
    assert sorted(ids_train + ids_held, key=int) == [str(i) for i in range(50)]
    assert ids_train == sorted(ids_train, key=int)  # file order kept
    assert split_rows(rows, eval_fraction=0.2, seed=3) == (train, held)  # deterministic
    assert split_rows(rows, eval_fraction=0.2, seed=4)[1] != held  # the seed matters
    assert split_rows(rows[:2], eval_fraction=0.01)[1] != []  # at least one held out
    assert len(split_rows(rows[:2], eval_fraction=0.9)[0]) == 1  # never an empty training set
    assert split_rows(rows, eval_fraction=0.0) == (rows, [])
    with pytest.raises(ValueError, match="eval_fraction"):
        split_rows(rows, eval_fraction=1.0)


def test_file_task_with_held_out_eval(tmp_path):
    rows = [{"q": f"{i}+1?", "label": str(i + 1)} for i in range(20)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    options = {"eval_fraction": 0.25, "seed": 1, "reward": "numeric", "answer_column": "label", "prompt_column": "q"}
    task = file_task(train=str(path), **options)
    assert isinstance(task, Task) and task.name == "file"
    assert len(task.train) == 15 and len(task.eval) == 5
    assert not {r["prompt"] for r in task.train} & {r["prompt"] for r in task.eval}
    again = file_task(train=str(path), **options)
    assert again.eval == task.eval
    (fn,) = task.reward_funcs
    assert fn.__name__ == "numeric_label" and task.accuracy is fn
    row = task.eval[0]
    assert fn(prompts=[row["prompt"]], completions=[f"It is {row['label']}"], label=[row["label"]]) == [1.0]


def test_file_task_with_eval_file_and_registry(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a?", "answer": "A"}, {"prompt": "b?", "answer": "B"}])
    (tmp_path / "eval.json").write_text(json.dumps([{"prompt": "c?", "answer": "C"}]))
    task = TASKS["file"](train=str(train), eval=str(tmp_path / "eval.json"), name="letters")
    assert task.name == "letters" and len(task.train) == 2 and task.eval == [{"prompt": "c?", "answer": "C"}]
    assert task.reward_funcs[0].__name__ == "exact"


def test_file_task_errors(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a?", "answer": "A"}, {"prompt": "b?", "solution": "B"}])
    expected = r"row 1 has no answer column 'answer'; its columns are \['prompt', 'solution'\]"
    with pytest.raises(ValueError, match=expected):
        file_task(train=str(train))
    with pytest.raises(ValueError, match="unknown verifier 'fuzzy'"):
        file_task(train=str(train), reward="fuzzy")


def test_parquet_without_pyarrow_or_pandas_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_rows(tmp_path / "d.parquet")


def test_pandas_values_become_plain_python():
    np = pytest.importorskip("numpy")
    row = {"prompt": np.array([{"role": "user", "content": "hi"}], dtype=object), "n": np.int64(3), "s": "x"}
    assert _plain(row) == {"prompt": [{"role": "user", "content": "hi"}], "n": 3, "s": "x"}
    assert type(_plain(row)["n"]) is int
