"""BLEU (sacrebleu), ROUGE (rouge_score) and SQuAD-style exact match / F1, as plain functions.

The `evaluate` modules in `metrics/` wrap these, so `evaluate.load(metric_path("bleu"))` and the functions agree.
"""

import re
import string
from collections import Counter
from typing import Any

import sacrebleu
from rouge_score import rouge_scorer, scoring

from ..errors import LmforgeError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _check_pairs(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise LmforgeError(f"{len(predictions)} predictions but {len(references)} references; give one each")
    if not predictions:
        raise LmforgeError("no predictions to score")


def bleu(predictions: list[str], references: list[str] | list[list[str]]) -> dict[str, Any]:
    """Corpus BLEU of sacrebleu (0-100) with its default 13a tokenization; several references per item allowed."""
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    _check_pairs(predictions, [r[0] for r in refs])
    width = max(len(r) for r in refs)
    # sacrebleu wants one list per reference position; pad missing references with the first one
    streams = [[r[i] if i < len(r) else r[0] for r in refs] for i in range(width)]
    result = sacrebleu.corpus_bleu(predictions, streams)
    return {"bleu": float(result.score), "brevity_penalty": float(result.bp), "precisions": list(result.precisions)}


def rouge(
    predictions: list[str], references: list[str], rouge_types: tuple[str, ...] = ROUGE_TYPES, use_stemmer: bool = True
) -> dict[str, float]:
    """Mean F-measure of each ROUGE type (0-1) by rouge_score; rougeLsum splits summaries on newlines."""
    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
    aggregator = scoring.BootstrapAggregator()
    for prediction, reference in zip(predictions, references, strict=True):
        aggregator.add_scores(scorer.score(reference, prediction))
    result = aggregator.aggregate()
    return {key: float(result[key].mid.fmeasure) for key in rouge_types}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if not pred or not ref:
        return float(pred == ref)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], references: list[list[str]] | list[str]) -> dict[str, float]:
    """Exact match and F1 (0-100), each item scored against its best gold answer, as the SQuAD script does."""
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    _check_pairs(predictions, [r[0] for r in refs])
    em = sum(
        max(float(normalize_answer(p) == normalize_answer(g)) for g in golds)
        for p, golds in zip(predictions, refs, strict=True)
    )
    f1 = sum(max(_f1(p, g) for g in golds) for p, golds in zip(predictions, refs, strict=True))
    return {"exact_match": 100.0 * em / len(predictions), "f1": 100.0 * f1 / len(predictions)}


__all__ = ["ROUGE_TYPES", "bleu", "normalize_answer", "rouge", "squad_scores"]
