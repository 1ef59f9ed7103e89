"""The dual reward (Temporal-RLT, arXiv 2506.01908): discrete correctness + continuous temporal IoU / closeness."""

import json
import pickle
import random

import pytest

from grpolab.data.files import file_task
from grpolab.rewards.dual import (
    answer_text,
    closeness,
    dual,
    dual_parts,
    parse_interval,
    reference_kind,
    temporal_iou,
)
from grpolab.rewards.scoring import score_completions
from grpolab.rewards.verifiers import VERIFIERS


# ------------------------------------------------------------------------------------------ temporal IoU by hand
@pytest.mark.parametrize(
    ("pred", "ref", "expected"),
    [
        ((1.0, 5.0), (3.0, 7.0), 2 / 6),  # overlap [3, 5] = 2; union 4 + 4 − 2 = 6
        ((0.0, 1.0), (2.0, 3.0), 0.0),  # disjoint
        ((0.0, 2.0), (2.0, 4.0), 0.0),  # touching at one point: no overlap
        ((2.0, 4.0), (2.0, 4.0), 1.0),  # identical
        ((1.0, 2.0), (0.0, 4.0), 1 / 4),  # contained: 1 / 4
        ((0.0, 10.0), (2.5, 5.0), 2.5 / 10),  # containing: 2.5 / 10
        ((3.0, 3.0), (3.0, 3.0), 1.0),  # the same single point
        ((3.0, 3.0), (2.0, 4.0), 0.0),  # a point inside an interval has no length to overlap
    ],
)
def test_temporal_iou_by_hand(pred, ref, expected):
    assert temporal_iou(pred, ref) == pytest.approx(expected, abs=1e-15)
    assert temporal_iou(ref, pred) == pytest.approx(expected, abs=1e-15)  # symmetric


def test_temporal_iou_matches_counting_unit_cells():
    """Slow obvious version: integer intervals as sets of unit cells, IoU = |A ∩ B| / |A ∪ B|."""
    rng = random.Random(0)
    for _ in range(300):
        a = sorted(rng.sample(range(20), 2))
        b = sorted(rng.sample(range(20), 2))
        cells_a, cells_b = set(range(a[0], a[1])), set(range(b[0], b[1]))
        expected = len(cells_a & cells_b) / len(cells_a | cells_b)
        assert temporal_iou(tuple(map(float, a)), tuple(map(float, b))) == pytest.approx(expected, abs=1e-12)


def test_temporal_iou_rejects_backwards_intervals():
    with pytest.raises(ValueError, match="start <= end"):
        temporal_iou((5.0, 1.0), (0.0, 1.0))


# ------------------------------------------------------------------------------------------ scalar closeness
def test_closeness_by_hand():
    assert closeness(68.0, 68.0) == 1.0
    assert closeness(69.0, 68.0) == pytest.approx(1 - 1 / 68)  # error 1, reference size 68
    assert closeness(58.0, 68.0) == pytest.approx(1 - 10 / 68)
    assert closeness(-68.0, 68.0) == 0.0  # error 136 > 68: floored at 0
    assert closeness(1.0, 0.0) == 0.0  # small references use the floor max(1, |ref|) = 1
    assert closeness(0.5, 0.0) == pytest.approx(0.5)
    assert closeness(63.0, 68.0, scale=0.1) == pytest.approx(1 - 5 / 6.8)  # error 5 of 0.1·68 = 6.8
    assert closeness(float("nan"), 1.0) == 0.0
    with pytest.raises(ValueError, match="scale"):
        closeness(1.0, 1.0, scale=0.0)


