"""`lmforge sampling-study`: the diversity scores are exact on texts checked by hand, and the study on a tiny Aksis
writes a table with every strategy and every score (perplexity under a tiny reference model), a plot and a card
section."""

import json
import math
from pathlib import Path

import evaluate
import pytest
import sacrebleu
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli.main import main
from lmforge.errors import LmforgeError
from lmforge.evaluation import distinct_n, metric_path, repeated_ngram_share, self_bleu, sliding_window_perplexity
from lmforge.studies.sampling import METRICS, default_strategies, run_sampling_study

TEXTS = ["a b a b a b", "a b c d"]


def test_diversity_scores_by_hand() -> None:
    # unigrams: a b a b a b a b c d -> 4 distinct of 10; bigrams: ab ba ab ba ab | ab bc cd -> 4 distinct of 8
    assert distinct_n(TEXTS, 1) == 4 / 10
    assert distinct_n(TEXTS, 2) == 4 / 8
    # 4-grams of text 1: abab baba abab -> 1 - 2/3; of text 2: abcd -> 0
    assert repeated_ngram_share(TEXTS, 4) == pytest.approx((1 / 3 + 0) / 2)
    assert repeated_ngram_share(["a b"], 4) == 0.0
    expected = (
        sacrebleu.sentence_bleu(TEXTS[0], [TEXTS[1]]).score + sacrebleu.sentence_bleu(TEXTS[1], [TEXTS[0]]).score
    ) / 2
    assert self_bleu(TEXTS) == pytest.approx(expected)
    assert self_bleu(["same words here", "same words here"]) == pytest.approx(100.0)
    scores = evaluate.load(metric_path("diversity")).compute(predictions=TEXTS)
    assert scores["mean_length"] == 5.0 and scores["distinct_1"] == 0.4
    with pytest.raises(LmforgeError, match="at least two"):
        self_bleu(["alone"])


def test_sampling_study_table_holds_every_strategy_and_metric(tiny_model_dirs, tmp_path, capsys) -> None:
    model, reference = tiny_model_dirs["aksis"], tiny_model_dirs["char_transformer"]
    out = tmp_path / "study"
    args = ["sampling-study", str(model), "--output-dir", str(out), "--reference-model", str(reference)]
    assert (
        main([*args, "--prompt", "First Citizen:", "--prompt", "All:", "--num-seeds", "2", "--max-new-tokens", "6"])
        == 0
    )
    printed = capsys.readouterr().out
    table = (out / "sampling_study_table.md").read_text(encoding="utf-8")
    assert table in printed
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| strategy")]
    names = [strategy.name for strategy in default_strategies()]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == names
    assert {
        "greedy",
        "temperature 0.7",
        "temperature 1",
        "temperature 1.3",
        "top-k 40",
        "top-p 0.9",
        "beam search 4",
    } == set(names)
    header = table.splitlines()[0]
    assert all(label in header for label in METRICS.values())
    results = json.loads((out / "sampling_study.json").read_text(encoding="utf-8"))["results"]
    for result in results:
        assert set(result["scores"]) == set(METRICS)
        assert all(math.isfinite(value) for value in result["scores"].values())
        assert len(result["generations"]) == 4  # 2 prompts x 2 seeds
        texts = [row["text"] for row in result["generations"]]
        assert result["scores"]["distinct_1"] == distinct_n(texts, 1)
        if result["options"].get("do_sample"):  # the seed changes a sampled text: same prompt, seeds 0 and 1
            assert texts[0] != texts[1] and texts[2] != texts[3], result["strategy"]
    # the perplexity of each strategy's texts under the reference model, computed here from the saved texts
    reference_lm = AutoModelForCausalLM.from_pretrained(reference)
    reference_tokenizer = AutoTokenizer.from_pretrained(reference)
    for result in results:
        texts = [row["text"] for row in result["generations"] if row["text"].strip()]
        expected = sliding_window_perplexity(reference_lm, reference_tokenizer, texts).perplexity
        assert expected > 1.0 and result["scores"]["reference_perplexity"] == pytest.approx(expected, rel=1e-5)
    greedy = next(r for r in results if r["strategy"] == "greedy")
    assert greedy["generations"][0]["text"] == greedy["generations"][1]["text"]  # one text per prompt, every seed
    assert [row["torch_seed"] for row in greedy["generations"]] == [0, 1000, 1, 1001]  # no seed shared by prompts
    assert (out / "sampling_study.png").stat().st_size > 10_000
    card = (out / "sampling_study.md").read_text(encoding="utf-8")
    assert card.startswith("## Sampling strategies") and table in card and str(reference) in card


def test_sampling_study_bad_input_is_one_line(tiny_model_dirs, tmp_path, capsys) -> None:
    model = str(tiny_model_dirs["aksis"])
    assert main(["sampling-study", model, "--reference-model", str(tmp_path / "nowhere")]) == 1
    assert "error: reference model not found" in capsys.readouterr().err
    with pytest.raises(LmforgeError, match="at least two texts"):
        run_sampling_study(model, tmp_path, prompts=["x"], seeds=[0], reference_model=None)
    assert not Path(tmp_path / "sampling_study.json").exists()
