"""Diversity of generated texts as an `evaluate` module that works offline:
`evaluate.load(lmforge.evaluation.metric_path("diversity")).compute(predictions=texts)`."""

import datasets
import evaluate

from lmforge.evaluation.diversity import diversity

_DESCRIPTION = (
    "Diversity and repetition of a set of generated texts (whitespace words): distinct-1 and distinct-2 over the set, "
    "the mean per-text share of repeated 4-grams, the mean length in words, and self-BLEU (sacrebleu, 0-100)."
)
_KWARGS = """
Args:
    predictions (list of str): the generated texts (at least two, for self-BLEU).
Returns:
    distinct_1, distinct_2, repeated_4gram_share (floats, 0-1), mean_length (words), self_bleu (0-100).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Diversity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Li et al. 2016 (distinct-n); Welleck et al. 2020 (seq-rep-n); Zhu et al. 2018 (self-BLEU).",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str]) -> dict:
        return diversity(predictions)
