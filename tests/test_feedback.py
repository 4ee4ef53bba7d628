"""Human evaluation: the preference file (appended, fsynced, loadable with `datasets`), `lmforge eval-report`'s win
rates with their Wilson interval, and the demo's side-by-side handlers (the browser test is in test_demo.py)."""

import json
import math
import random

import datasets
import pytest

from lmforge.cli.main import main
from lmforge.errors import LmforgeError
from lmforge.evaluation.preferences import append_judgement, read_judgements, win_rates

from .test_demo import _handler, requires_gradio


def wilson(wins: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval by its formula."""
    p = wins / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def judgement(chosen_by: str, rejected_by: str, i: int = 0) -> dict:
    return {
        "prompt": f"p{i}",
        "chosen": f"c{i}",
        "rejected": f"r{i}",
        "chosen_by": chosen_by,
        "rejected_by": rejected_by,
    }


def test_preference_file_and_win_rates(tmp_path, capsys) -> None:
    path = tmp_path / "feedback.jsonl"
    for i in range(7):
        append_judgement(path, judgement("greedy", "top-p 0.9", i))
    for i in range(3):
        append_judgement(path, judgement("top-p 0.9", "greedy", i))
    append_judgement(path, judgement("beam search 4", "greedy"))
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert loaded.num_rows == 11 and {"prompt", "chosen", "rejected", "chosen_by", "rejected_by"} <= set(
        loaded.column_names
    )
    rates = {(rate.a, rate.b): rate for rate in win_rates(read_judgements(path))}
    assert set(rates) == {("greedy", "top-p 0.9"), ("beam search 4", "greedy")}
    greedy = rates[("greedy", "top-p 0.9")]
    assert (greedy.wins, greedy.total) == (7, 10)
    assert (greedy.low, greedy.high) == pytest.approx(wilson(7, 10))
    assert main(["eval-report", str(path)]) == 0
    out = capsys.readouterr().out
    low, high = wilson(7, 10)
    assert f"greedy vs top-p 0.9: greedy wins 7/10 = 70.0% [{low:.1%}, {high:.1%}]" in out
    assert "beam search 4 vs greedy: beam search 4 wins 1/1 = 100.0%" in out


def test_bad_preference_input_is_one_line(tmp_path, capsys) -> None:
    assert main(["eval-report", str(tmp_path / "missing.jsonl")]) == 1
    assert "error: preference file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(judgement("a", "b")) + "\nnot json\n", encoding="utf-8")
    assert main(["eval-report", str(bad)]) == 1
    assert f"{bad} line 2 is not JSON" in capsys.readouterr().err
    with pytest.raises(LmforgeError, match="needs text for chosen"):
        append_judgement(tmp_path / "f.jsonl", {"prompt": "p", "rejected": "r", "chosen_by": "a", "rejected_by": "b"})


def _button_handler(demo, elem_id: str):
    """The Python function behind the click of the page's button `elem_id`."""
    button = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)
    return next(fn.fn for fn in demo.fns.values() if any(target[0] == button._id for target in fn.targets))


@requires_gradio
def test_side_by_side_handlers_record_a_blind_judgement(tiny_model_dirs, tmp_path) -> None:
    """Two systems, shown in random order; the judgement names the text and the system of each side."""
    import gradio

    from lmforge.demo import build_demo

    path = tmp_path / "feedback.jsonl"
    demo = build_demo(tiny_model_dirs["aksis"], feedback_file=path)
    generate_pair = _handler(demo, "generate_pair")
    judges = {side: _button_handler(demo, f"prefer_{side}") for side in ("left", "right")}
    random.seed(0)  # the page's shuffle, made reproducible
    sides, expected = set(), []
    for turn in range(8):
        left, right, state, _ = generate_pair("First Citizen:", "greedy", "beam search 4", 6)
        pair = json.loads(state)
        assert (left, right) == (pair["left"]["text"], pair["right"]["text"])
        sides.add(pair["left"]["by"])
        better, worse = ("left", "right") if turn % 2 == 0 else ("right", "left")  # each button in turn
        assert judges[better](state)[0] == ""  # judged: the pair is cleared, so it is not recorded twice
        expected.append((pair[better]["by"], pair[worse]["by"], pair[better]["text"], pair[worse]["text"]))
    assert sides == {"greedy", "beam search 4"}  # the order is randomised
    records = read_judgements(path)
    assert len(records) == 8 and all(r["prompt"] == "First Citizen:" for r in records)
    # the button's side is the one recorded as chosen: its system and its text
    assert [(r["chosen_by"], r["rejected_by"], r["chosen"], r["rejected"]) for r in records] == expected
    assert {r["chosen_by"] for r in records} == {"greedy", "beam search 4"}
    with pytest.raises(gradio.Error):
        generate_pair("x", "greedy", "greedy", 4)
    with pytest.raises(gradio.Error):
        judges["left"]("")