# ------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[3, 7]", (3.0, 7.0)),
        ("(3.5,7.25)", (3.5, 7.25)),
        ("3-7", (3.0, 7.0)),
        ("3 \u2013 7.5 s.", (3.0, 7.5)),  # en dash, a full stop after the end point
        ("3,7", (3.0, 7.0)),
        ("from 12.5 to 20 seconds", (12.5, 20.0)),
        ("first [1, 2], finally [4, 8]", (4.0, 8.0)),  # the last interval counts
        ("no interval", None),
        ("only 42", None),
        ("[9, 2]", None),  # backwards: malformed
        # seconds units
        ("3.0s to 7.5s", (3.0, 7.5)),
        ("[3.2s, 7.5s]", (3.2, 7.5)),
        ("3s-7s", (3.0, 7.0)),
        ("from 2 sec to 4.5 seconds", (2.0, 4.5)),
        ("3 sets to 7", None),  # "s" must be a whole unit word, not the start of "sets"
        # the authors' JSON grounding answer (Temporal-R1 tvg.py), quoted or bare values, keys in any order
        ('{"start_time": "3.0", "end_time": "7.0"}', (3.0, 7.0)),
        ('{"end_time": 7.5, "start_time": 2}', (2.0, 7.5)),
        ("{'start_time': '1.5s', 'end_time': '4s'}", (1.5, 4.0)),
        ('[1, 2] then {"start_time": "4", "end_time": "6"}', (4.0, 6.0)),  # the last one counts
        ('{"start_time": "4", "end_time": "6"}, finally 8-9', (8.0, 9.0)),
        ('{"start_time": 3, "end_time": 7, "note": "1-2"}', (3.0, 7.0)),  # not read twice inside the object
        ('{"start_time": "later", "end_time": "7"}', None),  # a key without a number: malformed
        ('{"start_time": "9", "end_time": "2"}', None),  # backwards
        ('{"start": 3, "end": 7}', None),  # other key names are not a time object
        # negative time stamps are malformed: the minus is not dropped
        ("[-1, 5]", None),
        ("-1 to 5", None),
        ("3 to -2", None),
        ("5 - -3", None),
        ("[\u22121, 5]", None),  # U+2212 minus
        ("x-1, 5", None),
        ('{"start_time": "-1.0", "end_time": "5.0"}', None),
        ("first [1, 2], then [-1, 5]", None),  # the last interval is malformed: no fallback to an earlier one
        ("[+1, 5]", (1.0, 5.0)),
    ],
)
def test_parse_interval(text, expected):
    assert parse_interval(text) == expected


def test_answer_text_takes_the_first_answer_pair():
    assert answer_text("<think>x</think><answer> B </answer>") == " B "
    assert answer_text("<answer>A</answer> no, <answer>B</answer>") == "A"  # the first pair, as re.search
    assert answer_text("<answer>\n3 to 7\n</answer>") == "\n3 to 7\n"  # across lines
    assert answer_text("<answer>B") == "<answer>B" and answer_text("B") == "B"  # no complete pair: everything


def test_reference_kinds():
    assert reference_kind([3, 7]) == ("interval", (3.0, 7.0))
    assert reference_kind("[0.5, 2]") == ("interval", (0.5, 2.0))
    assert reference_kind("68") == ("scalar", 68.0)
    assert reference_kind(-22) == ("scalar", -22.0)
    assert reference_kind("Natalia sold ... #### 72") == ("scalar", 72.0)
    assert reference_kind(" B ") == ("text", "B")
    assert reference_kind("1,234") == ("interval", (1.0, 234.0))  # auto: the pair reading wins
    assert reference_kind("1,234", "scalar") == ("scalar", 1234.0)
    assert reference_kind("68", "text") == ("text", "68")


@pytest.mark.parametrize(
    ("reference", "mode", "match"),
    [
        ("Paris", "interval", "not an interval"),
        ("[7, 3]", "auto", "start > end"),
        ([1, 2, 3], "auto", "two numbers"),
        ("no number", "scalar", "holds no number"),
        ("[-1, 5]", "auto", "negative time stamp"),
        ([-1, 5], "auto", "negative time stamp"),
        ("-3-7", "interval", "negative time stamp"),
        ("1", "fuzzy", "mode must be one of"),
    ],
)
def test_unreadable_references_raise(reference, mode, match):
    with pytest.raises(ValueError, match=match):
        reference_kind(reference, mode)


# ------------------------------------------------------------------------------------------ the verifier
def test_dual_parts_by_hand():
    assert dual_parts("[1, 5]", "[3, 7]") == (0.0, pytest.approx(1 / 3))
    assert dual_parts("The answer is 3-7.", [3, 7]) == (1.0, 1.0)
    assert dual_parts("I cannot tell", "[3, 7]") == (0.0, 0.0)  # malformed completion: 0, not None
    assert dual_parts("68", "68") == (1.0, 1.0)
    assert dual_parts("70", "68") == (0.0, pytest.approx(1 - 2 / 68))
    assert dual_parts("", "68") == (0.0, 0.0)
    assert dual_parts(" B", "B") == (1.0, 0.0)
    assert dual_parts("C", "B") == (0.0, 0.0)
    assert dual_parts("[-1, 5]", [0, 5]) == (0.0, 0.0)  # a negative time stamp is a malformed answer
    assert reference_kind("[3s, 7.5s]") == ("interval", (3.0, 7.5))


