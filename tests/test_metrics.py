"""The metrics as `evaluate` modules that work offline (`evaluate.load(metric_path(...))`) and as functions, against
values computed by hand."""

import math
from pathlib import Path

import evaluate
import pytest

from lmforge import LmforgeError
from lmforge.evaluation import bleu, metric_path, rouge, squad_scores

from .saved_models import perplexity_by_hand

PREDICTION, REFERENCE = "the cat sat", "the cat sat on the mat"


def test_rouge_module_gives_the_f_measures_counted_by_hand() -> None:
    """The prediction "the cat sat" against "the cat sat on the mat": 3 of 3 predicted words in the 6 reference words (P 1, R 1/2,
    F 2/3); 2 of 2 predicted bigrams in the 5 reference bigrams (P 1, R 2/5, F 4/7); the longest common subsequence
    is the 3 words (as ROUGE-1)."""
    module = evaluate.load(metric_path("rouge"))
    scores = module.compute(predictions=[PREDICTION], references=[REFERENCE])
    expected = {"rouge1": 2 / 3, "rouge2": 4 / 7, "rougeL": 2 / 3, "rougeLsum": 2 / 3}
    assert scores == pytest.approx(expected, abs=1e-9)
    assert rouge([PREDICTION], [REFERENCE]) == pytest.approx(expected, abs=1e-9)
    only = module.compute(predictions=[PREDICTION], references=[REFERENCE], rouge_types=["rouge2"])
    assert only == pytest.approx({"rouge2": 4 / 7})


def test_bleu_module_gives_the_score_counted_by_hand() -> None:
    """The prediction "the cat sat on a mat" against "the cat sat on the mat": n-gram precisions 5/6, 3/5, 2/4 and 1/3, equal
    lengths (brevity penalty 1), BLEU = 100 * their geometric mean."""
    module = evaluate.load(metric_path("bleu"))
    scores = module.compute(predictions=["the cat sat on a mat"], references=[["the cat sat on the mat"]])
    precisions = [5 / 6, 3 / 5, 2 / 4, 1 / 3]
    assert scores["bleu"] == pytest.approx(100 * math.prod(precisions) ** 0.25, abs=1e-6)
    assert scores["brevity_penalty"] == 1.0
    assert scores["precisions"] == pytest.approx([100 * p for p in precisions])
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"])["bleu"] == pytest.approx(100.0)
    # one reference per prediction, as plain strings, is accepted too
    assert module.compute(predictions=["the cat sat on a mat"], references=["the cat sat on the mat"]) == scores


def test_perplexity_module_gives_the_perplexity_computed_by_hand(tiny_model_dirs: dict) -> None:
    folder: Path = tiny_model_dirs["aksis"]
    module = evaluate.load(metric_path("perplexity"), module_type="metric")
    text = "To be, or not to be"
    result = module.compute(predictions=[text], model_id=str(folder))
    mean_nll, tokens = perplexity_by_hand("aksis", folder, text, window=64)
    assert result["num_tokens"] == tokens
    assert result["mean_nll"] == pytest.approx(mean_nll, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(mean_nll), rel=1e-5)


def test_squad_scores_counted_by_hand() -> None:
    """Exact match after SQuAD normalisation (case, punctuation, articles), and word-overlap F1, best gold answer."""
    scores = squad_scores(["The Eiffel Tower!", "in Paris, France"], [["Eiffel tower", "the tower"], ["Paris"]])
    # EM: 1 and 0; F1: 1, and 1 shared word of 3 predicted and 1 gold: P 1/3, R 1, F1 1/2
    assert scores == pytest.approx({"exact_match": 50.0, "f1": 75.0})
    with pytest.raises(LmforgeError, match="2 predictions but 1 references"):
        squad_scores(["a", "b"], ["a"])


def test_an_unknown_metric_is_a_one_line_error() -> None:
    with pytest.raises(LmforgeError) as error:
        metric_path("meteor")
    assert str(error.value) == (
        "no lmforge metric named 'meteor'; choose one of ['bleu', 'diversity', 'perplexity', 'rouge']"
    )