def test_every_kind_reads_the_answer_tag_content():
    # text: the authors take the <answer> content first; a bare answer still works
    assert dual_parts("<think>the cat jumps first</think><answer> B </answer>", "B") == (1.0, 0.0)
    assert dual_parts("<think>not A</think><answer>A</answer>", "B") == (0.0, 0.0)
    assert dual_parts("<answer>b</answer>", "B") == (0.0, 0.0)  # exact comparison: case counts
    # interval: the thinking's intervals do not count, only the answer's last one
    text = '<think>maybe 1-2, or 3 to 4</think><answer>{"start_time": "5.0", "end_time": "7.0"}</answer>'
    assert dual_parts(text, [3, 7]) == (0.0, pytest.approx(0.5))  # IoU [5, 7] vs [3, 7] = 2 / 4
    assert dual_parts("<answer>[3, 7]</answer> then 8-9", [3, 7]) == (1.0, 1.0)
    assert dual_parts("<think>[3, 7]</think><answer>unsure</answer>", [3, 7]) == (0.0, 0.0)
    # number: the last number of the answer, not of the whole completion
    assert dual_parts("<think>68? no</think><answer>70</answer> (2 more)", 68) == (0.0, pytest.approx(1 - 2 / 68))
    assert dual_parts("<answer>68</answer> checked 3 times", "68") == (1.0, 1.0)
    assert dual_parts("<think>68</think><answer></answer>", 68) == (0.0, 0.0)


def test_dual_reward_weights_parts_and_reads_the_answer_column():
    fn = VERIFIERS["dual"]()
    completions = ["[1, 5]", "[3, 7]", "[8, 9]", "oops", "69", "68", "B", "A"]
    answers = ["[3, 7]", [3, 7], "3-7", "[3, 7]", "68", "68", "B", "B"]
    assert fn.__name__ == "dual"
    expected = [1 / 3, 2.0, 0.0, 0.0, 1 - 1 / 68, 2.0, 1.0, 0.0]
    assert fn(prompts=["q"] * 8, completions=completions, answer=answers) == pytest.approx(expected)
    weighted = dual(discrete_weight=0.5, continuous_weight=2.0, answer_column="target")
    assert weighted.__name__ == "dual_target"
    out = weighted(prompts=["q"] * 3, completions=["[1, 5]", "68", "70"], target=["[3, 7]", 68, 68])
    assert out == pytest.approx([2 / 3, 0.5 + 2.0, 2 * (1 - 2 / 68)])
    chat = [{"role": "assistant", "content": "[3, 7]"}]
    assert fn(prompts=["q"], completions=[chat], answer=["[3, 7]"]) == [2.0]
    assert pickle.loads(pickle.dumps(fn))(prompts=["q"], completions=["68"], answer=["68"]) == [2.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "fuzzy"}, "mode must be one of"),
        ({"discrete_weight": -1.0}, "must be finite and >= 0"),
        ({"discrete_weight": 0.0, "continuous_weight": 0.0}, "not both 0"),
        ({"continuous_weight": float("inf")}, "must be finite"),
        ({"scale": 0.0}, "scale must be > 0"),
        ({"rel_tol": -1.0}, "tolerances"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dual(**kwargs)


def test_a_file_task_scores_with_the_dual_reward(tmp_path):
    rows = [{"prompt": f"{a}+1=", "answer": str(a + 1)} for a in range(10)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = file_task(train=tmp_path / "rows.jsonl", reward=["numeric", "dual"], reward_weights=[0.0, 1.0])
    assert task.accuracy is task.reward_funcs[0]  # the 0/1 numeric verifier is the accuracy
    scores = score_completions(
        task.reward_funcs, task.reward_weights, ["1+1=", "1+1="], ["2", "3"], {"answer": ["2", "2"]}
    )
    # "2": numeric 1 (weight 0) + dual 1 + 1; "3": numeric 0 + dual 0 + (1 − 1/2)
    assert scores.reward.tolist() == pytest.approx([2.0, 0.5])
    assert scores.names == ["numeric", "dual"]
